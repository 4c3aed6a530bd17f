"""A GPU's decision from its track: FAILED, UNKNOWN or its ladder level, with reasons and Retry-After."""

from __future__ import annotations

import dataclasses

from gpuwatch.model import GpuHealth, GpuSample, reason_words
from gpuwatch.policy import reasons, retry, wording
from gpuwatch.policy.config import PolicyConfig
from gpuwatch.policy.decision import (
    GpuDecision,
    PriorityClass,
    ThermalState,
    admitted_classes,
    retry_after_in,
)
from gpuwatch.policy.forecast import prior_parameters
from gpuwatch.policy.pressure import gpu_pressure, state_floor
from gpuwatch.policy.track import GpuTrack, Moment


def failed(sample: GpuSample, failures: tuple[str, ...], moment: Moment) -> GpuDecision:
    """Out of service for `failures`: admits nothing, full pressure, Retry-After the maximum."""
    config = moment.config
    clause = wording.failed_clause(failures, sample.error, sample.last_xid)
    return dataclasses.replace(
        _base(sample, ThermalState.FAILED, config),
        reasons=failures,
        sentence=wording.gpu_sentence(
            sample.identity.index, ThermalState.FAILED, clause, fail_open=config.fail_open
        ),
        retry_after_by_class=retry.flat_retry_afters(ThermalState.FAILED, None, config),
        retry_after_s=config.retry_after_max_s,
    )


def unknown(track: GpuTrack, sample: GpuSample, moment: Moment) -> GpuDecision:
    """No fresh reading with a margin: UNKNOWN, keeping the last pressure it had."""
    reading = sample.reading
    code = reasons.NO_READING if reading is None else reasons.STALE_SAMPLE
    if reading is not None and reading.margin_c is None:
        code = reasons.NO_MARGIN
    if reading is not None and sample.health is GpuHealth.UNAVAILABLE:
        code = reasons.SOURCE_UNAVAILABLE
    # A fresh reading is due within an interval; then the ladder decides, as it stood.
    expected_s = moment.interval_s
    if track.ladder is not None:
        cooling = cooling_time(track, moment.config)
        expected_s += (
            retry.seconds_until(track.ladder, ThermalState.ELEVATED, moment.now, moment.config, cooling)
            or 0.0
        )
    base = dataclasses.replace(
        _base(sample, ThermalState.UNKNOWN, moment.config), pressure=track.pressure or 0.0
    )
    age_s = None if reading is None else moment.now - reading.monotonic
    return as_unknown(base, code, age_s, expected_s, moment)


def as_unknown(
    decision: GpuDecision, code: str, age_s: float | None, expected_s: float, moment: Moment
) -> GpuDecision:
    """`decision` turned UNKNOWN for `code`: the reading's figures stay, predictions from it go.

    A verdict is expected again in `expected_s`.
    """
    config = moment.config
    clause = wording.unknown_clause(code, age_s, moment.stale_after_s)
    retry_afters = retry.flat_retry_afters(ThermalState.UNKNOWN, expected_s, config)
    return dataclasses.replace(
        decision,
        state=ThermalState.UNKNOWN,
        admits=admitted_classes(ThermalState.UNKNOWN, fail_open=config.fail_open),
        pressure=max(decision.pressure, state_floor(ThermalState.UNKNOWN, config)),
        reasons=(code, reasons.FAIL_OPEN) if config.fail_open else (code,),
        sentence=wording.gpu_sentence(
            decision.index, ThermalState.UNKNOWN, clause, fail_open=config.fail_open
        ),
        retry_after_by_class=retry_afters,
        retry_after_s=retry_after_in(retry_afters, PriorityClass.DEFAULT),
        predicted_margin_c=None,
        time_to_slowdown_s=None,
        sustainable_power_w=None,
        prediction_basis="none",
    )


def thermal(track: GpuTrack, sample: GpuSample, moment: Moment) -> GpuDecision:
    """The GPU at its ladder level, judged on the reading just learned from."""
    ladder, obs, prediction = track.ladder, track.observation, track.prediction
    if ladder is None or obs is None or prediction is None:
        raise ValueError("a thermal verdict needs a track that has learned from a fresh reading")
    config = moment.config
    codes, clause = wording.explain_ladder(ladder, obs, moment.now, config)
    if track.rejected_now is not None:
        codes = (*codes, reasons.MODEL_INPUT_REJECTED)
        dropped = track.rejected_now.replace("_", " ")
        clause = f"{clause} (a reading the forecast cannot use was dropped: {dropped})"
    pressure = gpu_pressure(obs.margin_c, obs.memory_margin_c, obs.predicted_margin_c, config)
    retry_afters = retry.ladder_retry_afters(ladder, moment.now, config, cooling_time(track, config))
    return dataclasses.replace(
        _base(sample, ladder.level, config),
        pressure=max(pressure, state_floor(ladder.level, config)),
        reasons=codes,
        sentence=wording.gpu_sentence(
            sample.identity.index, ladder.level, clause, fail_open=config.fail_open
        ),
        predicted_margin_c=prediction.predicted_margin_c,
        time_to_slowdown_s=prediction.time_to_slowdown_s,
        sustainable_power_w=prediction.sustainable_power_w,
        retry_after_by_class=retry_afters,
        retry_after_s=retry_after_in(retry_afters, PriorityClass.DEFAULT),
        prediction_basis=str(prediction.basis),
        rejected_readings=track.model.rejected,
    )


def cooling_time(track: GpuTrack, config: PolicyConfig) -> retry.CoolingTime:
    """Seconds to cool to a margin while new work is held back: at one job's power (ΔP_job) below today's."""
    obs, load = track.observation, track.load
    if obs is None or load is None or load.power_w is None:
        return lambda _target_c: None
    params = prior_parameters(track.model.fit, obs.margin_c, load, config)
    reduced_w = max(0.0, load.power_w - (load.job_power_w or 0.0))
    margin_c = obs.margin_c
    return lambda target_c: (
        0.0 if margin_c >= target_c else params.time_to_margin_s(margin_c, target_c, reduced_w)
    )


def _base(sample: GpuSample, state: ThermalState, config: PolicyConfig) -> GpuDecision:
    """A decision with identity, state and the reading's own figures; the rest is filled by the caller."""
    reading = sample.reading
    identity = sample.identity
    return GpuDecision(
        index=identity.index,
        uuid=identity.uuid,
        name=identity.name,
        state=state,
        pressure=1.0,
        admits=admitted_classes(state, fail_open=config.fail_open),
        reasons=(),
        sentence="",
        margin_c=reading.margin_c if reading else None,
        memory_margin_c=reading.memory_margin_c if reading else None,
        power_w=reading.power_w if reading else None,
        power_limit_w=reading.power_limit_w if reading else None,
        clock_event_reasons=reason_words(reading.clock_event_reasons or 0) if reading else (),
        sampled_at=reading.monotonic if reading else None,
    )
