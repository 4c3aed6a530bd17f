"""Per-GPU model of the margin: a slow RC node with a fast die term, fitted online by recursive least squares.

Real boards have a die that heats in seconds on a heat sink that heats over minutes. The model
keeps one slow state and lets the die's own rise follow power through a short lag:

    y = M + R_f*P_f,   dy/dt = alpha*(M0 - y) - beta*P_f,   P_f = P through a DIE_LAG_S lag,

M the margin, R_f the die's fast share of the resistance, alpha = 1/tau of the slow node and
M0 the margin at zero power. Integrated over the last few readings (t0..t1, trapezoids, any
spacing) it is linear in (R_f, alpha, beta' = beta + alpha*R_f, alpha*M0):

    M(t1) - M(t0) = -R_f*(P_f(t1) - P_f(t0)) - alpha*int(M dt) - beta'*int(P_f dt) + alpha*M0*(t1 - t0),

and at steady power the GPU settles at M0 - R*P with R = beta'/alpha. Each reading adds such a
row over several lags. The integral form uses levels, not one-step differences, so whole-degree
readings still give a clean fit, and irregular sampling needs no special case. Rows are
accumulated with exponential forgetting (time constant `memory_s`) and a Gaussian prior (tau,
R, the die's share, M0 from the first reading) that is never forgotten ("stabilised
forgetting"): while the data say little - a GPU at constant power tells tau and the settling
level, but not R - the prior fills in. When the rows' errors add up (a CUSUM passing its alarm
level) the GPU has changed (a fan failed, the inlet warmed): the fit drops what it learned,
keeps the die's share, and re-learns from the readings since the errors began.

Why this shape, measured with bench/predict.py (two-node plants drawn ±30 % around the profiles
/ first-order plants; share of predictions 25-35 s before the crossing within ±25 %, no
trajectory correction): the first-order RC alone (one node, tau prior 20 s, memory 30 s; the
previous model) reads a power step's fast rise as a short tau and then misses the slow climb:
29.4 % / 58.6 %; this shape: 52.7 % / 71.5 %. Its own measured errors, fed back through the
margin's trajectory (trajectory.py), take it to 100 % / 81.5 %.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from gpuwatch.policy.model.history import Point
from gpuwatch.policy.model.linear import (
    Matrix,
    Vector,
    add,
    dot,
    forget_and_add,
    solve,
    with_diagonal,
    zero_matrix,
    zeros,
)

KW = 1000.0  # powers enter the regression in kW, so its columns have like scales
# The die's own lag behind power, s: a real A100's reading follows a 250 ms burst within the
# sample (../shared/data traces, fitted at 0.2-0.3 s by bench/step_response.py).
DIE_LAG_S = 0.25
# Each reading adds one regression row per lag (in readings) that fits since the last restart:
# the short one follows changes and drives change detection, the long ones see the slow node's
# curvature through whole-degree rounding.
ROW_LAGS = (4, 16, 48)
KEEP_POINTS = 64  # readings kept: the longest row, and what a restart re-learns from
# Std of a row's margin change from whole-degree readings, °C: weighs the data against the prior.
ROW_NOISE_C = 0.5
# Prior std of the coefficients relative to their prior values (R_f: in units of the prior R),
# and of M0 in °C. M0 is loose (the inlet is unknown) so that at constant power the R/M0 split
# follows R's prior.
PRIOR_ALPHA_SPREAD = 2.0
PRIOR_BETA_SPREAD = 0.5
PRIOR_DIE_SPREAD = 0.5
PRIOR_M0_SPREAD_C = 100.0
MAX_GAP_STEPS = 5.0  # rows spanning a longer gap between two readings are not learned from
# Change detection: a two-sided CUSUM of the shortest rows' prediction errors, less an allowance
# per row for rounding noise, that passes the alarm level (°C) means the GPU changed. Armed once
# the fit has MIN_ROWS rows.
DRIFT_ALLOWANCE_C = 0.5
DRIFT_ALARM_C = 3.0
DRIFT_STEP_W = 5.0  # rows whose die power moved more than this are left out of change detection
DRIFT_ERROR_CAP_C = 1.5  # one row adds at most this to the change detector, °C
# Rows the fit misses by more than this (°C, three of ROW_NOISE_C) weigh less and less.
ROBUST_ROWS_C = 1.5
# A fit outside these is not physical (tau s, R °C/W): it is not used.
TAU_RANGE_S = (1.0, 3600.0)
RESISTANCE_RANGE_C_PER_W = (1e-3, 2.0)
# Converged: at least MIN_ROWS rows since the last restart, and the model, started `min_samples`
# readings ago, reproduces them this closely (RMS, °C) from the recorded powers alone.
MIN_ROWS = 5
FIT_TOLERANCE_C = 1.0
# A reading whose lagged power is this close to its power is past any step's timing, W.
SETTLED_STEP_W = 5.0
# The farthest a time to slowdown is looked for, in slow time constants.
LOOKAHEAD_TAUS = 10.0


@dataclass(frozen=True, slots=True)
class RcParameters:
    """The margin model: slow node `dy/dt = (M0 - (R - R_f)*P_f - y)/tau` with `y = M + R_f*P_f`."""

    tau_s: float
    resistance_c_per_w: float  # R: steady-state margin lost per W
    zero_power_margin_c: float  # M0: the margin the GPU would settle at drawing nothing, °C
    die_resistance_c_per_w: float = 0.0  # R_f: the share of R that shows within seconds

    def steady_margin_c(self, power_w: float) -> float:
        """Margin the GPU settles at when it draws `power_w` for good, °C."""
        return self.zero_power_margin_c - self.resistance_c_per_w * power_w

    def path(
        self, margin_c: float, power_w: float, lagged_power_w: float | None = None
    ) -> Callable[[float], float]:
        """The margin `h` seconds on, from `margin_c` now, drawing `power_w` from now on.

        `lagged_power_w` is the die's lagged power now (None: settled at `power_w`).
        """
        lagged = power_w if lagged_power_w is None else lagged_power_w
        die = self.die_resistance_c_per_w
        slow_now = margin_c + die * lagged
        slow_steady = self.steady_margin_c(power_w) + die * power_w
        tau, excess = self.tau_s, lagged - power_w
        return lambda h: (
            slow_steady
            + (slow_now - slow_steady) * math.exp(-h / tau)
            - die * (power_w + excess * math.exp(-h / DIE_LAG_S))
        )

    def margin_after_c(
        self,
        margin_c: float,
        power_w: float,
        seconds: float,
        lagged_power_w: float | None = None,
    ) -> float:
        """Margin `seconds` from now, starting at `margin_c` and drawing `power_w` throughout."""
        return self.path(margin_c, power_w, lagged_power_w)(seconds)

    def time_to_margin_s(
        self,
        margin_c: float,
        target_c: float,
        power_w: float,
        lagged_power_w: float | None = None,
    ) -> float | None:
        """Seconds until the margin first reaches `target_c` (either way) at steady `power_w`; None: never."""
        if margin_c == target_c:
            return 0.0
        steady = self.steady_margin_c(power_w)
        excess_c = self.die_resistance_c_per_w * (
            (power_w if lagged_power_w is None else lagged_power_w) - power_w
        )
        if abs(excess_c) < 1e-3:
            # Settled die: one exponential, in closed form.
            ratio = (margin_c - steady) / (target_c - steady) if target_c != steady else 0.0
            return self.tau_s * math.log(ratio) if ratio > 1 else None
        path = self.path(margin_c, power_w, lagged_power_w)
        side = 1.0 if margin_c > target_c else -1.0  # reached when side*(path - target) <= 0

        def reached(seconds: float) -> bool:
            return side * (path(seconds) - target_c) <= 0

        # Two exponentials turn at most once: scan a geometric grid, then bisect the first crossing.
        before, h = 0.0, 0.25
        limit = LOOKAHEAD_TAUS * self.tau_s
        while h <= limit:
            if reached(h):
                for _ in range(30):
                    middle = (before + h) / 2
                    before, h = (before, middle) if reached(middle) else (middle, h)
                return h
            before, h = h, h * 1.25
        return None

    def step_response_c_per_w(self, seconds: float) -> float:
        """Margin lost per W drawn on top of today's power from now on, after `seconds`, °C/W.

        The die's share within its lag, the rest with the slow node's tau.
        """
        die = self.die_resistance_c_per_w
        slow = self.resistance_c_per_w - die
        return die * -math.expm1(-seconds / DIE_LAG_S) + slow * -math.expm1(-seconds / self.tau_s)

    def slow_response_c_per_w(self, seconds: float) -> float:
        """The slow node's share of the step response after `seconds`, °C/W: what outlasts the die's lag."""
        return (self.resistance_c_per_w - self.die_resistance_c_per_w) * -math.expm1(-seconds / self.tau_s)

    def sustainable_power_w(self, margin_c: float) -> float:
        """Highest steady power whose steady margin stays at or above `margin_c`, W (may be < 0)."""
        return (self.zero_power_margin_c - margin_c) / self.resistance_c_per_w


@dataclass(frozen=True, slots=True)
class Node:
    """One reading as the fit keeps it: margin, power, the die's lagged power and running integrals."""

    at: float
    margin_c: float
    power_w: float
    lagged_power_w: float
    margin_integral: float  # int M dt since the fit started, °C*s
    power_integral: float  # int P_f dt since the fit started, kW*s
    unbroken_since: float  # the first reading after the last gap longer than MAX_GAP_STEPS intervals


