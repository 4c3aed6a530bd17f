"""Per-GPU first-order RC model of the margin, fitted online by regularised recursive least squares.

The die follows `C dT/dt = P - (T - T_inlet)/R`. On the margin M = T_max - T this reads

    dM/dt = alpha*(M0 - M) - beta*P,   alpha = 1/tau,  beta = 1/C = R/tau,  M0 = T_max - T_inlet,

and, integrated over the last few readings (t0..t1, trapezoids, any spacing),

    M(t1) - M(t0) = -alpha * int(M dt) - beta * int(P dt) + alpha*M0 * (t1 - t0),

linear in (alpha, beta, alpha*M0); each reading adds such a row over the last 4, 8 and 16
readings. The integral form uses levels, not one-step differences, so whole-degree readings
(one-step changes of 0 or 1 °C) still give a clean fit, and irregular sampling needs no special
case: the integrals use the real spacing. The rows are accumulated with
exponential forgetting (time constant `memory_s`) and a Gaussian prior (tau ≈ 20 s, R ≈
0.05 °C/W, M0 from the first reading) that is never forgotten ("stabilised forgetting"): while
the data say little — a GPU at constant power tells tau and M_inf but not R — the prior fills in.
The prior is loose on alpha and M0 and firmer on beta = 1/C: a failed fan or a warmer aisle
changes R, tau and M0, but not the heat capacity C of the board. When the model's errors add up
(a CUSUM passing its alarm level) the GPU has changed: the fit drops what it learned, keeps beta
as its prior, and re-learns from the readings since the errors began.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

from gpuwatch.policy.history import Point
from gpuwatch.policy.linear import Matrix, Vector, add, add_outer, scale, scale_matrix, solve, with_diagonal

KW = 1000.0  # powers enter the regression in kW, so its columns have like scales
# Each reading adds one regression row per lag (in readings) that fits since the last restart:
# the short one follows changes and drives change detection, the long ones carry more signal
# for the same whole-degree rounding.
ROW_LAGS = (4, 8, 16)
# Std of a row's margin change from whole-degree readings, °C: weighs the data against the prior.
ROW_NOISE_C = 0.5
# Prior std of alpha and beta relative to their prior values, and of M0 in °C. M0 is loose (the
# inlet is unknown) so that at constant power the R/M0 split follows beta's prior.
PRIOR_ALPHA_SPREAD = 2.0
PRIOR_BETA_SPREAD = 0.5
PRIOR_M0_SPREAD_C = 100.0
MAX_GAP_STEPS = 5.0  # rows spanning a longer gap between two readings are not learned from
# Change detection: a two-sided CUSUM of the rows' prediction errors, less an allowance per row
# for rounding noise, that passes the alarm level (°C) means the GPU changed. Armed once the fit
# has MIN_ROWS rows. KEEP_POINTS readings are kept to re-learn from after the change began.
DRIFT_ALLOWANCE_C = 0.5
DRIFT_ALARM_C = 3.0
KEEP_POINTS = 40
# A fit outside these is not physical (tau s, R °C/W): it is not used.
TAU_RANGE_S = (1.0, 3600.0)
RESISTANCE_RANGE_C_PER_W = (1e-3, 2.0)
# Converged: at least MIN_ROWS rows since the last restart, and the model, started `min_samples`
# readings ago, reproduces them this closely (RMS, °C) from the recorded powers alone.
MIN_ROWS = 5
FIT_TOLERANCE_C = 1.0


@dataclass(frozen=True, slots=True)
class RcParameters:
    """An RC model on the margin scale: `dM/dt = (M0 - R*P - M) / tau`."""

    tau_s: float
    resistance_c_per_w: float
    zero_power_margin_c: float  # M0: the margin the GPU would settle at drawing nothing, °C

    def steady_margin_c(self, power_w: float) -> float:
        """Margin the GPU settles at when it draws `power_w` for good, °C."""
        return self.zero_power_margin_c - self.resistance_c_per_w * power_w

    def margin_after_c(self, margin_c: float, power_w: float, seconds: float) -> float:
        """Margin `seconds` from now, starting at `margin_c` and drawing `power_w` throughout."""
        steady = self.steady_margin_c(power_w)
        return steady + (margin_c - steady) * math.exp(-seconds / self.tau_s)

    def time_to_margin_s(self, margin_c: float, target_c: float, power_w: float) -> float | None:
        """Seconds until the margin reaches `target_c` at constant `power_w`; None if it never does."""
        if margin_c == target_c:
            return 0.0
        steady = self.steady_margin_c(power_w)
        if target_c == steady:
            return None
        ratio = (margin_c - steady) / (target_c - steady)
        # Reached only when the target lies between now and the steady state (ratio > 1).
        return self.tau_s * math.log(ratio) if ratio > 1 else None

    def sustainable_power_w(self, margin_c: float) -> float:
        """Highest steady power whose steady margin stays at or above `margin_c`, W (may be < 0)."""
        return (self.zero_power_margin_c - margin_c) / self.resistance_c_per_w


@dataclass(frozen=True, slots=True)
class RcFit:
    """The running fit of one GPU; `update` returns a new fit and never changes this one."""

    step_s: float
    memory_s: float
    prior: Vector  # (alpha 1/s, beta °C/(kW*s), alpha*M0 °C/s)
    prior_precision: Vector
    information: Matrix  # forgotten sum of w*phi*phi^T since the last restart
    moment: Vector  # forgotten sum of w*phi*y
    theta: Vector
    rows: int  # rows learned since the last restart
    points: tuple[Point, ...]  # the last KEEP_POINTS readings, to re-learn from after a change
    restarted_at: float  # no row reaching back before this is learned from
    drift_up_c: float = 0.0  # CUSUM of the rows' prediction errors, each way, °C
    drift_down_c: float = 0.0
    drift_onset: float | None = None  # when the current run of errors began

    @classmethod
    def start(
        cls,
        first: Point,
        *,
        step_s: float,
        tau_prior_s: float,
        resistance_prior_c_per_w: float,
        memory_s: float,
    ) -> RcFit:
        """A fit that knows only the priors and one reading (taken as settled, to place M0)."""
        if first.power_w is None:
            raise ValueError("the RC fit needs power readings")
        alpha = 1.0 / tau_prior_s
        beta = alpha * resistance_prior_c_per_w * KW
        prior = _settled_prior(alpha, beta, first)
        spreads = (PRIOR_ALPHA_SPREAD * alpha, PRIOR_BETA_SPREAD * beta, PRIOR_M0_SPREAD_C * alpha)
        zero = (0.0, 0.0, 0.0)
        return cls(
            step_s=step_s,
            memory_s=memory_s,
            prior=prior,
            prior_precision=(spreads[0] ** -2, spreads[1] ** -2, spreads[2] ** -2),
            information=(zero, zero, zero),
            moment=zero,
            theta=prior,
            rows=0,
            points=(first,),
            restarted_at=first.at,
        )

    def update(self, point: Point) -> RcFit:
        """The fit after one more reading; readings without power or not newer than the last are ignored."""
        if point.power_w is None or point.at <= self.points[-1].at:
            return self
        forget = math.exp(-(point.at - self.points[-1].at) / self.memory_s)
        fit = replace(
            self,
            information=scale_matrix(self.information, forget),
            moment=scale(self.moment, forget),
            points=(*self.points[-(KEEP_POINTS - 1) :], point),
        )
        rows = [
            row
            for lag in ROW_LAGS
            if len(fit.points) > lag
            and fit.points[-(lag + 1)].at >= self.restarted_at
            and (row := _row(fit.points[-(lag + 1) :], self.step_s)) is not None
        ]
        if not rows:
            return fit
        phi, y = rows[0]
        error = y - sum(p * t for p, t in zip(phi, self.theta, strict=True))
        up = max(0.0, self.drift_up_c + error - DRIFT_ALLOWANCE_C)
        down = max(0.0, self.drift_down_c - error - DRIFT_ALLOWANCE_C)
        onset = None if up == down == 0 else (self.drift_onset or self.points[-1].at)
        if onset is not None and self.rows >= MIN_ROWS and max(up, down) > DRIFT_ALARM_C:
            return fit.restarted(onset)
        for phi, y in rows:
            fit = fit.learned(phi, y)
        return replace(fit, rows=self.rows + 1, drift_up_c=up, drift_down_c=down, drift_onset=onset)

    def learned(self, phi: Vector, y: float) -> RcFit:
        """The fit with one more regression row."""
        weight = ROW_NOISE_C**-2
        information = add_outer(self.information, phi, weight)
        moment = add(self.moment, scale(phi, weight * y))
        theta = solve(
            with_diagonal(information, self.prior_precision),
            add(moment, _times(self.prior_precision, self.prior)),
        )
        return replace(self, information=information, moment=moment, theta=theta)

    def restarted(self, onset: float) -> RcFit:
        """The fit re-learned from the readings since `onset` only; beta (1/C) kept as its prior."""
        before = tuple(p for p in self.points if p.at <= onset) or self.points[:1]
        beta = self.theta[1] if self.theta[1] > 0 else self.prior[1]
        prior = _settled_prior(self.prior[0], beta, before[-1])
        zero = (0.0, 0.0, 0.0)
        fit = replace(
            self,
            prior=prior,
            information=(zero, zero, zero),
            moment=zero,
            theta=prior,
            rows=0,
            points=before,
            restarted_at=before[-1].at,
            drift_up_c=0.0,
            drift_down_c=0.0,
            drift_onset=None,
        )
        for point in self.points[len(before) :]:
            fit = fit.update(point)
        return fit

    @property
    def parameters(self) -> RcParameters | None:
        """The fitted tau, R and M0, or None while they are not physical."""
        alpha, beta, gamma = self.theta
        if alpha <= 0:
            return None
        tau_s, resistance = 1.0 / alpha, beta / alpha / KW
        if not (TAU_RANGE_S[0] <= tau_s <= TAU_RANGE_S[1]) or not (
            RESISTANCE_RANGE_C_PER_W[0] <= resistance <= RESISTANCE_RANGE_C_PER_W[1]
        ):
            return None
        return RcParameters(tau_s=tau_s, resistance_c_per_w=resistance, zero_power_margin_c=gamma / alpha)

    def converged(self, window: Sequence[Point], min_samples: int) -> bool:
        """Whether the fit has learned enough since its last restart and reproduces the latest readings."""
        error = free_run_error_c(self.parameters, window[-min_samples:])
        return self.rows >= MIN_ROWS and error is not None and error <= FIT_TOLERANCE_C


def margin_estimate_c(params: RcParameters, window: Sequence[Point]) -> float | None:
    """The current margin most consistent with the window's readings under the model, °C.

    The model run over the window from a starting margin m0 gives A_i + B_i*m0 at each reading
    (A: the powers' forced response, B: the decay); m0 is fitted by least squares. Rounding
    errors of ±0.5 °C average out over the readings, where one reading alone carries them whole.
    """
    if len(window) < 2 or any(p.power_w is None for p in window):
        return None
    forced, decay = 0.0, 1.0
    cross = squares = 0.0
    for before, after in itertools.pairwise(window):
        fraction = math.exp(-(after.at - before.at) / params.tau_s)
        steady = params.steady_margin_c((before.power_w + after.power_w) / 2)  # type: ignore[operator]
        forced = steady + (forced - steady) * fraction
        decay *= fraction
        cross += decay * (after.margin_c - forced)
        squares += decay * decay
    start = window[0].margin_c
    starting_c = (cross + start) / (squares + 1.0)  # the first reading counts too (A=0, B=1)
    return forced + decay * starting_c


def free_run_error_c(params: RcParameters | None, window: Sequence[Point]) -> float | None:
    """RMS error, °C, of the model run from the window's first margin on its recorded powers alone."""
    if params is None or len(window) < 2:
        return None
    margin, squares = window[0].margin_c, 0.0
    for before, after in itertools.pairwise(window):
        if before.power_w is None or after.power_w is None:
            return None
        margin = params.margin_after_c(margin, (before.power_w + after.power_w) / 2, after.at - before.at)
        squares += (margin - after.margin_c) ** 2
    return math.sqrt(squares / (len(window) - 1))


def _row(points: Sequence[Point], step_s: float) -> tuple[Vector, float] | None:
    """One regression row (phi, y) over `points`, or None if they are too few or span a gap."""
    if len(points) < 2:
        return None
    margin_integral = power_integral = 0.0
    for before, after in itertools.pairwise(points):
        dt = after.at - before.at
        if dt > MAX_GAP_STEPS * step_s or before.power_w is None or after.power_w is None:
            return None
        margin_integral += (before.margin_c + after.margin_c) / 2 * dt
        power_integral += (before.power_w + after.power_w) / 2 / KW * dt
    span = points[-1].at - points[0].at
    return (-margin_integral, -power_integral, span), points[-1].margin_c - points[0].margin_c


def _times(left: Vector, right: Vector) -> Vector:
    return (left[0] * right[0], left[1] * right[1], left[2] * right[2])


def _settled_prior(alpha: float, beta: float, point: Point) -> Vector:
    """Prior coefficients placing M0 as if the GPU were settled at `point`: M0 = M + R*P."""
    return (alpha, beta, alpha * point.margin_c + beta * (point.power_w or 0.0) / KW)
