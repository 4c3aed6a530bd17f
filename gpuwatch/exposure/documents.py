"""The JSON documents the API serves: node state (/v1/state), admission answers, errors."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gpuwatch.policy.admission import Admission
from gpuwatch.policy.decision import NO_SLOTS, GpuDecision, NodeDecision, PriorityClass, RetryAfters, Slots

# Version of the /v1/state and state.json layout; bumped only when a field changes meaning.
STATE_SCHEMA_VERSION = 1

JsonDict = dict[str, Any]


def _rounded(value: float | None, digits: int) -> float | None:
    """Round for people and diffs: readings are far coarser than float noise."""
    return None if value is None else round(value, digits)


def admitted_classes(classes: frozenset[PriorityClass]) -> list[str]:
    """Classes in their fixed order (critical, default, sheddable), as strings."""
    return [priority.value for priority in PriorityClass if priority in classes]


def _retry_afters(retry_afters: RetryAfters) -> dict[str, float]:
    """Predicted seconds (un-jittered) until each refused class is admitted again, by class."""
    return {priority.value: round(seconds, 1) for priority, seconds in retry_afters}


def gpu_document(
    gpu: GpuDecision, decided_at: float, taken: int = 0, leases: Mapping[PriorityClass, int] | None = None
) -> JsonDict:
    """One GPU's decision, `taken` slots taken since; °C to 2 decimals, W to 1, s to 2, pressure to 4.

    `leases`: its open leases by class as the book holds them now (None: as at the decision).
    """
    slots = gpu.slots.less(taken)
    if leases is None:
        leases = {cls: gpu.leases_of(cls) for cls in PriorityClass}
        reserved = gpu.reserved + taken
    else:
        reserved = sum(leases.values())
    return {
        "index": gpu.index,
        "uuid": gpu.uuid,
        "name": gpu.name,
        "state": gpu.state.value,
        "state_for_s": None if gpu.state_since is None else _rounded(decided_at - gpu.state_since, 2),
        "pressure": round(gpu.pressure, 4),
        "admits": admitted_classes(slots.classes if taken else gpu.admits),
        "slots": slots.document(),
        "reserved": reserved,
        "leases": {cls.value: leases.get(cls, 0) for cls in PriorityClass},
        "reasons": list(gpu.reasons),
        "sentence": gpu.sentence,
        "margin_c": _rounded(gpu.margin_c, 2),
        "memory_margin_c": _rounded(gpu.memory_margin_c, 2),
        "predicted_margin_c": _rounded(gpu.predicted_margin_c, 2),
        "time_to_slowdown_s": _rounded(gpu.time_to_slowdown_s, 2),
        "power_w": _rounded(gpu.power_w, 1),
        "power_limit_w": _rounded(gpu.power_limit_w, 1),
        "utilization_ratio": _rounded(gpu.utilization_ratio, 4),
        "memory_used_bytes": gpu.memory_used_bytes,
        "memory_total_bytes": gpu.memory_total_bytes,
        "sustainable_power_w": _rounded(gpu.sustainable_power_w, 1),
        "clock_event_reasons": list(gpu.clock_event_reasons),
        "retry_after_s_by_class": _retry_afters(gpu.retry_after_by_class),
        "prediction_basis": gpu.prediction_basis,
        "forecast_error_c": {f"{ahead_s:g}": round(error_c, 2) for ahead_s, error_c in gpu.forecast_error_c},
        "rejected_readings": dict(gpu.rejected_readings),
        "sample_age_s": None if gpu.sampled_at is None else _rounded(decided_at - gpu.sampled_at, 3),
    }


def _job_plans(decision: NodeDecision) -> dict[str, JsonDict]:
    """The duration each class's jobs are planned with (s; null: unknown) and its basis, by class."""
    plans = {}
    for cls in PriorityClass:
        seconds, basis = decision.job_plan(cls)
        plans[cls.value] = {"seconds": _rounded(seconds, 3), "basis": basis}
    return plans


def state_document(
    decision: NodeDecision,
    source: str,
    admits: frozenset[PriorityClass],
    taken: Mapping[int, int] | None = None,
    leases: Mapping[int, Mapping[PriorityClass, int]] | None = None,
) -> JsonDict:
    """The node's decision and every GPU's: the /v1/state body and state.json.

    `admits` lists the classes /v1/admit admits now; `taken` the slots taken on each GPU since
    the decision (they come off its slots). `leases`: each GPU's open leases by class now, as the
    book holds them (None: as at the decision). `sample_age_s` is the age when the decision was
    made; `taken_at` (Unix seconds) lets a reader compute the age now.
    """
    taken = taken or {}
    slots: Slots = NO_SLOTS
    for gpu in decision.gpus:
        slots = slots.plus(gpu.slots.less(taken.get(gpu.index, 0)))
    if taken:
        admits = frozenset() if decision.drained else slots.classes
    return {
        "schema_version": STATE_SCHEMA_VERSION,
        "source": source,
        "sequence": decision.sequence,
        "taken_at": round(decision.taken_at, 6),
        "sample_age_s": _rounded(decision.sample_age_s, 3),
        "state": decision.state.value,
        "pressure": round(decision.pressure, 4),
        "admits": admitted_classes(admits),
        "slots": slots.document(),
        "reasons": list(decision.reasons),
        "sentence": decision.sentence,
        "retry_after_s_by_class": _retry_afters(decision.retry_after_by_class),
        "expected_job_s": _job_plans(decision),
        "gpus": [
            gpu_document(
                gpu,
                decision.decided_at,
                taken.get(gpu.index, 0),
                None if leases is None else leases.get(gpu.index, {}),
            )
            for gpu in decision.gpus
        ],
    }


# An admission's lease: its id, and the duration planned with (s; None: unknown) and its basis.
LeaseFields = tuple[str, float | None, str]


def admission_document(
    admission: Admission, sequence: int, slots_left: int, lease: LeaseFields | None = None
) -> JsonDict:
    """An /v1/admit answer: the verdict, the GPU and lease if admitted, slots left, when to retry if not.

    `lease` is None for an answer that takes no lease (held back, or a dry run): `lease` and
    `expected_s` are then null.
    """
    gpu = admission.gpu
    return {
        "admitted": admission.admitted,
        "class": admission.priority.value,
        "gpu": None
        if gpu is None or not admission.admitted
        else {"index": gpu.index, "uuid": gpu.uuid, "name": gpu.name},
        "state": admission.state.value,
        "pressure": round(admission.pressure, 4),
        "reason": admission.reason,
        "sentence": admission.sentence,
        "retry_after_s": admission.retry_after_s,
        "slots": slots_left,
        "sequence": sequence,
        "lease": None if lease is None else lease[0],
        "expected_s": None if lease is None else _rounded(lease[1], 3),
        "expected_basis": None if lease is None else lease[2],
    }


def error_document(code: str, message: str) -> JsonDict:
    """A client or routing error: a stable code for programs and a sentence for people."""
    return {"error": code, "message": message}
