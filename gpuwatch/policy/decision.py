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
    ThermalState.UNKNOWN: frozenset[PriorityClass](),
    ThermalState.FAILED: frozenset[PriorityClass](),
}


def admitted_classes(state: ThermalState, *, fail_open: bool = False) -> frozenset[PriorityClass]:
    """Classes a GPU (or node) in `state` may admit, per DESIGN §2's table; UNKNOWN none unless `fail_open`.

    What it admits now is what it has slots for (`Slots.classes`): this is the most a state allows.
    """
    if state is ThermalState.UNKNOWN and fail_open:
        return ALL_CLASSES
    return _ADMITS[state]


@dataclass(frozen=True, slots=True)
class Slots:
    """How many more jobs of each class may start now (DESIGN §2); critical >= default >= sheddable."""

    critical: int = 0
    default: int = 0
    sheddable: int = 0

    def of(self, priority: PriorityClass) -> int:
        """The slots for `priority` (the field of its name)."""
        slots: int = getattr(self, priority.value)
        return slots

    def less(self, taken: int) -> Slots:
        """What is left after `taken` more jobs started (any class: a job is a job)."""
        if taken <= 0:
            return self
        return Slots(
            max(0, self.critical - taken), max(0, self.default - taken), max(0, self.sheddable - taken)
        )

    def plus(self, other: Slots) -> Slots:
        """Both together (a node's slots are its GPUs')."""
        return Slots(
            self.critical + other.critical, self.default + other.default, self.sheddable + other.sheddable
        )

    @property
    def classes(self) -> frozenset[PriorityClass]:
        """The classes with a slot."""
        return frozenset(cls for cls in PriorityClass if self.of(cls) > 0)

    def document(self) -> dict[str, int]:
        """As JSON-ready data, by class name."""
        return {cls.value: self.of(cls) for cls in PriorityClass}


NO_SLOTS = Slots()


RetryAfters = tuple[tuple[PriorityClass, float], ...]
LeaseCounts = tuple[tuple[PriorityClass, int], ...]
# Per class: the job duration planned with (s; None: unknown) and its basis ("learned",
# "configured", "unknown"; durations.py).
JobPlans = tuple[tuple[PriorityClass, float | None, str], ...]


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

    `state` is the shown state (it steps down after the hold); `slots` are what admission reads:
    how many more jobs of each class may start now, the `reserved` jobs already counted, and
    `admits` the classes with a slot. `reasons` are machine-readable codes (e.g.
    "no_default_slot", "sw_thermal_slowdown", "stale_sample"); `sentence` says the same for
    people. Predictions are None until the GPU has enough history.
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
    utilization_ratio: float | None = None  # of the last sample period, 0-1
    memory_used_bytes: int | None = None
    memory_total_bytes: int | None = None
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
    slots: Slots = NO_SLOTS  # jobs that may start now, per class, with `reserved` counted
    # Per class, seconds until it has a slot beyond those offered now (clamped): what a request
    # is told to wait when every slot has been taken since the decision.
    slot_waits: RetryAfters = ()
    reserved: int = 0  # open leases on this GPU (their jobs running, or still to show in the power)
    # The running count of slots taken on this GPU that the decision has counted: slots taken
    # past it (since) come off `slots` at once (the exposure's LeaseBook keeps the count).
    slots_counted: int = 0
    job_power_w: float | None = None  # ΔP_job: one more job's power, W
    leases: LeaseCounts = ()  # open leases by class
    pending: int = 0  # of the open leases, those whose jobs the power does not show yet
    # Jobs that may start now if each ran for the whole horizon: what a job planned longer than
    # its class's is measured against (its slots are counted for the class's duration).
    long_slots: Slots = NO_SLOTS
    # The allowance the slots keep for the forecast's own errors, (s ahead, °C), at the
    # calibration's check horizons: the recent error quantile, or the prior on a new board.
    forecast_error_c: tuple[tuple[float, float], ...] = ()

    def leases_of(self, priority: PriorityClass) -> int:
        """Open leases of `priority` on this GPU."""
        return next((count for cls, count in self.leases if cls is priority), 0)

    def retry_after_for(self, priority: PriorityClass) -> float | None:
        """Predicted seconds until this GPU admits `priority`; None when it does (or no estimate)."""
        return retry_after_in(self.retry_after_by_class, priority)

    def free(self, priority: PriorityClass, taken: int = 0) -> int:
        """Slots left for `priority` after `taken` more admissions since this decision."""
        return max(0, self.slots.of(priority) - max(0, taken))

    def long_cost(self, priority: PriorityClass) -> int | None:
        """The slots a job longer than `priority`'s plan takes here: as many class jobs as it displaces.

        If `long_slots` such jobs fit where `slots` class jobs do, each stands for
        slots / long_slots of them (rounded up). None: not one fits.
        """
        long = self.long_slots.of(priority)
        if long <= 0:
            return None
        return max(1, -(-self.slots.of(priority) // long))

    def wait_for(self, priority: PriorityClass, taken: int = 0) -> float | None:
        """Seconds until `priority` has a slot here, `taken` admissions since the decision; 0: it has one."""
        if self.free(priority, taken) > 0:
            return 0.0
        if self.slots.of(priority) > 0:
            return retry_after_in(self.slot_waits, priority)
        return self.retry_after_for(priority)


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
    job_plans: JobPlans = ()

    def job_plan(self, priority: PriorityClass) -> tuple[float | None, str]:
        """The duration `priority`'s jobs are planned with (s; None: unknown), and its basis."""
        return next(((s, basis) for cls, s, basis in self.job_plans if cls is priority), (None, "unknown"))

    @property
    def slots(self) -> Slots:
        """The node's slots: the sum over its GPUs."""
        total = NO_SLOTS
        for gpu in self.gpus:
            total = total.plus(gpu.slots)
        return total

    @property
    def admits(self) -> frozenset[PriorityClass]:
        """Classes the node takes new work for: those some GPU has a slot for (none if drained).

        A node with no GPU known admits only when failing open (and names no GPU).
        """
        if self.drained:
            return frozenset()
        if not self.gpus:
            return admitted_classes(self.state, fail_open=self.fail_open)
        return frozenset(cls for gpu in self.gpus for cls in gpu.admits)

    def retry_after_for(self, priority: PriorityClass) -> float | None:
        """Predicted seconds until the node admits `priority`; None when it does (or no estimate)."""
        return retry_after_in(self.retry_after_by_class, priority)

    def sample_age_at(self, now_monotonic: float) -> float | None:
        """Age of the sample at `now_monotonic`, s; None if there never was one."""
        if self.sample_age_s is None:
            return None
        return self.sample_age_s + max(0.0, now_monotonic - self.decided_at)

    def admitting(self, priority: PriorityClass) -> tuple[GpuDecision, ...]:
        """GPUs that take new work of `priority`, most slots for it first, then coolest."""
        return tuple(
            sorted(
                (g for g in self.gpus if priority in g.admits),
                key=lambda g: (-g.slots.of(priority), g.pressure, g.index),
            )
        )
