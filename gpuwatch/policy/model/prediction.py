"""The model's forecast: the margin's path at present power, the time to slowdown, what a job costs."""

from __future__ import annotations

import dataclasses
import enum
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from gpuwatch.policy.config import PolicyConfig
from gpuwatch.policy.model.calibration import (
    Calibration,
    Made,
    allowance,
    lowered,
    start_cost,
    start_ratio_at,
)
from gpuwatch.policy.model.history import Point, margin_slope
from gpuwatch.policy.model.learning import Learned, Load
from gpuwatch.policy.model.thermal_model import MIN_ROWS, RESISTANCE_RANGE_C_PER_W, RcFit, RcParameters
from gpuwatch.policy.model.trajectory import Measured

# The model tracks the true margin (dequantise.py undoes the whole-degree rounding), and the
# first reading of margin 0 comes when the true margin reaches 0.
SLOWDOWN_MARGIN_C = 0.0


class Basis(enum.StrEnum):
    """What a forecast rests on."""

    CORRECTED = "corrected"  # the converged model, its time constant adapted to the measured trajectory
    MODEL = "model"  # the fitted RC model, converged
    SLOPE = "slope"  # slope regression over the recent readings, before the fit converges
    NONE = "none"  # too little history to predict anything


class PathFrom(enum.StrEnum):
    """What the path at present power was drawn from: each is calibrated on its own errors."""

    TRAJECTORY = "trajectory"  # the trajectory through the latest crossings, since the last power step
    MODEL = "model"  # the fitted RC model (after a power step, until the crossings show a trajectory)
    TREND = "trend"  # the margin's slope, or flat: before the fit converges


# Where the path over the horizon is looked at, as shares of it: closer together near now, where
# the die's own rise happens (for the 60 s default: 0, 1, 2, 5, 10, 20, 30, 45 and 60 s).
HORIZON_SHARES = (0.0, 1 / 60, 2 / 60, 5 / 60, 10 / 60, 20 / 60, 30 / 60, 45 / 60, 1.0)


@dataclass(frozen=True, slots=True)
class Forecast:
    """Predictions for one GPU at one reading; None where they cannot be made.

    `path_c` is the margin at each of `offsets_s` (HORIZON_SHARES of the horizon) if the GPU
    keeps its present power, the corrected forecast's own; `response` says how much more margin
    each W of extra power costs by then (the step response of the fitted model, or the priors').
    Slots (slots.py) are read off the two.
    """

    basis: Basis
    time_to_slowdown_s: float | None  # None: not heading there
    predicted_margin_c: float | None  # after the horizon, if one more job starts now
    sustainable_power_w: float | None
    offsets_s: tuple[float, ...] = ()
    path_c: tuple[float, ...] = ()  # empty: nothing to predict from
    response: RcParameters | None = None
    # The response's step response at each of offsets_s, °C per W: read for every class's slots.
    cost_c_per_w: tuple[float, ...] = ()
    headroom_w: float | None = None  # power left below the enforced limit, W (None: no limit known)
    # The margin h seconds on at present power (the function path_c samples), °C; None: no path.
    margin_at: Callable[[float], float] | None = None
    # The allowance for the forecast's own errors at calibration.CHECK_SHARES of the horizon, °C:
    # path_c and margin_at are lowered by it (empty: not calibrated).
    error_c: tuple[float, ...] = ()
    path_from: PathFrom = PathFrom.TREND
    # The forecast's own margin h s on, before the allowance (None: as margin_at, not calibrated).
    own_margin_at: Callable[[float], float] | None = None
    # What a job started now costs h s on, °C per W: the response raised by how much more than
    # forecast recent starts cost (None: the response's own step response).
    start_c_per_w: Callable[[float], float] | None = None
    start_ratio: tuple[float, ...] = ()  # that raise at calibration.CHECK_SHARES of the horizon


