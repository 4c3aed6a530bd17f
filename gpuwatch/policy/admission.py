"""The one admission function every exposure uses: a node decision and a class in, admit or hold back out.

Unpinned, a request is admitted when the node's state admits its class (DESIGN §2; the node
state is k-of-n over its GPUs) and some GPU does: the coolest such GPU (lowest pressure) is
named. Pinned to a GPU, that GPU's own state decides, whatever the node's. Held back, the answer
carries Retry-After: the predicted wait, jittered by the caller's `jitter` in [-1, 1] times the
decision's jitter ratio (±20 %), rounded to whole seconds and clamped (default [1, 120] s).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from gpuwatch.policy.decision import GpuDecision, NodeDecision, PriorityClass, RetryAfterBounds, ThermalState

# Reason code when the node's state admits the class but none of its GPUs does.
NO_GPU_ADMITS = "no_gpu_admits"


class UnknownGpuError(LookupError):
    """A request pinned a GPU index this node does not have (the HTTP layer answers 400)."""


class UnknownPriorityError(ValueError):
    """A priority class name that is not one of critical, default, sheddable."""


@dataclass(frozen=True, slots=True)
class Admission:
    """The answer to one admission request."""

    admitted: bool
    priority: PriorityClass
    gpu: GpuDecision | None  # the GPU to use (admitted), or the pinned one
    retry_after_s: int | None  # whole seconds, jittered and clamped; None when admitted
    state: ThermalState  # the node's, or the pinned GPU's
    pressure: float  # the node's, or the pinned GPU's
    reason: str  # the primary reason code
    sentence: str


def parse_priority(name: str) -> PriorityClass:
    """The class named `name` (any case, blanks ignored); UnknownPriorityError lists the valid ones."""
    try:
        return PriorityClass(name.strip().lower())
    except ValueError:
        valid = ", ".join(cls.value for cls in PriorityClass)
        raise UnknownPriorityError(f"unknown priority class {name!r}; valid classes: {valid}") from None


def admit(
    decision: NodeDecision, priority: PriorityClass, *, gpu: int | None = None, jitter: float = 0.0
) -> Admission:
    """Admit or hold back one request of class `priority`, optionally pinned to GPU index `gpu`."""
    if not -1.0 <= jitter <= 1.0:
        raise ValueError(f"jitter must be in [-1, 1], got {jitter}")
    if gpu is not None:
        pinned = _find(decision, gpu)
        admitted = priority in pinned.admits
        wait_s = None if admitted else pinned.retry_after_for(priority)
        retry_after_s = None if admitted else jittered_retry_after(wait_s, jitter, decision.retry_bounds)
        governing = _Verdict(pinned.state, pinned.pressure, pinned.reasons, pinned.sentence)
        return _answer(governing, priority, pinned, retry_after_s)
    candidates = decision.admitting(priority)
    # With no GPU known at all, only a node failing open admits (and names no GPU).
    admitted = priority in decision.admits and (bool(candidates) or not decision.gpus)
    node = _Verdict(decision.state, decision.pressure, decision.reasons, decision.sentence)
    if priority in decision.admits and not admitted:
        node = dataclasses.replace(node, reasons=(NO_GPU_ADMITS,))
    wait_s = None if admitted else decision.retry_after_for(priority)
    retry_after_s = None if admitted else jittered_retry_after(wait_s, jitter, decision.retry_bounds)
    return _answer(node, priority, candidates[0] if admitted and candidates else None, retry_after_s)


def jittered_retry_after(seconds: float | None, jitter: float, bounds: RetryAfterBounds) -> int:
    """Whole seconds to wait: `seconds` (the maximum if None) scaled by 1 + jitter*ratio, then clamped."""
    base = bounds.max_s if seconds is None else seconds
    spread = base * (1.0 + jitter * bounds.jitter_ratio)
    return int(min(math.floor(bounds.max_s), max(math.ceil(bounds.min_s), round(spread))))


@dataclass(frozen=True, slots=True)
class _Verdict:
    """The decision that governs an answer: the node's, or the pinned GPU's."""

    state: ThermalState
    pressure: float
    reasons: tuple[str, ...]
    sentence: str


def _find(decision: NodeDecision, index: int) -> GpuDecision:
    found = next((g for g in decision.gpus if g.index == index), None)
    if found is None:
        known = ", ".join(str(g.index) for g in decision.gpus) or "none"
        raise UnknownGpuError(f"no GPU {index} on this node (GPUs: {known})")
    return found


def _answer(
    verdict: _Verdict, priority: PriorityClass, gpu: GpuDecision | None, retry_after_s: int | None
) -> Admission:
    reason = verdict.reasons[0] if verdict.reasons else NO_GPU_ADMITS
    if retry_after_s is None:
        where = f" on GPU {gpu.index} (pressure {gpu.pressure:.2f})" if gpu is not None else ""
        sentence = f"Admitted {priority} work{where} — {verdict.sentence}"
    else:
        sentence = f"Holding back {priority} work, retry in {retry_after_s} s — {verdict.sentence}"
    return Admission(
        admitted=retry_after_s is None,
        priority=priority,
        gpu=gpu,
        retry_after_s=retry_after_s,
        state=verdict.state,
        pressure=verdict.pressure,
        reason=reason,
        sentence=sentence,
    )
