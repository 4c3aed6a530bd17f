"""The forecast's own errors (its word h s ago on the margin now, against the margin now) and their allowance.

Every forecast made is kept for one horizon and scored when a check horizon h (CHECK_SHARES of
the horizon) has passed: the margin it foresaw for now, moved by the power steps since as its
step response says they would, less the margin the model reads now. Positive: it promised more
margin than there is. Two things are scored apart, because the slots use them apart:

- The path at present power. Forecasts with no job started since are scored in the pool of
  what their path was drawn from (forecast.PathFrom: the measured trajectory, the fitted
  model, the trend): each predictor errs in its own way (the model, just after a power step,
  far more than the trajectory between steps), and the path now is lowered by its own
  predictor's allowance. A job ending since is moved out as the response says.
- What a job's start costs. When jobs start, the newest forecast made before them is scored
  across them, relative to the cost its response gave them (STARTS: 1.0 means they cost twice
  as much): a die or a heat sink that answers power more than the fit or the priors say (a
  failed fan, before the model has converged again). Jobs started now are planned with the
  response raised by that ratio.

Each GPU keeps its last ERRORS_KEPT scores per pool and check horizon and plans with their
`forecast_error_quantile` (split-conformal prediction, per pool as Mondrian conformal
prediction has it: the scores are the nonconformity of the forecasts just made, and their
quantile bounds the next one's error while the board behaves as it has lately). Where a horizon
has fewer than EARNED_AFTER scores (a new board, a predictor not used lately, a GPU taking jobs
faster than the horizon), it keeps the prior: `forecast_error_prior_c` at the horizon and in
proportion before it, and `start_error_prior_ratio`. A board starts wide and earns its narrow
allowance; the allowance widens within a check horizon of a surprise and narrows once the
surprise's scores have aged out. Pure: no clock; the memory is bounded (a horizon of forecasts,
ERRORS_KEPT scores per pool and horizon).
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import NamedTuple

# Where forecasts are checked, as shares of the horizon (for 60 s: 5, 15, 30 and 60 s ahead).
CHECK_SHARES = (5 / 60, 15 / 60, 30 / 60, 1.0)
# Scores kept per check horizon: a minute of forecasts at the default 1 s interval.
ERRORS_KEPT = 60
# Scores a check horizon needs before its own quantile replaces the prior.
EARNED_AFTER = 10
# At most this many forecasts per horizon are kept to be scored (one per horizon/KEPT_PER_HORIZON s):
# at 0.1 s sampling, one in ten.
KEPT_PER_HORIZON = 60

Step = tuple[float, float]  # (monotonic s, change in held power, W)
# The pool of forecasts scored across jobs starting (relative to the starts' forecast cost).
STARTS = "starts"
# Starts forecast to cost less than this by a check horizon say nothing relative about it, °C.
MIN_STARTED_C = 0.5
_NONE_KEPT: tuple[tuple[float, ...], ...] = ((),) * len(CHECK_SHARES)


class Made(NamedTuple):
    """A forecast made, kept to be scored (a tuple: one is replaced at every check)."""

    at: float  # monotonic s
    margin_at: Callable[[float], float]  # the margin h s on at the power of its time, °C
    response: Callable[[float], float]  # its step response, °C per W
    drawn_from: str = ""  # what its path was drawn from (forecast.PathFrom): its scores' pool
    started: bool = False  # jobs started since it was made: scored as the STARTS pool, per job cost
    due: int = 0  # the index in CHECK_SHARES of its next check


@dataclass(frozen=True, slots=True)
class Calibration:
    """One GPU's forecasts still to be scored, and the scores of those that were; replaced, never changed."""

    made: tuple[Made, ...] = ()
    steps: tuple[Step, ...] = ()  # the held power's steps since the oldest forecast kept
    power_w: float | None = None  # the held power at the last reading scored against
    scored_at: float | None = None  # when that reading was taken (monotonic s)
    # Per pool (what the scored forecasts' paths were drawn from), per check horizon, oldest first.
    errors: Mapping[str, tuple[tuple[float, ...], ...]] = field(default_factory=dict)

    def scored(self, at: float, margin_c: float, power_w: float | None, horizon_s: float) -> Calibration:
        """This memory after the reading at `at` (margin `margin_c`, held power `power_w`): the due scored.

        A reading scored before (the same reading judged again) changes nothing.
        """
        if self.scored_at is not None and at <= self.scored_at:
            return self
        steps, waiting = self.steps, self.made
        if power_w is not None and self.power_w is not None and power_w != self.power_w:
            change_w = power_w - self.power_w
            if change_w > 0:
                # Jobs started: the forecasts made before are no longer the path's to be scored
                # by, but the newest of them tells how much the starts cost against their forecast.
                starts = [forecast for forecast in waiting if forecast.started]
                newest = [forecast for forecast in waiting if not forecast.started][-1:]
                waiting = (*starts, *[forecast._replace(started=True) for forecast in newest])
            steps = (*steps, (at, change_w))
        errors: dict[str, list[tuple[float, ...]]] = {}
        made: list[Made] = []
        checks = [share * horizon_s for share in CHECK_SHARES]
        for forecast in waiting:
            due = forecast.due
            elapsed = at - forecast.at
            if elapsed < checks[due]:
                made.append(forecast)
                continue
            name, error_c = _score(forecast, at, margin_c, steps)
            pool = errors.get(name)
            if pool is None:
                pool = errors[name] = list(self.errors.get(name, _NONE_KEPT))
            while due < len(checks) and elapsed >= checks[due]:
                if error_c is not None:
                    pool[due] = (*pool[due][1 - ERRORS_KEPT :], error_c)  # the newest ERRORS_KEPT
                due += 1
            if due < len(checks):
                made.append(forecast._replace(due=due))
        oldest = made[0].at if made else at
        return Calibration(
            tuple(made),
            tuple([step for step in steps if step[0] > oldest]),
            power_w if power_w is not None else self.power_w,
            at,
            {**self.errors, **{name: tuple(pool) for name, pool in errors.items()}},
        )

    def with_forecast(self, made: Made, horizon_s: float) -> Calibration:
        """This memory keeping `made` to be scored (unless one was kept less than a spacing ago)."""
        if self.made and made.at - self.made[-1].at < horizon_s / KEPT_PER_HORIZON * 0.999:
            return self
        return Calibration((*self.made, made), self.steps, self.power_w, self.scored_at, self.errors)

    def quantiles_c(self, drawn_from: str, share: float, prior_c: float) -> tuple[float, ...]:
        """The allowance at each check horizon for a path drawn from `drawn_from`, °C.

        The `share` quantile of that pool's scores (>= 0), or the prior where it has too few.
        """
        kept = self.errors.get(drawn_from, _NONE_KEPT)
        return tuple(
            [
                _quantile(scores, share, prior_c * check)
                for check, scores in zip(CHECK_SHARES, kept, strict=True)
            ]
        )

    def start_ratios(self, share: float, prior_ratio: float) -> tuple[float, ...]:
        """How much more than forecast a job's start costs at each check horizon (a ratio >= 0)."""
        kept = self.errors.get(STARTS, _NONE_KEPT)
        return tuple([_quantile(scores, share, prior_ratio) for scores in kept])


