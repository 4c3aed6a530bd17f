"""Counts of admit answers per (decision, class), kept in memory for the metrics exporter."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from gpuwatch.policy.decision import PriorityClass

ADMIT = "admit"
DENY = "deny"
_CLASSES = tuple(PriorityClass)


def tally_slot(priority: PriorityClass, *, admitted: bool) -> int:
    """The counter index of one (decision, class) pair."""
    return 2 * _CLASSES.index(priority) + int(admitted)


class AdmissionTally:
    """One counter per (decision, class).

    `counts` is a plain list so the request path adds to it with one index; the exporter reads
    it through `snapshot()` from any thread.
    """

    __slots__ = ("counts",)

    def __init__(self) -> None:
        self.counts = [0] * (2 * len(_CLASSES))

    def snapshot(self) -> Mapping[tuple[str, str], int]:
        """`{(decision, class): count}` for every pair, zeros included: `("deny", "sheddable")`."""
        counts = list(self.counts)
        return MappingProxyType(
            {
                (ADMIT if admitted else DENY, priority.value): counts[tally_slot(priority, admitted=admitted)]
                for priority in _CLASSES
                for admitted in (True, False)
            }
        )
