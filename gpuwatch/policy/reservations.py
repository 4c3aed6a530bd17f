"""Admitted jobs the samples do not show yet: each counts against its GPU's slots until its power shows.

Every admission takes a slot at once (the exposure's ReservationBook numbers them per GPU and
keeps when each was taken). At each fresh reading the policy matches the admissions taken
before it against the rise in the GPU's power since the last reading: each job's worth of rise
(ΔP_job, rounded) shows one of them, oldest first. An admission not shown within the horizon
is dropped all the same (its job never started, or started while another ended and hid its
step). A GPU that goes FAILED or UNKNOWN drops them all: a reservation never outlives the
reading it was counted against. Pure: the admissions come in as data.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType


@dataclass(frozen=True, slots=True)
class Ledger:
    """One GPU's admissions as the book holds them: the running count, and the recent ones."""

    total: int = 0  # admissions on this GPU since the daemon started
    # (number, monotonic time taken) of the admissions within the horizon, oldest first;
    # numbers run 1..total.
    recent: tuple[tuple[int, float], ...] = ()


NO_LEDGER = Ledger()
# By GPU index.
Ledgers = Mapping[int, Ledger]
NO_LEDGERS: Ledgers = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class Reserved:
    """Where one GPU's admissions stand after a reading."""

    shown_through: int  # admissions numbered up to this are shown (or expired)
    reserved: int  # admissions still counted against the slots
    counted: int  # the running count this decision has counted (the ledger's total)


def matched(
    ledger: Ledger,
    shown_through: int,
    reading_at: float,
    rise_w: float | None,
    job_power_w: float | None,
) -> Reserved:
    """The admissions still reserved after a fresh reading at `reading_at` whose power rose `rise_w`.

    Runs in the time of the pending admissions alone: the book numbers them 1..total without a
    gap, so the recent ones (oldest first) start at number total - len(recent) + 1, and the
    ones already shown are skipped by index, not read.
    """
    first = ledger.total - len(ledger.recent) + 1  # the number of ledger.recent[0]
    through = max(shown_through, first - 1)  # older ones left the book
    pending = ledger.recent[through - first + 1 :]
    if rise_w is not None and job_power_w is not None and job_power_w > 0 and rise_w > 0 and pending:
        shown = int(rise_w / job_power_w + 0.5)
        # Only an admission taken before the reading can be in it; they are in time order.
        before = len(pending) - sum(
            1 for _ in itertools.takewhile(lambda e: e[1] > reading_at, reversed(pending))
        )
        if shown and before:
            through = pending[min(shown, before) - 1][0]
    return Reserved(shown_through=through, reserved=max(0, ledger.total - through), counted=ledger.total)


def dropped(ledger: Ledger) -> Reserved:
    """Every admission dropped: the GPU is out (FAILED) or not known now (UNKNOWN)."""
    return Reserved(shown_through=ledger.total, reserved=0, counted=ledger.total)
