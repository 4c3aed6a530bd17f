"""The one admission function every exposure uses: a node decision, what was taken since, and a class in.

A request of a class is admitted on a GPU with a free slot for it: the slots the decision
offered less the slots taken on that GPU since (`taken`, by GPU index: each admission took its
own at once, whatever its class; a job planned longer than its class's takes the class jobs it
displaces). Unpinned, the GPU with the most free slots for the class is named,
coolest (lowest pressure) first; pinned with `gpu=`, that GPU's free slots decide. Held back,
the answer carries Retry-After: the predicted wait for a slot (the soonest of the node's GPUs,
unpinned), jittered by the caller's `jitter` in [-1, 1] times the decision's jitter ratio
(±20 %), rounded to whole seconds and clamped (default [1, 120] s). Taking the slot is the
caller's: the answer names the GPU and the slots to take (the exposure's LeaseBook takes them).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from gpuwatch.policy import reasons
from gpuwatch.policy.decision import GpuDecision, NodeDecision, PriorityClass, RetryAfterBounds, ThermalState

# Reason code when some GPU has slots for the class but they have all been taken since the
# decision: admissions are paced by the physics between two samples.
SLOTS_TAKEN = "slots_taken"
# Reason code when the node's GPUs have no slot for the class and none is out or unknown.
NO_GPU_ADMITS = "no_gpu_admits"
NOTHING_TAKEN: Mapping[int, int] = MappingProxyType({})


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
    state: ThermalState  # the node's shown state, or the pinned GPU's
    pressure: float  # the node's, or the pinned GPU's
    reason: str  # the primary reason code
    sentence: str
    slots_left: int  # free slots for the class after this answer: the pinned GPU's, else the node's
    cost: int = 1  # the slots the admission takes on its GPU (a job longer than its class's: more)


def parse_priority(name: str) -> PriorityClass:
    """The class named `name` (any case, blanks ignored); UnknownPriorityError lists the valid ones."""
    try:
        return PriorityClass(name.strip().lower())
    except ValueError:
        valid = ", ".join(cls.value for cls in PriorityClass)
        raise UnknownPriorityError(f"unknown priority class {name!r}; valid classes: {valid}") from None


def admit(  # noqa: PLR0913 - keyword-only past the class: what a request may say
    decision: NodeDecision,
    priority: PriorityClass,
    *,
    gpu: int | None = None,
    jitter: float = 0.0,
    taken: Mapping[int, int] = NOTHING_TAKEN,
    long: bool = False,
) -> Admission:
    """Admit or hold back one request of class `priority`, optionally pinned to GPU index `gpu`.

    `long`: the request's job is planned longer than its class's. Slots are counted for jobs of
    the class's duration, so it needs as many free slots as it displaces class jobs on the GPU
    (GpuDecision.long_cost), and is not admitted where not one such job fits. The answer's
    `cost` says how many the caller takes.
    """
    if not -1.0 <= jitter <= 1.0:
        raise ValueError(f"jitter must be in [-1, 1], got {jitter}")
    pinned = None if gpu is None else _find(decision, gpu)
    frees = _frees(decision, priority, taken)
    costs = {g.index: g.long_cost(priority) for g in decision.gpus} if long else {}
    candidates = [
        g
        for g in decision.gpus
        if (pinned is None or g is pinned) and frees[g.index] >= (costs.get(g.index, 1) or math.inf)
    ]
    if candidates:
        chosen = min(candidates, key=lambda g: (-frees[g.index], g.pressure, g.index))
        cost = costs.get(chosen.index) or 1
        # Pinned, the answer speaks for that GPU; otherwise for the node, slots summed over GPUs.
        about: GpuDecision | NodeDecision = decision if pinned is None else chosen
        return _admitted(
            priority,
            chosen,
            state=about.state,
            pressure=about.pressure,
            sentence=about.sentence,
            slots_left=(sum(frees.values()) if pinned is None else frees[chosen.index]) - cost,
            cost=cost,
        )
    if not decision.gpus and priority in decision.admits and pinned is None:
        # No GPU known at all: only a node failing open admits, and it names no GPU.
        return _admitted(
            priority,
            None,
            state=decision.state,
            pressure=decision.pressure,
            sentence=decision.sentence,
            slots_left=0,
        )
    return _held_back(decision, priority, pinned, taken, jitter)


def _held_back(
    decision: NodeDecision,
    priority: PriorityClass,
    pinned: GpuDecision | None,
    taken: Mapping[int, int],
    jitter: float,
) -> Admission:
    """The held-back answer: the pinned GPU's own wait and figures, else the node's."""
    bounds = decision.retry_bounds
    if pinned is not None:
        wait_s = bounds.max_s if decision.drained else pinned.wait_for(priority, taken.get(pinned.index, 0))
        reason = _held_reason(pinned.reasons, offered=pinned.slots.of(priority) > 0)
        state, pressure, sentence = pinned.state, pinned.pressure, pinned.sentence
    else:  # the node's figures; the GPU that gets a slot soonest says why
        codes = decision.reasons
        wait_s = bounds.max_s if decision.drained else decision.retry_after_for(priority)
        waits = [
            (w, g) for g in decision.gpus if (w := g.wait_for(priority, taken.get(g.index, 0))) is not None
        ]
        if waits and not decision.drained:
            wait_s, soonest = min(waits, key=lambda pair: pair[0])
            codes = soonest.reasons
        reason = _held_reason(codes, offered=any(g.slots.of(priority) > 0 for g in decision.gpus))
        state, pressure, sentence = decision.state, decision.pressure, decision.sentence
    return _held(
        priority,
        pinned,
        state=state,
        pressure=pressure,
        reason=reason,
        sentence=sentence,
        wait_s=wait_s,
        jitter=jitter,
        bounds=bounds,
    )


def _frees(decision: NodeDecision, priority: PriorityClass, taken: Mapping[int, int]) -> dict[int, int]:
    """Free slots for `priority` on each GPU, by index (none while the node is drained)."""
    if decision.drained:
        return {g.index: 0 for g in decision.gpus}
    name = priority.value  # read as a plain attribute: this runs for every admission
    return {g.index: max(0, getattr(g.slots, name) - taken.get(g.index, 0)) for g in decision.gpus}


def jittered_retry_after(seconds: float | None, jitter: float, bounds: RetryAfterBounds) -> int:
    """Whole seconds to wait: `seconds` (the maximum if None) scaled by 1 + jitter*ratio, then clamped."""
    base = bounds.max_s if seconds is None else seconds
    spread = base * (1.0 + jitter * bounds.jitter_ratio)
    return int(min(math.floor(bounds.max_s), max(math.ceil(bounds.min_s), round(spread))))


def _held_reason(codes: tuple[str, ...], *, offered: bool) -> str:
    """The primary reason a request is held back."""
    if codes and codes[0] == reasons.DRAINED:
        return reasons.DRAINED
    if offered:
        return SLOTS_TAKEN
    thermal = [code for code in codes if code not in (reasons.WITHIN_LIMITS, reasons.STATE_HOLD)]
    return thermal[0] if thermal else NO_GPU_ADMITS


def _find(decision: NodeDecision, index: int) -> GpuDecision:
    found = next((g for g in decision.gpus if g.index == index), None)
    if found is None:
        known = ", ".join(str(g.index) for g in decision.gpus) or "none"
        raise UnknownGpuError(f"no GPU {index} on this node (GPUs: {known})")
    return found


def _admitted(  # noqa: PLR0913 - the governing decision's figures, each its own field
    priority: PriorityClass,
    gpu: GpuDecision | None,
    *,
    state: ThermalState,
    pressure: float,
    sentence: str,
    slots_left: int,
    cost: int = 1,
) -> Admission:
    where = f" on GPU {gpu.index} (pressure {gpu.pressure:.2f})" if gpu is not None else ""
    return Admission(
        admitted=True,
        priority=priority,
        gpu=gpu,
        retry_after_s=None,
        state=state,
        pressure=pressure,
        reason=reasons.WITHIN_LIMITS if gpu is None else _admit_reason(gpu),
        sentence=f"Admitted {priority} work{where} — {sentence}",
        slots_left=max(0, slots_left),
        cost=cost,
    )


def _admit_reason(gpu: GpuDecision) -> str:
    """The admitting GPU's first reason that is not the hold of a shown state."""
    return next((code for code in gpu.reasons if code != reasons.STATE_HOLD), reasons.WITHIN_LIMITS)


def _held(  # noqa: PLR0913 - the governing decision's figures, each its own field
    priority: PriorityClass,
    gpu: GpuDecision | None,
    *,
    state: ThermalState,
    pressure: float,
    reason: str,
    sentence: str,
    wait_s: float | None,
    jitter: float,
    bounds: RetryAfterBounds,
) -> Admission:
    retry_after_s = jittered_retry_after(wait_s, jitter, bounds)
    return Admission(
        admitted=False,
        priority=priority,
        gpu=gpu,
        retry_after_s=retry_after_s,
        state=state,
        pressure=pressure,
        reason=reason,
        sentence=f"Holding back {priority} work, retry in {retry_after_s} s — {sentence}",
        slots_left=0,
    )
