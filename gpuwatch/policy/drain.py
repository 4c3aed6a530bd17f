"""Maintenance drains: an operator holds a node or some of its GPUs back on purpose, laid over decisions.

A drain changes what is admitted, never what is measured: a drained GPU keeps its thermal
state, pressure and figures, offers no slot (so admits no class, lent or not), and its first
reason is `drained`; a drained node
admits nothing whatever its GPUs. Retry-After for drained work is the longest allowed, since
nobody can predict when an operator ends a drain.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from gpuwatch.policy import reasons
from gpuwatch.policy.decision import NO_SLOTS, GpuDecision, NodeDecision, PriorityClass

MAX_REASON_CHARS = 200  # an operator's note, shown in every answer; longer is refused


@dataclass(frozen=True, slots=True)
class DrainEntry:
    """Who asked why, and when (Unix seconds)."""

    reason: str
    since: float


@dataclass(frozen=True, slots=True)
class Drains:
    """The drains in force: the node's, if any, and each drained GPU's by index."""

    node: DrainEntry | None = None
    gpus: Mapping[int, DrainEntry] = field(default_factory=lambda: MappingProxyType({}))

    @property
    def empty(self) -> bool:
        """Whether nothing is drained."""
        return self.node is None and not self.gpus

    def with_node(self, entry: DrainEntry | None) -> Drains:
        """These drains with the node's set (None: ended)."""
        return Drains(entry, self.gpus)

    def with_gpu(self, index: int, entry: DrainEntry | None) -> Drains:
        """These drains with GPU `index`'s set (None: ended)."""
        gpus = {k: v for k, v in self.gpus.items() if k != index}
        if entry is not None:
            gpus[index] = entry
        return Drains(self.node, MappingProxyType(dict(sorted(gpus.items()))))

    def document(self) -> dict[str, object]:
        """The drains as JSON-ready data."""
        return {
            "node": None if self.node is None else dataclasses.asdict(self.node),
            "gpus": {str(index): dataclasses.asdict(entry) for index, entry in self.gpus.items()},
        }


def drained(decision: NodeDecision, drains: Drains) -> NodeDecision:
    """`decision` with `drains` laid over it; the decision itself when nothing is drained."""
    if drains.empty:
        return decision
    longest_s = decision.retry_bounds.max_s
    gpus = tuple(
        _drained_gpu(gpu, drains.gpus[gpu.index], longest_s) if gpu.index in drains.gpus else gpu
        for gpu in decision.gpus
    )
    if drains.node is None:
        return dataclasses.replace(decision, gpus=gpus)
    return dataclasses.replace(
        decision,
        gpus=gpus,
        drained=True,
        reasons=(reasons.DRAINED, *(r for r in decision.reasons if r != reasons.DRAINED)),
        sentence=f"Node is drained by an operator ({drains.node.reason}); holding back all work. "
        + decision.sentence,
        retry_after_by_class=tuple((cls, longest_s) for cls in PriorityClass),
    )


def _drained_gpu(gpu: GpuDecision, entry: DrainEntry, longest_s: float) -> GpuDecision:
    return dataclasses.replace(
        gpu,
        admits=frozenset(),
        slots=NO_SLOTS,
        reasons=(reasons.DRAINED, *(r for r in gpu.reasons if r != reasons.DRAINED)),
        sentence=f"GPU {gpu.index} is drained by an operator ({entry.reason}); holding back all work.",
        retry_after_s=longest_s,
        retry_after_by_class=tuple((cls, longest_s) for cls in PriorityClass),
    )
