"""One GPU through time: learning from each fresh reading, and its decision at each snapshot.

FAILED and UNKNOWN are laid over the thermal ladder (states.py) rather than placed on it:
- FAILED while the GPU is lost, needs a reset, the driver asks for a recovery action, or within
  `failed_xid_hold_s` of a new critical XID; it ends as soon as none of these holds.
- UNKNOWN while there is no fresh reading with a margin (none, older than
  `stale_after_intervals` intervals, or the source could not read the GPU this round: a hung or
  failing call); it ends with the next fresh reading.
Meanwhile the ladder keeps its level and no dwell runs: evidence nobody saw does not count
towards stepping down. When the overlay ends, the GPU is at its ladder level, judged at once on
the fresh reading (escalating at once if the reading says so).
"""

from __future__ import annotations

import dataclasses

from gpuwatch.model import ClockEventReason, GpuHealth, GpuReading, GpuSample, RecoveryAction
from gpuwatch.policy import reasons, verdict
from gpuwatch.policy.decision import GpuDecision, ThermalState
from gpuwatch.policy.forecast import Forecast, Load, forecast
from gpuwatch.policy.history import Point, appended
from gpuwatch.policy.states import Ladder, Observation, step, suspend
from gpuwatch.policy.thermal_model import RcFit
from gpuwatch.policy.track import GpuTrack, Moment

# Reasons that move power for other reasons than jobs: such readings teach nothing about ΔP_job.
_HELD_CLOCKS = (
    ClockEventReason.SW_POWER_CAP
    | ClockEventReason.SW_THERMAL_SLOWDOWN
    | ClockEventReason.HW_THERMAL_SLOWDOWN
    | ClockEventReason.HW_SLOWDOWN
)


def hw_thermal(reading: GpuReading) -> bool:
    """HW thermal slowdown active; a HW slowdown with no stated cause counts too (it may be heat)."""
    if reading.has_reason(ClockEventReason.HW_THERMAL_SLOWDOWN):
        return True
    return reading.has_reason(ClockEventReason.HW_SLOWDOWN) and not reading.has_reason(
        ClockEventReason.HW_POWER_BRAKE_SLOWDOWN
    )


def assess(track: GpuTrack, sample: GpuSample, moment: Moment) -> tuple[GpuTrack, GpuDecision]:
    """The GPU's new track and its decision for a snapshot judged at `moment`."""
    track, failures = _failures(track, sample, moment)
    reading = sample.reading
    # A GPU the source could not read this round (a hung or failing call) is not known now, even
    # though its last reading is younger than the staleness limit: say so at once.
    fresh = (
        reading is not None
        and sample.health is not GpuHealth.UNAVAILABLE
        and moment.now - reading.monotonic <= moment.stale_after_s
    )
    if reading is not None and fresh and reading.margin_c is not None:
        if track.learned_at is None or reading.monotonic > track.learned_at:
            track = _learned(track, reading, reading.margin_c, moment)
    elif track.ladder is not None:
        track = dataclasses.replace(track, ladder=suspend(track.ladder))
    if failures:
        decision = verdict.failed(sample, failures, moment)
    elif reading is None or not fresh or reading.margin_c is None or track.ladder is None:
        decision = verdict.unknown(track, sample, moment)
    else:
        decision = verdict.thermal(track, sample, moment)
    if decision.state is not track.shown:
        track = dataclasses.replace(track, shown=decision.state, shown_since=moment.now)
    track = dataclasses.replace(track, pressure=decision.pressure)
    return track, dataclasses.replace(decision, state_since=track.shown_since)


def _learned(track: GpuTrack, reading: GpuReading, margin_c: float, moment: Moment) -> GpuTrack:
    """The track after one fresh reading: history, fit, ΔP_job, forecast and a ladder step."""
    config = moment.config
    point = Point(reading.monotonic, margin_c, reading.power_w)
    clocks_free = not (reading.clock_event_reasons or 0) & _HELD_CLOCKS
    job_power = track.job_power
    previous = track.window[-1] if track.window else None
    if previous is not None and previous.power_w is not None and point.power_w is not None:
        free = clocks_free and track.clocks_free
        job_power = job_power.observe(
            previous.power_w, point.power_w, reading.power_limit_w, clocks_free=free
        )
    fit = _fitted(track.fit, point, moment)
    window = appended(track.window, point, max(config.slope_max_samples, config.slope_min_samples))
    load = Load(reading.power_w, reading.power_limit_w, job_power.estimate_w(reading.power_limit_w, config))
    prediction = forecast(fit, window, margin_c, load, config)
    obs = _observation(reading, margin_c, prediction)
    ladder = track.ladder or Ladder(ThermalState.OK, moment.now)
    if track.learned_at is not None and reading.monotonic - track.learned_at > moment.stale_after_s:
        ladder = suspend(ladder)  # a gap nobody saw through: the dwell starts again
    return dataclasses.replace(
        track,
        window=window,
        fit=fit,
        job_power=job_power,
        ladder=step(ladder, obs, moment.now, config),
        learned_at=reading.monotonic,
        clocks_free=clocks_free,
        observation=obs,
        prediction=prediction,
        load=load,
    )


def _fitted(fit: RcFit | None, point: Point, moment: Moment) -> RcFit | None:
    """The RC fit after `point`, started at the first reading with power."""
    if fit is not None:
        return fit.update(point)
    if point.power_w is None:
        return None
    return RcFit.start(
        point,
        step_s=moment.interval_s,
        tau_prior_s=moment.config.tau_prior_s,
        resistance_prior_c_per_w=moment.config.resistance_prior_c_per_w,
        memory_s=moment.config.model_memory_s,
    )


def _observation(reading: GpuReading, margin_c: float, prediction: Forecast) -> Observation:
    return Observation(
        margin_c=margin_c,
        memory_margin_c=reading.memory_margin_c,
        predicted_margin_c=prediction.predicted_margin_c,
        time_to_slowdown_s=prediction.time_to_slowdown_s,
        sw_thermal=reading.has_reason(ClockEventReason.SW_THERMAL_SLOWDOWN),
        hw_thermal=hw_thermal(reading),
    )


def _failures(track: GpuTrack, sample: GpuSample, moment: Moment) -> tuple[GpuTrack, tuple[str, ...]]:
    """Reason codes that put the GPU out of service now; the track with its XID counts brought up to date.

    An XID is new when its count is above what this GPU showed at the previous snapshot.
    """
    config = moment.config
    counts = tuple(
        (code, count)
        for code, count in sample.xid_errors.items()
        if code.isdigit() and int(code) in config.critical_xids
    )
    seen = dict(track.critical_xids)
    failed_until = track.xid_failed_until
    if any(count > seen.get(code, 0) for code, count in counts):
        failed_until = moment.now + config.failed_xid_hold_s
    track = dataclasses.replace(track, critical_xids=counts, xid_failed_until=failed_until)
    action = sample.reading.recovery_action if sample.reading is not None else None
    failures = (
        (sample.health is GpuHealth.LOST, reasons.GPU_LOST),
        (sample.health is GpuHealth.RESET_REQUIRED, reasons.RESET_REQUIRED),
        (action is not None and action is not RecoveryAction.NONE, reasons.RECOVERY_ACTION),
        (failed_until is not None and moment.now < failed_until, reasons.CRITICAL_XID),
    )
    return track, tuple(code for failing, code in failures if failing)
