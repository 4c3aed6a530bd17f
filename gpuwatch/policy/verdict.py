"""The decision stage: one GPU's standing turned into the GpuDecision every exposure reads."""

from __future__ import annotations

import dataclasses

from gpuwatch.policy import reasons, wording
from gpuwatch.policy.config import PolicyConfig
from gpuwatch.policy.decision import (
    NO_SLOTS,
    GpuDecision,
    LeaseCounts,
    PriorityClass,
    RetryAfters,
    Slots,
    ThermalState,
    admitted_classes,
    retry_after_in,
)
from gpuwatch.policy.leases import OnGpu
from gpuwatch.policy.model import CHECK_SHARES, NOT_A_NUMBER, Forecast
from gpuwatch.policy.pressure import headroom_pressure
from gpuwatch.policy.readings import Moment, Readings
from gpuwatch.policy.states import Standing
from gpuwatch.sources.model import GpuSample, reason_words


def decide(standing: Standing) -> GpuDecision:
    """The GPU's decision: its shown state, why, its slots, pressure, predictions and Retry-After."""
    headroom = standing.headroom
    outlook = headroom.outlook
    learned = outlook.learned
    readings = learned.readings
    config = readings.moment.config
    shown = standing.shown.state or standing.state
    codes, clause = _explained(standing)
    if headroom.uncertain and reasons.NO_DEFAULT_SLOT in codes:
        codes = (*codes, reasons.FORECAST_UNCERTAIN)
    problem = learned.problem or (NOT_A_NUMBER if readings.not_finite else None)
    if problem is not None:
        codes = (*codes, reasons.MODEL_INPUT_REJECTED)
        clause = f"{clause} (a reading the forecast cannot use was dropped: {problem.replace('_', ' ')})"
    if headroom.pending:
        plural = "s" if headroom.pending > 1 else ""
        clause = f"{clause}; {headroom.pending} admitted job{plural} not showing yet"
    forecast = outlook.forecast
    judged = readings.judged
    pressure = headroom_pressure(headroom.headroom_c, config) if judged else 1.0
    if standing.state is ThermalState.CRITICAL:
        pressure = 1.0
    retry_afters = _retry_afters(headroom.slots, headroom.waits_s, config)
    return dataclasses.replace(
        _base(readings.sample, shown, config),
        pressure=pressure,
        admits=headroom.slots.classes,
        reasons=codes,
        sentence=_sentence(readings.identity.index, shown, clause, headroom.slots, config),
        predicted_margin_c=forecast.predicted_margin_c if judged else None,
        time_to_slowdown_s=forecast.time_to_slowdown_s if judged else None,
        sustainable_power_w=forecast.sustainable_power_w if judged else None,
        retry_after_by_class=retry_afters,
        retry_after_s=retry_after_in(retry_afters, PriorityClass.DEFAULT),
        state_since=standing.shown.since,
        prediction_basis=str(forecast.basis) if judged else "none",
        rejected_readings=learned.model.rejected,
        slots=headroom.slots,
        slot_waits=tuple((cls, clamp(wait, config)) for cls, wait in headroom.waits_s),
        reserved=learned.leases.open,
        slots_counted=learned.leases.counted,
        job_power_w=learned.job_power_w,
        leases=_by_class(learned.leases),
        pending=headroom.pending,
        long_slots=headroom.long_slots,
        forecast_error_c=_error_allowance(forecast, config) if judged else (),
    )


def _error_allowance(forecast: Forecast, config: PolicyConfig) -> tuple[tuple[float, float], ...]:
    """The forecast's error allowance as (s ahead, °C) pairs."""
    if not forecast.error_c:
        return ()  # nothing forecast to calibrate
    shares = zip(CHECK_SHARES, forecast.error_c, strict=True)
    return tuple((share * config.horizon_s, error_c) for share, error_c in shares)


def _by_class(on_gpu: OnGpu) -> LeaseCounts:
    """Open leases by class, every class named."""
    return tuple((cls, sum(1 for lease in on_gpu.leases if lease.priority is cls)) for cls in PriorityClass)


def _sentence(index: int, state: ThermalState, clause: str, slots: Slots, config: PolicyConfig) -> str:
    """GPU, shown state, why, and what admission does now (the slots, not the shown state)."""
    if state in (ThermalState.FAILED, ThermalState.UNKNOWN):
        return wording.gpu_sentence(index, state, clause, fail_open=config.fail_open)
    return f"GPU {index} is {state}: {clause}; {wording.admitting(slots.classes)}."


def _explained(standing: Standing) -> tuple[tuple[str, ...], str]:
    """Reason codes and the clause for the shown state."""
    readings = standing.headroom.outlook.learned.readings
    moment = readings.moment
    codes = standing.reasons
    if standing.state is ThermalState.FAILED:
        sample = readings.sample
        clause = wording.failed_clause(codes, sample.error, sample.last_xid)
    elif standing.state is ThermalState.UNKNOWN:
        clause = wording.unknown_clause(codes[0], _age_s(readings), moment.stale_after_s)
    else:
        clause = "; ".join(wording.thermal_clause(code, standing.headroom, moment.config) for code in codes)
    if readings.moment.config.fail_open and standing.state is ThermalState.UNKNOWN:
        codes = (*codes, reasons.FAIL_OPEN)
    if standing.held and standing.shown.state is not None:
        remaining_s = max(0.0, moment.config.state_hold_s - (moment.now - standing.shown.lower_since))
        clause = f"{wording.hold_clause(standing.shown.state, remaining_s)} (now {standing.state}: {clause})"
        codes = (reasons.STATE_HOLD, *codes)
    return codes, clause


def _age_s(readings: Readings) -> float | None:
    reading = readings.reading
    return None if reading is None else readings.moment.now - reading.monotonic


def _retry_afters(
    slots: Slots, waits: tuple[tuple[PriorityClass, float | None], ...], config: PolicyConfig
) -> RetryAfters:
    """(class, clamped seconds) for every class without a slot."""
    return tuple((cls, clamp(wait, config)) for cls, wait in waits if slots.of(cls) == 0)


def clamp(seconds: float | None, config: PolicyConfig) -> float:
    """Seconds clamped to the configured Retry-After range; None (never, unknown) is the maximum."""
    if seconds is None:
        return config.retry_after_max_s
    return min(config.retry_after_max_s, max(config.retry_after_min_s, seconds))


def as_unknown(
    decision: GpuDecision, code: str, age_s: float | None, expected_s: float, moment: Moment
) -> GpuDecision:
    """`decision` turned UNKNOWN for `code` (its reading went stale): no slots, predictions gone.

    The reading's figures stay; a verdict is expected again in `expected_s`.
    """
    config = moment.config
    clause = wording.unknown_clause(code, age_s, moment.stale_after_s)
    slots = Slots(config.max_slots, config.max_slots, config.max_slots) if config.fail_open else NO_SLOTS
    retry_afters = tuple((cls, clamp(expected_s, config)) for cls in PriorityClass if slots.of(cls) == 0)
    return dataclasses.replace(
        decision,
        state=ThermalState.UNKNOWN,
        admits=slots.classes,
        pressure=1.0,
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
        slots=slots,
        reserved=0,
        leases=(),
        pending=0,
        long_slots=slots,
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
        utilization_ratio=reading.utilization_ratio if reading else None,
        memory_used_bytes=reading.memory_used_bytes if reading else None,
        memory_total_bytes=identity.memory_total_bytes,
        clock_event_reasons=reason_words(reading.clock_event_reasons or 0) if reading else (),
        sampled_at=reading.monotonic if reading else None,
    )