def forecast(  # noqa: PLR0913 - the stages' outputs this one combines
    fit: RcFit | None,
    window: Sequence[Point],
    margin_c: float,
    load: Load,
    config: PolicyConfig,
    *,
    measured: Measured | None = None,
) -> Forecast:
    """Predictions from the converged model, else from the margin's slope, else none.

    The time to slowdown comes from what the readings show (`measured`: the trajectory through
    the latest crossings, or their rate) whenever they show it, and from the model otherwise;
    so does the path over the horizon.
    """
    params: RcParameters | None = None
    model: Forecast | None = None
    if fit is not None and load.power_w is not None and fit.converged(config.slope_min_samples):
        params = fit.parameters
        if params is not None:
            model = _from_model(params, margin_c, fit.lagged_power_w, load, config)
    if model is None:
        slope = margin_slope(window[-config.slope_max_samples :], config.slope_min_samples)
        if slope is not None:
            model = _from_slope(slope, margin_c, load, prior_parameters(margin_c, load, config), config)
    base = model or Forecast(Basis.NONE, None, None, None)
    if measured is not None:
        base = _corrected(base, measured, margin_c)
    offsets = tuple(share * config.horizon_s for share in HORIZON_SHARES)
    margin_at, path_from = _path(
        base,
        params=params,
        fit=fit,
        measured=measured,
        margin_c=margin_c,
        load=load,
        horizon_s=config.horizon_s,
    )
    path = tuple([margin_at(h) for h in offsets])
    headroom_w = None
    if load.power_limit_w is not None and load.power_w is not None:
        headroom_w = max(0.0, load.power_limit_w - load.power_w)
    response = params or _costlier(prior_parameters(margin_c, load, config), fit, offsets, load.power_w)
    return dataclasses.replace(
        base,
        offsets_s=offsets,
        path_c=path,
        response=response,
        cost_c_per_w=step_costs(response, offsets),
        headroom_w=headroom_w,
        margin_at=margin_at,
        path_from=path_from,
    )


def _costlier(
    prior: RcParameters, fit: RcFit | None, offsets_s: tuple[float, ...], power_w: float | None
) -> RcParameters:
    """The priors, or the fit's own parameters where a job costs more by them somewhere on the horizon.

    A fit that has learned from enough readings but stopped reproducing them (a fan speeding up
    as the sink warms is not one RC plant) is not trusted to say what a job costs; but where it
    has learned that jobs cost more than the priors say, planning with the priors would start
    work its board cannot take. One still learning (fewer than MIN_ROWS) plans with the priors.
    Measured on the wide family of plants: a fan-curve board whose fit lapsed for a sample was
    offered a slot at 7 °C of margin by the priors' half resistance; the job took 6.5 °C at once.
    A fit whose slow node is not physical yet still knows its die (the jumps at every power
    step): a board with a 0.4 s die and a 280 s sink, busy for 450 readings, was offered a third
    job at 5 °C of margin by the priors' die, and the job took 4.8 °C at once.
    """
    if fit is None or fit.rows < MIN_ROWS:
        return prior
    learned = fit.parameters
    if learned is None:
        # The slow node is not fitted yet (a sink of minutes on a busy GPU), the die is.
        die = min(fit.die_resistance_c_per_w, RESISTANCE_RANGE_C_PER_W[1])
        slow = prior.resistance_c_per_w - prior.die_resistance_c_per_w
        learned = dataclasses.replace(
            prior,
            resistance_c_per_w=slow + die,
            # settled now, as the priors are placed
            zero_power_margin_c=prior.zero_power_margin_c
            + (die - prior.die_resistance_c_per_w) * (power_w or 0.0),
            die_resistance_c_per_w=die,
        )
    costs_more = any(
        learned.step_response_c_per_w(h) > prior.step_response_c_per_w(h) for h in offsets_s if h > 0
    )
    return learned if costs_more else prior


def step_costs(response: RcParameters, offsets_s: tuple[float, ...]) -> tuple[float, ...]:
    """The margin one more W costs at each of `offsets_s` (the step response), °C per W."""
    return tuple([response.step_response_c_per_w(h) for h in offsets_s])


