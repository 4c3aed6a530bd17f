"""A GPU's predictions: time to slowdown, margin after the horizon with one more job, sustainable power."""

from __future__ import annotations

import dataclasses
import enum
import math
from collections.abc import Sequence
from dataclasses import dataclass

from gpuwatch.policy.config import PolicyConfig
from gpuwatch.policy.history import Point, margin_slope
from gpuwatch.policy.thermal_model import RcFit, RcParameters
from gpuwatch.policy.trajectory import Measured

# The model tracks the true margin (dequantise.py undoes the whole-degree rounding), and the
# first reading of margin 0 comes when the true margin reaches 0.
SLOWDOWN_MARGIN_C = 0.0


class Basis(enum.StrEnum):
    """What a forecast rests on."""

    CORRECTED = "corrected"  # the converged model, its time constant adapted to the measured trajectory
    MODEL = "model"  # the fitted RC model, converged
    SLOPE = "slope"  # slope regression over the recent readings, before the fit converges
    NONE = "none"  # too little history to predict anything


@dataclass(frozen=True, slots=True)
class Load:
    """What the GPU draws now, its enforced limit and one more job's power, W."""

    power_w: float | None
    power_limit_w: float | None
    job_power_w: float | None

    def with_one_more_job_w(self) -> float | None:
        """Power if one more job started now, capped at the enforced limit."""
        if self.power_w is None:
            return None
        raised = self.power_w + (self.job_power_w or 0.0)
        return raised if self.power_limit_w is None else min(raised, max(self.power_limit_w, self.power_w))


@dataclass(frozen=True, slots=True)
class Forecast:
    """Predictions for one GPU at one reading; None where they cannot be made."""

    basis: Basis
    time_to_slowdown_s: float | None  # None: not heading there
    predicted_margin_c: float | None  # after the horizon, if one more job starts now
    sustainable_power_w: float | None


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
    the latest crossings, or their rate) whenever they show it, and from the model otherwise.
    """
    model: Forecast | None = None
    if fit is not None and load.power_w is not None and fit.converged(config.slope_min_samples):
        params = fit.parameters
        if params is not None:
            model = _from_model(params, margin_c, fit.lagged_power_w, load, config)
    if model is None:
        slope = margin_slope(window[-config.slope_max_samples :], config.slope_min_samples)
        if slope is not None:
            model = _from_slope(slope, margin_c, load, prior_parameters(fit, margin_c, load, config), config)
    base = model or Forecast(Basis.NONE, None, None, None)
    if measured is None:
        return base
    return _corrected(base, measured, margin_c)


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
    sustainable_w = params.sustainable_power_w(config.elevated_enter_margin_c)
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


def prior_parameters(fit: RcFit | None, margin_c: float, load: Load, config: PolicyConfig) -> RcParameters:
    """The fit's parameters if physical, else the priors placed as if the GPU were settled now."""
    params = fit.parameters if fit is not None else None
    if params is not None:
        return params
    resistance = config.resistance_prior_c_per_w
    return RcParameters(
        tau_s=config.tau_prior_s,
        resistance_c_per_w=resistance,
        zero_power_margin_c=margin_c + resistance * (load.power_w or 0.0),
    )
