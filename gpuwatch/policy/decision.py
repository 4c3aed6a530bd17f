"""What the policy decides: thermal states, priority classes, per-GPU and per-node decisions."""

from __future__ import annotations

import enum
from dataclasses import dataclass


class ThermalState(enum.StrEnum):
    """A GPU's (or the node's) thermal state, DESIGN §2; `severity` orders them for worst-of."""

    OK = "ok"
    ELEVATED = "elevated"
    HOT = "hot"
    CRITICAL = "critical"
    UNKNOWN = "unknown"
    FAILED = "failed"

    @property
    def severity(self) -> int:
        """0 (OK) to 5 (FAILED); UNKNOWN ranks between CRITICAL and FAILED for worst-of."""
        return _SEVERITY[self]


_SEVERITY = {
    ThermalState.OK: 0,
    ThermalState.ELEVATED: 1,
    ThermalState.HOT: 2,
    ThermalState.CRITICAL: 3,
    ThermalState.UNKNOWN: 4,
    ThermalState.FAILED: 5,
}


class PriorityClass(enum.StrEnum):
    """Who is asking: `critical` (paid, interactive), `default`, `sheddable` (free tier, batch)."""

    CRITICAL = "critical"
    DEFAULT = "default"
    SHEDDABLE = "sheddable"


ALL_CLASSES = frozenset(PriorityClass)
_ADMITS = {
    ThermalState.OK: ALL_CLASSES,
    ThermalState.ELEVATED: frozenset({PriorityClass.CRITICAL, PriorityClass.DEFAULT}),
    ThermalState.HOT: frozenset({PriorityClass.CRITICAL}),
    ThermalState.CRITICAL: frozenset[PriorityClass](),
    ThermalState.UNKNOWN: frozenset({PriorityClass.CRITICAL}),
    ThermalState.FAILED: frozenset[PriorityClass](),
}


def admitted_classes(state: ThermalState, *, fail_open: bool = False) -> frozenset[PriorityClass]:
    """Classes a GPU (or node) in `state` takes new work for; UNKNOWN is HOT unless `fail_open`."""
    if state is ThermalState.UNKNOWN and fail_open:
        return ALL_CLASSES
    return _ADMITS[state]


RetryAfters = tuple[tuple[PriorityClass, float], ...]


def retry_after_in(retry_afters: RetryAfters, priority: PriorityClass) -> float | None:
    """The entry for `priority` in a (class, seconds) tuple, or None."""
    return next((seconds for cls, seconds in retry_afters if cls is priority), None)


@dataclass(frozen=True, slots=True)
class RetryAfterBounds:
    """How Retry-After is bounded and spread: clamped to [min_s, max_s], jittered by ±jitter_ratio."""

    min_s: float = 1.0
    max_s: float = 120.0
    jitter_ratio: float = 0.2


@dataclass(frozen=True, slots=True)
class GpuDecision:
    """The policy's verdict on one GPU at one sample, with the figures it rests on.

    `reasons` are machine-readable codes (e.g. "margin_below_hot", "sw_thermal_slowdown",
    "stale_sample"); `sentence` says the same for people. `admits` is the set of classes this
    GPU takes new work for right now. Predictions are None until the GPU has enough history.
    """

    index: int
    uuid: str
    name: str
    state: ThermalState
    pressure: float  # 0 = cool, 1 = at the limit
    admits: frozenset[PriorityClass]
    reasons: tuple[str, ...]
    sentence: str
    margin_c: float | None = None
    memory_margin_c: float | None = None
    predicted_margin_c: float | None = None  # after the horizon, if one more job starts now
    time_to_slowdown_s: float | None = None  # None: not heading there
    power_w: float | None = None
    power_limit_w: float | None = None
    sustainable_power_w: float | None = None  # highest steady power that stays above the margin
    clock_event_reasons: tuple[str, ...] = ()  # active clock-event reasons, in words
    retry_after_s: float | None = None  # predicted seconds until it admits again; None if it does
    state_since: float | None = None  # monotonic time the current state was entered
    sampled_at: float | None = None  # monotonic time of the reading it rests on; None: none
    # Predicted seconds until it admits each class it now refuses, un-jittered and clamped.
    retry_after_by_class: RetryAfters = ()
    # "corrected" (the model, its time to slowdown from the measured trajectory), "model" (the
    # fitted model), "slope" (recent trend) or "none"
    prediction_basis: str = "none"
    rejected_readings: tuple[tuple[str, int], ...] = ()  # readings the model dropped, by reason

    def retry_after_for(self, priority: PriorityClass) -> float | None:
        """Predicted seconds until this GPU admits `priority`; None when it does (or no estimate)."""
        return retry_after_in(self.retry_after_by_class, priority)


@dataclass(frozen=True, slots=True)
class NodeDecision:
    """The node's verdict: worst-of (or k-of-n) over its GPUs, plus every GPU's own."""

    state: ThermalState
    pressure: float
    reasons: tuple[str, ...]
    sentence: str
    gpus: tuple[GpuDecision, ...]
    sequence: int  # the snapshot it was made from
    taken_at: float  # wall clock of that snapshot, Unix seconds
    decided_at: float  # monotonic time of the decision
    sample_age_s: float | None  # None: never sampled successfully
    fail_open: bool = False  # the policy's setting: an UNKNOWN node admits everything
    # Predicted seconds until the node admits each class it now refuses, un-jittered and clamped.
    retry_after_by_class: RetryAfters = ()
    retry_bounds: RetryAfterBounds = RetryAfterBounds()
    drained: bool = False  # an operator holds the whole node back (POST /v1/drain)

    @property
    def admits(self) -> frozenset[PriorityClass]:
        """Classes the node as a whole takes new work for (its state's, DESIGN §2; none if drained)."""
        if self.drained:
            return frozenset()
        return admitted_classes(self.state, fail_open=self.fail_open)

    def retry_after_for(self, priority: PriorityClass) -> float | None:
        """Predicted seconds until the node admits `priority`; None when it does (or no estimate)."""
        return retry_after_in(self.retry_after_by_class, priority)

    def sample_age_at(self, now_monotonic: float) -> float | None:
        """Age of the sample at `now_monotonic`, s; None if there never was one."""
        if self.sample_age_s is None:
            return None
        return self.sample_age_s + max(0.0, now_monotonic - self.decided_at)

    def admitting(self, priority: PriorityClass) -> tuple[GpuDecision, ...]:
        """GPUs that take new work of `priority`, coolest (lowest pressure) first."""
        return tuple(sorted((g for g in self.gpus if priority in g.admits), key=lambda g: g.pressure))