def _path(  # noqa: PLR0913 - what each basis draws its path from
    base: Forecast,
    *,
    params: RcParameters | None,
    fit: RcFit | None,
    measured: Measured | None,
    margin_c: float,
    load: Load,
    horizon_s: float,
) -> tuple[Callable[[float], float], PathFrom]:
    """The margin h seconds on at present power: the measured trajectory, else the model, else the trend.

    A trajectory says where the margin is heading at this power better than the model does (it is
    the model's measured error fed back); a cooling trend is never counted on before the model
    has converged, and a straight trend is held past the horizon rather than run on for ever.
    """
    if measured is not None and measured.path is not None:
        trajectory, now = measured.path, measured.now
        return (lambda h: trajectory.margin_c(now + h) if h else margin_c), PathFrom.TRAJECTORY
    if params is not None and fit is not None and load.power_w is not None:
        # A die still answering a step down would cool a little more; when in the interval the
        # step came is unknown, so that cooling is not counted on. One still answering a step
        # up is.
        lagged_w = max(fit.lagged_power_w, load.power_w)
        along = params.path(margin_c, load.power_w, lagged_w)
        return (lambda h: along(h) if h else margin_c), PathFrom.MODEL
    rate = 0.0
    if base.basis is Basis.SLOPE and base.time_to_slowdown_s and margin_c > SLOWDOWN_MARGIN_C:
        rate = (margin_c - SLOWDOWN_MARGIN_C) / base.time_to_slowdown_s
    return (lambda h: margin_c - rate * min(h, horizon_s)), PathFrom.TREND


def _corrected(base: Forecast, measured: Measured, margin_c: float) -> Forecast:
    """`base` with the time to slowdown the readings show, where they show one.

    The trajectory through the latest crossings wins when there is one; where its arc levels
    off above the limit, the model, then the margin's present rate, may still see it cross.
    Without a trajectory the rate stands in only where the model sees no crossing.
    """
    if measured.path is not None:
        seconds = measured.time_to_c(margin_c, SLOWDOWN_MARGIN_C)
        if seconds is None:
            seconds = base.time_to_slowdown_s
    elif base.time_to_slowdown_s is None:
        seconds = None
    else:
        return base
    if seconds is None:
        seconds = dataclasses.replace(measured, path=None).time_to_c(margin_c, SLOWDOWN_MARGIN_C)
    if seconds is None and measured.path is None:
        return base
    return dataclasses.replace(base, basis=Basis.CORRECTED, time_to_slowdown_s=seconds)


def _from_model(
    params: RcParameters, margin_c: float, lagged_w: float, load: Load, config: PolicyConfig
) -> Forecast:
    power_w = load.power_w or 0.0  # the caller checked it is known
    raised_w = load.with_one_more_job_w() or power_w
    sustainable_w = params.sustainable_power_w(config.default_guard_c)
    if load.power_limit_w is not None:
        sustainable_w = min(sustainable_w, load.power_limit_w)
    return Forecast(
        basis=Basis.MODEL,
        time_to_slowdown_s=params.time_to_margin_s(
            margin_c, min(margin_c, SLOWDOWN_MARGIN_C), power_w, lagged_w
        ),
        predicted_margin_c=params.margin_after_c(margin_c, raised_w, config.horizon_s, lagged_w),
        sustainable_power_w=max(0.0, sustainable_w),
    )


def _from_slope(
    slope: float, margin_c: float, load: Load, params: RcParameters, config: PolicyConfig
) -> Forecast:
    """Straight-line extrapolation: on a saturating curve it errs early, which is the safe side."""
    time_to_slowdown_s = None
    if margin_c <= SLOWDOWN_MARGIN_C:
        time_to_slowdown_s = 0.0
    elif slope < 0:
        time_to_slowdown_s = (margin_c - SLOWDOWN_MARGIN_C) / -slope
    # One more job's share of the fall, from the prior RC model; a cooling trend is not counted on.
    job_drop_c = 0.0
    raised_w = load.with_one_more_job_w()
    if raised_w is not None and load.power_w is not None:
        job_drop_c = (
            params.resistance_c_per_w
            * (raised_w - load.power_w)
            * -math.expm1(-config.horizon_s / params.tau_s)
        )
    predicted = margin_c + min(slope, 0.0) * config.horizon_s - job_drop_c
    return Forecast(Basis.SLOPE, time_to_slowdown_s, predicted, None)


