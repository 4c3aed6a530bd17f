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
import math

from gpuwatch.model import ClockEventReason, GpuHealth, GpuReading, GpuSample, RecoveryAction
from gpuwatch.policy import reasons, screen, verdict
from gpuwatch.policy.decision import GpuDecision, ThermalState
from gpuwatch.policy.forecast import Basis, Forecast, forecast
from gpuwatch.policy.states import Ladder, Observation, step, suspend
from gpuwatch.policy.track import GpuTrack, Moment


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
    sample, not_finite = _finite(sample)
    if not_finite:
        model = track.model
        model = dataclasses.replace(model, rejected=screen.counted(model.rejected, screen.NOT_A_NUMBER))
        track = dataclasses.replace(track, model=model, rejected_now=screen.NOT_A_NUMBER)
    reading = sample.reading
    # A GPU the source could not read this round (a hung or failing call) is not known now, even
    # though its last reading is younger than the staleness limit: say so at once.
    fresh = (
        reading is not None
        and sample.health is not GpuHealth.UNAVAILABLE
        and moment.now - reading.monotonic <= moment.stale_after_s
    )
    if reading is not None and fresh and reading.margin_c is not None:
        if track.model.learned_at is None or reading.monotonic != track.model.learned_at:
            track = _observed(track, reading, reading.margin_c, moment)
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
    return track, dataclasses.replace(
        decision, state_since=track.shown_since, rejected_readings=track.model.rejected
    )


def _finite(sample: GpuSample) -> tuple[GpuSample, bool]:
    """The sample with a NaN or infinite margin or power left out, as a source drops what it cannot read."""
    reading = sample.reading
    if reading is None:
        return sample, False
    bad = {
        name: None
        for name in ("margin_c", "power_w", "power_limit_w")
        if (value := getattr(reading, name)) is not None and not math.isfinite(value)
    }
    if not bad:
        return sample, False
    return dataclasses.replace(sample, reading=dataclasses.replace(reading, **bad)), True  # type: ignore[arg-type]


def _observed(track: GpuTrack, reading: GpuReading, margin_c: float, moment: Moment) -> GpuTrack:
    """The track after one fresh reading: the model stage, the forecast, and a ladder step.

    A reading the model drops is still judged on its own margin (a real jump towards the limit
    must still hold work back), with the forecast the readings before it gave; one from a clock
    that went backwards is not judged at all.
    """
    config = moment.config
    learned_at = track.model.learned_at
    gap = learned_at is not None and reading.monotonic - learned_at > moment.stale_after_s
    model, problem = track.model.observe(reading, margin_c, moment.interval_s, config)
    track = dataclasses.replace(track, model=model, rejected_now=problem)
    if problem is None:
        load = model.load(reading, config)
        estimate_c = model.window[-1].margin_c
        measured = model.measured(reading.monotonic, margin_c)
        prediction = forecast(model.fit, model.window, estimate_c, load, config, measured=measured)
        track = dataclasses.replace(track, prediction=prediction, load=load)
    elif problem == screen.CLOCK_BACKWARDS or track.ladder is None:
        return track
    prediction = track.prediction or Forecast(Basis.NONE, None, None, None)
    obs = _observation(reading, margin_c, prediction)
    ladder = track.ladder or Ladder(ThermalState.OK, moment.now)
    if gap and problem is None:
        ladder = suspend(ladder)  # a gap nobody saw through: the dwell starts again
    return dataclasses.replace(track, observation=obs, ladder=step(ladder, obs, moment.now, config))


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