def _next_node(last: Node, point: Point, power_w: float, step_s: float) -> Node:
    """The node for `point`; a change of power is taken to have come halfway between the readings.

    Jobs start and end at any moment between two readings; halfway is the expected moment, and
    the die, answering within DIE_LAG_S, has then done most of its part by the reading.
    """
    dt = point.at - last.at
    lagged_w = power_w + (last.lagged_power_w - power_w) * math.exp(-dt / 2 / DIE_LAG_S)
    return Node(
        at=point.at,
        margin_c=point.margin_c,
        power_w=power_w,
        lagged_power_w=lagged_w,
        margin_integral=last.margin_integral + (last.margin_c + point.margin_c) / 2 * dt,
        power_integral=last.power_integral + (last.lagged_power_w + lagged_w) / 2 / KW * dt,
        unbroken_since=point.at if dt > MAX_GAP_STEPS * step_s else last.unbroken_since,
    )


@dataclass(frozen=True, slots=True)
class RcFit:
    """The running fit of one GPU; `update` returns a new fit and never changes this one.

    theta = (R_f °C/kW, alpha 1/s, beta' °C/(kW*s), alpha*M0 °C/s).
    """

    step_s: float
    memory_s: float
    prior: Vector
    prior_precision: Vector
    information: Matrix  # forgotten sum of w*phi*phi^T since the last restart
    moment: Vector  # forgotten sum of w*phi*y
    theta: Vector
    rows: int  # rows learned since the last restart
    nodes: tuple[Node, ...]  # the last KEEP_POINTS readings, to re-learn from after a change
    restarted_at: float  # no row reaching back before this is learned from
    drift_up_c: float = 0.0  # CUSUM of the rows' prediction errors, each way, °C
    drift_down_c: float = 0.0
    drift_onset: float | None = None  # when the current run of errors began

    @classmethod
    def start(  # noqa: PLR0913 - the priors, each its own setting
        cls,
        first: Point,
        *,
        step_s: float,
        tau_prior_s: float,
        resistance_prior_c_per_w: float,
        die_share_prior: float,
        memory_s: float,
    ) -> RcFit:
        """A fit that knows only the priors and one reading (taken as settled, to place M0)."""
        if first.power_w is None:
            raise ValueError("the RC fit needs power readings")
        alpha = 1.0 / tau_prior_s
        beta = alpha * resistance_prior_c_per_w * KW
        die = die_share_prior * resistance_prior_c_per_w * KW
        node = Node(first.at, first.margin_c, first.power_w, first.power_w, 0.0, 0.0, first.at)
        prior = _settled_prior(die, alpha, beta, node)
        spreads = (
            PRIOR_DIE_SPREAD * resistance_prior_c_per_w * KW,
            PRIOR_ALPHA_SPREAD * alpha,
            PRIOR_BETA_SPREAD * beta,
            PRIOR_M0_SPREAD_C * alpha,
        )
        return cls(
            step_s=step_s,
            memory_s=memory_s,
            prior=prior,
            prior_precision=tuple(spread**-2 for spread in spreads),
            information=zero_matrix(4),
            moment=zeros(4),
            theta=prior,
            rows=0,
            nodes=(node,),
            restarted_at=first.at,
        )

    def update(self, point: Point) -> RcFit:
        """The fit after one more reading; readings without power or not newer than the last are ignored."""
        last = self.nodes[-1]
        if point.power_w is None or point.at <= last.at:
            return self
        nodes = (*self.nodes[-(KEEP_POINTS - 1) :], _next_node(last, point, point.power_w, self.step_s))
        rows = [
            row
            for lag in ROW_LAGS
            if len(nodes) > lag
            and nodes[-(lag + 1)].at >= self.restarted_at
            and (row := _row(nodes[-(lag + 1)], nodes[-1])) is not None
        ]
        if not rows:
            return replace(self, nodes=nodes)
        information, moment = self.information, self.moment
        phi, y = rows[0]
        up, down, onset = self.drift_up_c, self.drift_down_c, self.drift_onset
        # A row across a power step is judged mostly by when, between two readings, the step
        # came (the die answers within one): its error says little about a changed GPU.
        if abs(phi[0]) * KW <= DRIFT_STEP_W:
            # One wild row (a glitch, a step read at its very instant) is not a changed GPU.
            error = max(-DRIFT_ERROR_CAP_C, min(DRIFT_ERROR_CAP_C, y - dot(phi, self.theta)))
            up = max(0.0, up + error - DRIFT_ALLOWANCE_C)
            down = max(0.0, down - error - DRIFT_ALLOWANCE_C)
            onset = None if up == down == 0 else (onset or last.at)
            if onset is not None and self.rows >= MIN_ROWS and max(up, down) > DRIFT_ALARM_C:
                return replace(self, nodes=nodes).restarted(onset)
        # Directional forgetting (Kulhavy; Bittanti et al.): new readings replace old knowledge
        # only where they bring new knowledge. A GPU held near one operating point by admission
        # control excites little but its die, and forgetting everything evenly would let the
        # steady-state resistance, unexcited for minutes, drift to whatever fits the noise; here
        # what the heat-up taught about it stays until readings say otherwise. The moment is
        # forgotten along the same direction, so the estimate itself is unchanged by it.
        forgotten = -math.expm1(-(point.at - last.at) / self.memory_s) / len(rows)
        for row in rows:
            phi, y = row
            information, moment = forget_and_add(
                information, moment, row, share=forgotten, weight=_row_weight(y - dot(phi, self.theta))
            )
        theta = solve(
            with_diagonal(information, self.prior_precision),
            add(moment, tuple(p * t for p, t in zip(self.prior_precision, self.prior, strict=True))),
        )
        return RcFit(
            step_s=self.step_s,
            memory_s=self.memory_s,
            prior=self.prior,
            prior_precision=self.prior_precision,
            information=information,
            moment=moment,
            theta=theta,
            rows=self.rows + 1,
            nodes=nodes,
            restarted_at=self.restarted_at,
            drift_up_c=up,
            drift_down_c=down,
            drift_onset=onset,
        )

    def restarted(self, onset: float) -> RcFit:
        """The fit re-learned from the readings since `onset` only; the die's share kept."""
        before = tuple(n for n in self.nodes if n.at <= onset) or self.nodes[:1]
        # What the fit knew of the board stands until the readings since say otherwise: a change
        # (a fan failed, the air warmed) moves the settling level at once and tau and R over
        # minutes, and a false alarm then costs nothing.
        die = self.theta[0] if self.theta[0] > 0 else self.prior[0]
        known = self.parameters is not None
        start_alpha = self.theta[1] if known else self.prior[1]
        start_beta = self.theta[2] if known else self.prior[2]
        prior = _settled_prior(die, start_alpha, start_beta, before[-1])
        fit = replace(
            self,
            prior=prior,
            information=zero_matrix(4),
            moment=zeros(4),
            theta=prior,
            rows=0,
            nodes=before,
            restarted_at=before[-1].at,
            drift_up_c=0.0,
            drift_down_c=0.0,
            drift_onset=None,
        )
        for node in self.nodes[len(before) :]:
            fit = fit.update(Point(node.at, node.margin_c, node.power_w))
        return fit

    @property
    def parameters(self) -> RcParameters | None:
        """The fitted tau, R, M0 and R_f, or None while they are not physical."""
        _, alpha, beta, gamma = self.theta
        if alpha <= 0:
            return None
        tau_s, resistance = 1.0 / alpha, beta / alpha / KW
        if not (TAU_RANGE_S[0] <= tau_s <= TAU_RANGE_S[1]) or not (
            RESISTANCE_RANGE_C_PER_W[0] <= resistance <= RESISTANCE_RANGE_C_PER_W[1]
        ):
            return None
        return RcParameters(
            tau_s=tau_s,
            resistance_c_per_w=resistance,
            zero_power_margin_c=gamma / alpha,
            die_resistance_c_per_w=min(self.die_resistance_c_per_w, resistance),
        )

    @property
    def die_resistance_c_per_w(self) -> float:
        """The die's share of R as fitted, °C/W, even while the slow node is not physical.

        The die's answer to a power step shows within a reading; a sink of minutes on a GPU
        that stays busy may not settle enough to be fitted for a long time.
        """
        return max(self.theta[0] / KW, 0.0)

    @property
    def lagged_power_w(self) -> float:
        """The die's lagged power at the last reading, W."""
        return self.nodes[-1].lagged_power_w

    def converged(self, min_samples: int) -> bool:
        """Whether the fit has learned enough since its last restart and reproduces the latest readings."""
        error = free_run_error_c(self.parameters, self.nodes[-min_samples:])
        return self.rows >= MIN_ROWS and error is not None and error <= FIT_TOLERANCE_C


