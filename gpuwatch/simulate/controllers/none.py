"""`none`: admit every job while a GPU has a free slot; the GPUs protect themselves by slowing down."""

from __future__ import annotations

from gpuwatch.simulate.cluster import Cluster
from gpuwatch.simulate.controllers.base import FULL, Decision, Start
from gpuwatch.simulate.workload import Job


class NoneController:
    """Least connections: the GPU running the fewest jobs (lowest node, then GPU index, on a tie)."""

    def __init__(self, cluster: Cluster) -> None:
        self._cluster = cluster

    def observe(self, now_s: float) -> None:
        """Nothing to watch."""

    def decide(self, job: Job, now_s: float) -> Decision:  # noqa: ARG002 - every job is treated alike
        """Start on the least busy GPU with a free slot."""
        return least_busy(self._cluster, self._cluster.gpus()) or FULL

    def ended(self, job: Job, now_s: float) -> None:
        """Nothing to settle: it hands out nothing that a job holds."""

    def levels(self) -> tuple[int, ...]:
        """It never holds anything back."""
        return tuple(0 for _ in self._cluster.nodes)

    def close(self) -> None:
        """Nothing to release."""


def least_busy(cluster: Cluster, gpus: list[tuple[int, int]]) -> Start | None:
    """Of `gpus`, the one with a free slot running the fewest jobs; None if all are full."""
    free = [
        (len(cluster.nodes[node].running[gpu]), node, gpu)
        for node, gpu in gpus
        if cluster.has_slot(node, gpu)
    ]
    if not free:
        return None
    _, node, gpu = min(free)
    return Start(node, gpu)
