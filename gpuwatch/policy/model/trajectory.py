"""The forecast's feedback: an exponential through the margin's latest crossings, an adapted time constant.

The RC model (thermal_model.py) says how margin answers power, but a GPU is not first order and
its cooling changes (a fan fails, the aisle warms): the model's time constant and settling level
lag behind what the GPU is doing now, and its forecast errs by as much. At constant power,
though, any linear plant whose fast parts have died out approaches its steady state as one
exponential, and the dequantiser's boundary crossings are exact points on that curve. Fitting

    margin(t) = steady + amplitude * exp(-(t - now)/tau)

through the crossings since power last changed (and the die settled) measures the effective
time constant and steady margin the GPU shows now: the model's prediction is replaced by what
its own errors, read off the readings, say it should have been. The time to slowdown at the
present power uses them in place of the model's. A fit that does not pass the crossings within
their timing error (FIT_TOLERANCE_CHI), or that the readings have since left (still_holds), is
not used; where there is none, the rate between the last crossings stands in only when the
model sees no crossing at all, so a falling margin always has a time to slowdown.

Why this correction, measured with bench/predict.py (324 heat-ups; share of the predictions
made 25-35 s before the crossing within ±25 %, two-node plants drawn ±30 % around the profiles /
first-order plants):
- the first-order RC alone (tau prior 20 s, no die term, 30 s memory: the previous model):
  29.4 % / 58.6 %, with 481 predictions missing: it reads the die's jump as a short tau and
  misses the sink's slow climb;
- the two-node-aware RC fit alone (a die term and a slow node, tau prior 120 s, 120 s memory,
  CUSUM restarts on change): 52.7 % / 71.5 %, 5 missing. After a fan fails its R and tau are
  stale for minutes, and the re-learning from a restart has too little curvature to go on;
- plus the rate between the last crossings where the model sees no crossing: 52.7 % / 71.5 %,
  none missing (it only fills gaps);
- plus this trajectory (what ships): 100 % / 81.5 %, none missing, median error 1 % on two-node
  plants. The first-order plants' inlet steps remain the hard case (63.6 %): a margin settling
  2-8 °C past the limit within a minute leaves a few whole-degree crossings to place it by.
An integral of the error on the predicted margin (the power allocator's way) was not kept:
the error a forecast makes grows with how far ahead it looks, so one integral cannot correct
both the 10 s and the 60 s ahead figures; the trajectory corrects the shape, not a level.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

MIN_CROSSINGS = 3  # three parameters
MIN_SPAN_S = 6.0  # crossings closer together than this say nothing about curvature
# A crossing's time is good to half a sampling interval: uniform, so this standard deviation, s.
# Its margin is exact to within the sensor's own error, taken as CROSSING_FLOOR_C.
TIMING_SD_S = 0.3
CROSSING_FLOOR_C = 0.05
FIT_TOLERANCE_CHI = 9.0  # mean weighted square residual above which the curve is not the GPU's
TAU_PRIOR_SPREAD = math.log(4.0)  # the pull towards the model's tau: a factor of 4 is one sd
# Candidate time constants, s: a geometric grid, refined around the best by golden section to
# about 1 % (each step keeps 0.618 of the bracket of two grid steps).
TAU_GRID_RATIO = 1.6
TAU_GRID_S = tuple(4.0 * TAU_GRID_RATIO**k for k in range(17))  # 4 s to ~5 h
GOLDEN_STEPS = 10
_GOLDEN = (math.sqrt(5.0) - 1.0) / 2.0
SETTLE_AFTER_STEP_S = 10.0  # a power step's fast (die) part is over after this, s
# How far outside the present reading's whole degree the extrapolated trajectory may lie, °C.
AGREE_C = 0.25


@dataclass(frozen=True, slots=True)
class Trajectory:
    """`margin(at) = steady_c + amplitude_c * exp(-(at - ref_at)/tau_s)`, fitted through crossings."""

    ref_at: float
    steady_c: float
    amplitude_c: float
    tau_s: float

    def margin_c(self, at: float) -> float:
        """The fitted margin at `at`, °C."""
        return self.steady_c + self.amplitude_c * math.exp(-(at - self.ref_at) / self.tau_s)

    def time_to_c(self, at: float, target_c: float) -> float | None:
        """Seconds from `at` until the fitted margin reaches `target_c`; None if it never does."""
        now_c = self.margin_c(at)
        if now_c <= target_c:
            return 0.0
        if self.steady_c >= target_c:
            return None
        return self.tau_s * math.log((now_c - self.steady_c) / (target_c - self.steady_c))


def still_holds(
    path: Trajectory | None, at: float, reading_c: float, noise_band_c: float = 0.0
) -> Trajectory | None:
    """`path` while the reading at `at` agrees with it (within its whole degree), else None.

    A noisy sensor's reading may lie `noise_band_c` either side of the margin's degree.

    A trajectory is fitted when a crossing comes and extrapolated until the next: once the
    readings leave it behind (the margin levelled off, or fell faster), it no longer says
    where the margin is going.
    """
    if path is None:
        return None
    margin_c = path.margin_c(at)
    band_c = AGREE_C + noise_band_c
    return path if reading_c - 1.0 - band_c <= margin_c <= reading_c + band_c else None


@dataclass(frozen=True, slots=True)
class Measured:
    """What the readings show at `now`: the fitted trajectory, and the rate between the last crossings."""

    now: float
    path: Trajectory | None
    rate_c_per_s: float | None  # °C/s; None: fewer than two recent crossings

    def time_to_c(self, margin_c: float, target_c: float) -> float | None:
        """Seconds until `target_c`: along the trajectory, else straight on at the rate; None: not reached."""
        if margin_c <= target_c:
            return 0.0
        if self.path is not None:
            return self.path.time_to_c(self.now, target_c)
        if self.rate_c_per_s is not None and self.rate_c_per_s < 0:
            return (margin_c - target_c) / -self.rate_c_per_s
        return None


def fit(
    crossings: Sequence[tuple[float, float]],
    since: float,
    now: float,
    tau_prior_s: float,
    margin_sds: Sequence[float] | None = None,
) -> Trajectory | None:
    """The exponential through the crossings after `since`, or None when they are too few or it fits badly.

    Each crossing is weighted by how well it is placed: its time is good to half a sampling
    interval, so its margin to that times the local rate. Few crossings over a short span say
    little about the curvature; a weak pull of log tau towards `tau_prior_s` (the model's) then
    keeps the time constant sensible, and more crossings outweigh it. `margin_sds`: each
    crossing's own error beyond its timing (a noisy sensor's bins, smoothing.py), °C.

    A noisy sensor's bins also come where the margin stood still (a crossing needs it to move),
    so a change with no power step (the inlet air warming) leaves flat points before a fall that
    no one exponential passes through: where the fit fails, it is tried on the later half of
    the points, and so on while there are enough.
    """
    if margin_sds is None:
        return _fit_points([(at, c) for at, c in crossings if at > since], None, now, tau_prior_s)
    kept = [i for i, (at, _) in enumerate(crossings) if at > since]
    points = [crossings[i] for i in kept]
    extra = [margin_sds[i] for i in kept]
    found = _fit_points(points, extra, now, tau_prior_s)
    while found is None and len(points) >= 2 * MIN_CROSSINGS:
        half = len(points) // 2
        points, extra = points[half:], extra[half:]
        found = _fit_points(points, extra, now, tau_prior_s)
    return found


def _fit_points(
    points: Sequence[tuple[float, float]], extra: Sequence[float] | None, now: float, tau_prior_s: float
) -> Trajectory | None:
    if len(points) < MIN_CROSSINGS or points[-1][0] - points[0][0] < MIN_SPAN_S:
        return None
    line = _Line(points, _weights(points, extra), now)
    prior = math.log(tau_prior_s)

    def cost(log_tau: float) -> tuple[float, float, float] | None:
        found = line.fit(math.exp(log_tau))
        if found is None:
            return None
        chi, steady, amplitude = found
        return chi + ((log_tau - prior) / TAU_PRIOR_SPREAD) ** 2, steady, amplitude

    scored = [(c, math.log(t)) for t in TAU_GRID_S if (c := cost(math.log(t))) is not None]
    if not scored:
        return None
    _, best_log = min(scored, key=lambda item: item[0][0])
    # Golden-section refinement in log tau between the grid's neighbours, one new point a step.
    step = math.log(TAU_GRID_RATIO)
    low, high = best_log - step, best_log + step
    left, right = high - _GOLDEN * (high - low), low + _GOLDEN * (high - low)
    fl, fr = cost(left), cost(right)
    for _ in range(GOLDEN_STEPS):
        if fl is None or fr is None:
            break
        if fl[0] < fr[0]:
            high, right, fr = right, left, fl
            left = high - _GOLDEN * (high - low)
            fl = cost(left)
        else:
            low, left, fl = left, right, fr
            right = low + _GOLDEN * (high - low)
            fr = cost(right)
    tau_s = math.exp((low + high) / 2)
    found = line.fit(tau_s)
    if found is None or found[0] / len(points) > FIT_TOLERANCE_CHI:
        return None
    return Trajectory(now, found[1], found[2], tau_s)


def _weights(points: Sequence[tuple[float, float]], margin_sds: Sequence[float] | None) -> list[float]:
    """1/variance of each crossing's margin: timing error (±half a sample) times the local rate.

    `margin_sds`: each point's own error besides (None: exact crossings).
    """
    weights = []
    for i in range(len(points)):
        left, right = points[max(0, i - 1)], points[min(len(points) - 1, i + 1)]
        rate = abs(right[1] - left[1]) / (right[0] - left[0]) if right[0] > left[0] else 0.0
        sd = math.hypot(CROSSING_FLOOR_C, TIMING_SD_S * rate)
        if margin_sds is not None:
            sd = math.hypot(sd, margin_sds[i])
        weights.append(sd**-2)
    return weights


class _Line:
    """Weighted crossings, ready to fit `margin = steady + amplitude * x` with x = exp((now - t)/tau)."""

    def __init__(self, points: Sequence[tuple[float, float]], weights: Sequence[float], now: float) -> None:
        self.ages = [now - at for at, _ in points]
        self.oldest = max(self.ages)
        self.weights = weights
        self.total = sum(weights)
        self.mean_y = sum([w * c for w, (_, c) in zip(weights, points, strict=True)]) / self.total
        self.centred = [c - self.mean_y for _, c in points]
        self.syy = sum([w * y * y for w, y in zip(weights, self.centred, strict=True)])

    def fit(self, tau_s: float) -> tuple[float, float, float] | None:
        """(weighted sum of squares, steady, amplitude) at `tau_s`; None where x does not vary.

        x is fitted over its value at the oldest crossing, between 0 and 1: exp(age / tau) of a
        crossing 50 minutes old at the grid's 4 s would overflow a float.
        """
        oldest = self.oldest
        xs = [math.exp((age - oldest) / tau_s) for age in self.ages]
        weights = self.weights
        mean_x = sum([w * x for w, x in zip(weights, xs, strict=True)]) / self.total
        dxs = [x - mean_x for x in xs]
        sxx = sum([w * d * d for w, d in zip(weights, dxs, strict=True)])
        if sxx <= 1e-18 * self.total:
            return None
        sxy = sum([w * d * y for w, d, y in zip(weights, dxs, self.centred, strict=True)])
        amplitude = sxy / sxx
        steady = self.mean_y - amplitude * mean_x
        return max(0.0, self.syy - sxy * sxy / sxx), steady, amplitude * math.exp(-oldest / tau_s)