def prior_parameters(margin_c: float, load: Load, config: PolicyConfig) -> RcParameters:
    """The configured priors, placed as if the GPU were settled now: what stands in until the fit converges.

    A fit that has not converged is not used, even where its values look physical: it may hold
    a die share or a resistance that one power step taught it, and slots read from it would be
    wrong by as much.
    """
    resistance = config.resistance_prior_c_per_w
    return RcParameters(
        tau_s=config.tau_prior_s,
        resistance_c_per_w=resistance,
        zero_power_margin_c=margin_c + resistance * (load.power_w or 0.0),
        die_resistance_c_per_w=config.die_share_prior * resistance,
    )


@dataclass(frozen=True, slots=True)
class Outlook:
    """The model's output, what the forecast stage hands on: what it learned, the forecast, its errors."""

    learned: Learned
    forecast: Forecast
    calibration: Calibration = field(default_factory=Calibration)  # its memory for the next reading


NO_FORECAST = Forecast(Basis.NONE, None, None, None)


def predicted(learned: Learned, calibration: Calibration | None = None) -> Outlook:
    """Predictions from what the model learned from a reading (none without a fresh reading).

    The path is lowered by the allowance for the forecast's own recent errors (calibration.py),
    scored against this reading first when the model learned from it.
    """
    calibration = calibration or Calibration()
    config = learned.readings.moment.config
    if learned.load is None or learned.estimate_c is None:
        return Outlook(learned, NO_FORECAST, calibration)
    model = learned.model
    prediction = forecast(
        model.fit, model.window, learned.estimate_c, learned.load, config, measured=learned.measured
    )
    own = prediction.margin_at
    if own is None or prediction.response is None:
        return Outlook(learned, prediction, calibration)
    horizon_s = config.horizon_s
    if learned.measured is not None:
        # Scored and kept only where the model learned from the reading; a reading it dropped
        # is still judged with the allowance the others earned.
        now = learned.measured.now
        calibration = calibration.scored(now, learned.estimate_c, learned.load.power_w, horizon_s)
        made = Made(now, own, prediction.response.step_response_c_per_w, str(prediction.path_from))
        calibration = calibration.with_forecast(made, horizon_s)
    quantiles = calibration.quantiles_c(
        str(prediction.path_from), config.forecast_error_quantile, config.forecast_error_prior_c
    )
    ratios = calibration.start_ratios(config.forecast_error_quantile, config.start_error_prior_ratio)
    started = start_cost(ratios, prediction.response.step_response_c_per_w, horizon_s)
    path = lowered(own, quantiles, horizon_s) if any(quantiles) else own
    # At the offsets the prediction worked out its path and step response already: the same
    # numbers as `path` and `started` there, without calling them again.
    kept = allowance(quantiles, horizon_s)
    ratio_at = start_ratio_at(ratios, horizon_s)
    offsets = prediction.offsets_s
    calibrated = dataclasses.replace(
        prediction,
        margin_at=path,
        own_margin_at=own,
        start_c_per_w=started,
        start_ratio=ratios,
        cost_c_per_w=tuple(
            [cost * (1.0 + ratio_at(h)) for cost, h in zip(prediction.cost_c_per_w, offsets, strict=True)]
        ),
        path_c=tuple([margin_c - kept(h) for margin_c, h in zip(prediction.path_c, offsets, strict=True)]),
        error_c=quantiles,
    )
    return Outlook(learned, calibrated, calibration)