def _row_weight(error_c: float) -> float:
    """A row's weight: 1/noise², less for a row its fit misses by more than ROBUST_ROWS_C (Huber).

    A power step read at the very instant it came (the reading has the power, the die has not
    answered yet) or a glitch makes a row miss by ten degrees; at full weight one such row
    would pull the fit away for minutes.
    """
    weight = ROW_NOISE_C**-2
    if abs(error_c) <= ROBUST_ROWS_C:
        return weight
    return weight * ROBUST_ROWS_C / abs(error_c)


def _slow_runner(params: RcParameters, nodes: Sequence[Node]) -> list[tuple[float, float]]:
    """(forced, decay) of the slow state at each node from an unknown start: y_i = forced_i + decay_i*y_0."""
    die = params.die_resistance_c_per_w
    slow_r = params.resistance_c_per_w - die
    forced, decay = 0.0, 1.0
    out = [(0.0, 1.0)]
    for before, after in itertools.pairwise(nodes):
        fraction = math.exp(-(after.at - before.at) / params.tau_s)
        steady = params.zero_power_margin_c - slow_r * (before.lagged_power_w + after.lagged_power_w) / 2
        forced = steady + (forced - steady) * fraction
        decay *= fraction
        out.append((forced, decay))
    return out


def free_run_error_c(params: RcParameters | None, nodes: Sequence[Node]) -> float | None:
    """RMS error, °C, of the model run from the first node's margin on the recorded powers alone.

    A reading taken while the die still answers a power step (its lagged power not yet at the
    power) is left out: when, within the interval, the step came is unknown, and the die's few
    degrees either side of it say nothing about whether the model is right.
    """
    if params is None or len(nodes) < 2:
        return None
    die = params.die_resistance_c_per_w
    runs = _slow_runner(params, nodes)
    start = nodes[0].margin_c + die * nodes[0].lagged_power_w
    errors = [
        f + d * start - die * n.lagged_power_w - n.margin_c
        for (f, d), n in zip(runs[1:], nodes[1:], strict=True)
        if abs(n.lagged_power_w - n.power_w) <= SETTLED_STEP_W
    ]
    if not errors:
        return None
    return math.sqrt(sum(e * e for e in errors) / len(errors))


def _row(first: Node, last: Node) -> tuple[Vector, float] | None:
    """One regression row (phi, y) from `first` to `last`, or None across a gap."""
    if first.at < last.unbroken_since:
        return None
    phi = (
        -(last.lagged_power_w - first.lagged_power_w) / KW,
        -(last.margin_integral - first.margin_integral),
        -(last.power_integral - first.power_integral),
        last.at - first.at,
    )
    return phi, last.margin_c - first.margin_c


def _settled_prior(die: float, alpha: float, beta: float, node: Node) -> Vector:
    """Prior coefficients placing M0 as if the GPU were settled at `node`: M0 = M + R*P."""
    return (die, alpha, beta, alpha * node.margin_c + beta * node.power_w / KW)
