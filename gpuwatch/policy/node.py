"""The node's verdict from its GPUs' decisions: k-of-n state, pressure, reasons and Retry-After.

The node state is the worst shown state held by at least `node_k` of its in-service GPUs (with
k = 1, worst-of). FAILED GPUs are out of service: they are named in the reasons (`gpu_failed`)
but do not decide the node's state, or one dead GPU would stop a node whose others are fine;
only when every GPU has failed is the node FAILED. A node with no GPUs at all is UNKNOWN. The
node admits a class while some GPU has a slot for it (an unpinned request takes any GPU), so its
Retry-After for a class is the soonest any of its GPUs gets one.
"""

from __future__ import annotations

from gpuwatch.policy import reasons
from gpuwatch.policy.config import PolicyConfig
from gpuwatch.policy.decision import (
    GpuDecision,
    JobPlans,
    NodeDecision,
    PriorityClass,
    RetryAfterBounds,
    RetryAfters,
    ThermalState,
    admitted_classes,
)
from gpuwatch.policy.pressure import node_pressure
from gpuwatch.policy.verdict import clamp
from gpuwatch.policy.wording import effect


def aggregate(  # noqa: PLR0913 - the snapshot's stamps travel with the decision
    gpus: tuple[GpuDecision, ...],
    config: PolicyConfig,
    *,
    sequence: int,
    taken_at: float,
    decided_at: float,
    sample_age_s: float | None,
    job_plans: JobPlans = (),
) -> NodeDecision:
    """The node decision over `gpus`, made at monotonic time `decided_at`."""
    in_service = [g for g in gpus if g.state is not ThermalState.FAILED]
    state, ranked = _node_state(in_service, config)
    if not gpus:
        state = ThermalState.UNKNOWN
    node_reasons = _reasons(gpus, state, ranked, fail_open=config.fail_open)
    pressure = node_pressure([g.pressure for g in gpus])
    if not gpus and config.fail_open:
        pressure = 0.0
    return NodeDecision(
        state=state,
        pressure=pressure,
        reasons=node_reasons,
        sentence=_sentence(gpus, state, ranked, config),
        gpus=gpus,
        sequence=sequence,
        taken_at=taken_at,
        decided_at=decided_at,
        sample_age_s=sample_age_s,
        fail_open=config.fail_open,
        retry_after_by_class=_retry_afters(state, gpus, config),
        retry_bounds=RetryAfterBounds(
            config.retry_after_min_s, config.retry_after_max_s, config.retry_after_jitter_ratio
        ),
        job_plans=job_plans,
    )


def _node_state(
    in_service: list[GpuDecision], config: PolicyConfig
) -> tuple[ThermalState, list[GpuDecision]]:
    """The k-th worst in-service state, and the in-service GPUs, worst first."""
    if not in_service:
        return ThermalState.FAILED, []
    ranked = sorted(in_service, key=lambda g: (-g.state.severity, -g.pressure, g.index))
    return ranked[min(config.node_k, len(ranked)) - 1].state, ranked


def _reasons(
    gpus: tuple[GpuDecision, ...], state: ThermalState, ranked: list[GpuDecision], *, fail_open: bool
) -> tuple[str, ...]:
    """Reason codes of the GPUs in the node's state, each once, and `gpu_failed` if any GPU is out."""
    if not gpus:
        return (reasons.NO_GPUS, reasons.FAIL_OPEN) if fail_open else (reasons.NO_GPUS,)
    codes = [code for g in ranked if g.state is state for code in g.reasons]
    if any(g.state is ThermalState.FAILED for g in gpus):
        codes.append(reasons.GPU_FAILED)
    return tuple(dict.fromkeys(codes))


def _sentence(
    gpus: tuple[GpuDecision, ...], state: ThermalState, ranked: list[GpuDecision], config: PolicyConfig
) -> str:
    """One sentence: the node's state, the GPU that explains it, and any GPU out of service."""
    failed = [str(g.index) for g in gpus if g.state is ThermalState.FAILED]
    if not gpus:
        return f"No GPU is known on this node; {effect(state, fail_open=config.fail_open)}."
    if not ranked:
        return f"Every GPU is out of service ({', '.join(failed)}); admitting nothing."
    worst = ranked[0]
    if worst.state is ThermalState.OK:
        text = f"All {len(ranked)} GPUs in service are within limits; admitting every class."
    elif worst.state is state:
        at_least = sum(1 for g in ranked if g.state.severity >= state.severity)
        quorum = f" ({at_least} GPUs {state} or worse, {config.node_k} needed)" if config.node_k > 1 else ""
        text = f"Node is {state}{quorum}: {worst.sentence}"
    else:
        text = f"Node is {state}: fewer than {config.node_k} GPUs are worse; the worst: {worst.sentence}"
    if failed:
        text = f"{text[:-1]}; out of service: GPU {', '.join(failed)}."
    return text


def _retry_afters(state: ThermalState, gpus: tuple[GpuDecision, ...], config: PolicyConfig) -> RetryAfters:
    """For each class no GPU has a slot for: the soonest wait of an in-service GPU (the maximum if none)."""
    in_service = [g for g in gpus if g.state is not ThermalState.FAILED]
    admits = (
        frozenset(cls for g in gpus for cls in g.admits)
        if gpus
        else admitted_classes(state, fail_open=config.fail_open)
    )
    result = []
    for cls in PriorityClass:
        if cls in admits:
            continue
        waits = [_wait(g, cls, config) for g in in_service]
        result.append((cls, clamp(min(waits) if waits else None, config)))
    return tuple(result)


def _wait(gpu: GpuDecision, cls: PriorityClass, config: PolicyConfig) -> float:
    """Seconds until `gpu` has a slot for `cls`: its estimate, else the maximum."""
    seconds = gpu.retry_after_for(cls)
    return config.retry_after_max_s if seconds is None else seconds