def _score(forecast: Made, at: float, margin_c: float, steps: tuple[Step, ...]) -> tuple[str, float | None]:
    """The pool `forecast` is scored in at `at`, and its score there (None: it says nothing).

    The margin it foresaw less the margin now, the steps since moved as its response says; one
    scored across jobs starting, relative to what it says they cost (how much more a job costs).
    """
    since = [(change, forecast.response(at - when)) for when, change in steps if when > forecast.at]
    error_c = forecast.margin_at(at - forecast.at) - sum([change * cost for change, cost in since]) - margin_c
    if not forecast.started:
        return forecast.drawn_from, error_c
    started_c = sum([change * cost for change, cost in since if change > 0])
    return STARTS, (error_c / started_c if started_c >= MIN_STARTED_C else None)


def _quantile(scores: tuple[float, ...], share: float, prior: float) -> float:
    """The `share` quantile of `scores` (>= 0), or `prior` where there are fewer than EARNED_AFTER."""
    if len(scores) < EARNED_AFTER:
        return prior
    ordered = sorted(scores)
    return max(0.0, ordered[min(len(ordered), math.ceil(share * len(ordered))) - 1])


def start_cost(
    ratios: tuple[float, ...], response: Callable[[float], float], horizon_s: float
) -> Callable[[float], float]:
    """The step response a job's start is planned with, °C per W: `response` raised by the start ratios.

    The ratio is the first check's before it, straight between the checks, the last's after.
    """
    if all(ratio == ratios[0] for ratio in ratios):
        # One ratio at every check (the prior, or a board that errs alike at every horizon):
        # the schedule asks for this response hundreds of times a sample.
        raised = 1.0 + ratios[0]
        return lambda h: response(h) * raised
    ratio_at = start_ratio_at(ratios, horizon_s)
    return lambda h: response(h) * (1.0 + ratio_at(h))


def start_ratio_at(ratios: tuple[float, ...], horizon_s: float) -> Callable[[float], float]:
    """The start ratio h s ahead: the first check's before it, straight between them, the last's after."""
    return _straight([share * horizon_s for share in CHECK_SHARES], list(ratios))


def _straight(xs: list[float], ys: list[float]) -> Callable[[float], float]:
    """Straight between the points (xs ascending), level with the first before it and the last after."""
    first, last = xs[0], xs[-1]

    def at(x: float) -> float:
        if x <= first:
            return ys[0]
        if x >= last:
            return ys[-1]
        after = bisect.bisect_left(xs, x)
        before = after - 1
        return ys[before] + (ys[after] - ys[before]) * (x - xs[before]) / (xs[after] - xs[before])

    return at


def allowance(quantiles_c: tuple[float, ...], horizon_s: float) -> Callable[[float], float]:
    """The margin kept for the forecast's error h s ahead, °C: through the check horizons', never falling.

    Zero now, straight between the check horizons, and in proportion past the last (a job longer
    than the horizon is planned to its end).
    """
    return lowered(lambda _h: 0.0, quantiles_c, horizon_s, sign=-1.0)


def lowered(
    path: Callable[[float], float], quantiles_c: tuple[float, ...], horizon_s: float, *, sign: float = 1.0
) -> Callable[[float], float]:
    """`path` less the `allowance` for `quantiles_c` (`sign` -1: plus it), in one call.

    The schedule asks for the path at every point it looks at, hundreds of times a sample.
    """
    xs, ys = [0.0], [0.0]
    for share, quantile_c in zip(CHECK_SHARES, quantiles_c, strict=True):
        xs.append(share * horizon_s)
        ys.append(max(ys[-1], quantile_c))
    last_s, last_c = xs[-1], ys[-1]

    def at(h: float) -> float:
        if h <= 0:
            return path(h)
        if h >= last_s:
            return path(h) - sign * (last_c * h / last_s)
        after = bisect.bisect_left(xs, h)
        before = after - 1
        kept_c = ys[before] + (ys[after] - ys[before]) * (h - xs[before]) / (xs[after] - xs[before])
        return path(h) - sign * kept_c

    return at
