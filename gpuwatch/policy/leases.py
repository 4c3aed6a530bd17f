"""Leases as the policy reads them: each GPU's admitted jobs, when each should end, and which the power shows.

Every admission is a lease on one GPU (the exposure's LeaseBook holds them): it has a number
(1, 2, ... per GPU, in the order taken), a class, the duration it was planned with (None:
unknown) and a deadline. The book hands the policy each GPU's open leases and its recent
releases once per sample, as data; nothing here keeps time.

At each fresh reading the policy matches the leases against the step in the GPU's power since
the reading before (`matched`):
- a release of a lease the power showed, and whose fall it has not shown yet, explains one
  job's worth of fall;
- what is left of the step, in whole jobs (ΔP_job, rounded), is jobs starting (leases taken
  before the reading, oldest first, become *shown*) or, when it is a fall, jobs that ended
  without a release (a gateway that never releases, or releases late): shown leases whose
  expected end is soonest become *seen ended*, and no further fall is planned for them.
A release the power does not show falling (it comes a little before or after the fall, or the
job outlives its release) shows a start only where a lease was taken in the same interval: a
start hidden by an end, the common case of a busy GPU.
A shown lease's job is in the present power and is planned to stop at its end; a lease not
shown yet is planned to add its job's power from now until its end. Matching errs on the safe
side both ways: a fall is put down to an ended job readily (its planned fall is forgotten), and
a start the readings hide leaves its lease unshown, so its power is counted twice until its end
rather than not at all.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import NamedTuple

from gpuwatch.policy.decision import PriorityClass


class Lease(NamedTuple):
    """One open lease, as the book holds it (a tuple: the book makes one for every admission)."""

    number: int  # 1, 2, ... per GPU, in the order taken
    taken_at: float  # monotonic s
    priority: PriorityClass
    expected_s: float | None  # the duration planned with; None: unknown
    deadline_at: float  # monotonic s: it ends then if not released
    requested: bool = False  # the admit request said `expected_s` (else it is the class's plan)


@dataclass(frozen=True, slots=True)
class Ledger:
    """One GPU's leases as the book hands them to the policy."""

    taken: int = 0  # slots taken on this GPU since the daemon started (each admission takes its own)
    open: tuple[Lease, ...] = ()  # by number
    released: tuple[tuple[int, float], ...] = ()  # (number, monotonic s released) of recent releases


NO_LEDGER = Ledger()
EMPTY_DURATIONS: Mapping[PriorityClass, tuple[float, ...]] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class Leases:
    """The node's leases: each GPU's (by index), and how long recently released ones were held, by class."""

    gpus: Mapping[int, Ledger] = field(default_factory=lambda: MappingProxyType({}))
    # Oldest first, s.
    held_s: Mapping[PriorityClass, tuple[float, ...]] = field(default_factory=lambda: EMPTY_DURATIONS)


NO_LEASES = Leases()


@dataclass(frozen=True, slots=True)
class LeaseMemory:
    """What the policy remembers of one GPU's leases between readings."""

    shown_through: int = 0  # leases numbered up to this were shown by the power (or are gone)
    seen_ended: frozenset[int] = frozenset()  # open shown leases whose fall the power showed


@dataclass(frozen=True, slots=True)
class OnGpu:
    """Where one GPU's leases stand after a reading."""

    memory: LeaseMemory
    leases: tuple[Lease, ...]  # every open lease, by number
    running: tuple[Lease, ...]  # shown, and not seen to end: their jobs are in the present power
    pending: tuple[Lease, ...]  # not shown yet: their jobs are still to add their power
    counted: int  # the ledger's `taken` this decision counted
    released_shown: int  # shown leases released since the reading before: their fall is in this step
    started_between: bool  # a lease was taken since the reading before

    @property
    def open(self) -> int:
        """Open leases on the GPU."""
        return len(self.leases)


def matched(  # noqa: PLR0913 - one reading's step and the leases it is matched against
    ledger: Ledger,
    memory: LeaseMemory,
    *,
    reading_at: float,
    previous_at: float | None,
    step_w: float | None,
    job_power_w: float | None,
) -> OnGpu:
    """The GPU's leases after a reading at `reading_at`, its power `step_w` off the one at `previous_at`."""
    numbers = {lease.number for lease in ledger.open}
    # A reading is taken before whatever happens at its very instant: the steps between two
    # readings are those of [previous_at, reading_at).
    since = -math.inf if previous_at is None else previous_at
    released_shown = sum(
        1
        for number, at in ledger.released
        if since <= at < reading_at and number <= memory.shown_through and number not in memory.seen_ended
    )
    taken_between = sum(1 for lease in ledger.open if since <= lease.taken_at < reading_at)
    shown_through = memory.shown_through
    ended = memory.seen_ended & numbers
    if step_w is not None and job_power_w is not None and job_power_w > 0:
        rise = math.floor(step_w / job_power_w + 0.5)
        jobs = rise + released_shown
        if rise <= 0:
            jobs = min(jobs, taken_between)  # no rise: a start only where one hides behind an end
        if jobs > 0:
            shown_through = _shown_through(ledger.open, shown_through, reading_at, jobs)
        elif jobs < 0:
            ended = _seen_ended(ledger.open, shown_through, ended, -jobs)
    running = tuple(
        lease for lease in ledger.open if lease.number <= shown_through and lease.number not in ended
    )
    pending = tuple(lease for lease in ledger.open if lease.number > shown_through)
    return OnGpu(
        LeaseMemory(shown_through, frozenset(ended)),
        leases=ledger.open,
        running=running,
        pending=pending,
        counted=ledger.taken,
        released_shown=released_shown,
        started_between=taken_between > 0,
    )


def _shown_through(open_: tuple[Lease, ...], shown_through: int, reading_at: float, jobs: int) -> int:
    """Up to which number leases are shown once `jobs` more show: taken before the reading, oldest first."""
    waiting = [
        lease.number for lease in open_ if lease.number > shown_through and lease.taken_at < reading_at
    ]
    if not waiting:
        return shown_through
    return waiting[min(jobs, len(waiting)) - 1]


def _seen_ended(
    open_: tuple[Lease, ...], shown_through: int, ended: frozenset[int], jobs: int
) -> frozenset[int]:
    """`ended` and the `jobs` running leases most likely to have ended: soonest expected end first."""

    def expected_end(lease: Lease) -> float:
        return math.inf if lease.expected_s is None else lease.taken_at + lease.expected_s

    running = sorted(
        (lease for lease in open_ if lease.number <= shown_through and lease.number not in ended),
        key=lambda lease: (expected_end(lease), lease.number),
    )
    return ended | {lease.number for lease in running[:jobs]}


def dropped(ledger: Ledger, memory: LeaseMemory) -> OnGpu:
    """Nothing planned from the GPU's leases: it is out (FAILED) or unknown (UNKNOWN); the book ends them."""
    last = max((lease.number for lease in ledger.open), default=memory.shown_through)
    return OnGpu(
        LeaseMemory(max(last, memory.shown_through)),
        leases=(),
        running=(),
        pending=(),
        counted=ledger.taken,
        released_shown=0,
        started_between=False,
    )
