"""`gpuwatch`: each job goes through the code `gpuwatch serve` runs — Sampler, Policy.update, expire, admit.

Per node, a real `Sampler` reads the node's sim source every sampling interval on the virtual
clock (on this thread, `read_inline`: a sim read cannot hang), and `Policy.update` turns each
snapshot into the node's decision, as the daemon's sampler thread does. The gateway holds the
latest decision of every node, as HTTP clients would see it, and asks each node in order of its
pressure (lowest first) with `admit(...)`, jittered as the daemon jitters (one of its eight
Retry-After variants, at random). The job starts on the GPU the first admission names. If that
GPU is at the concurrency limit, the gateway asks the node again pinned to each GPU with a free
slot, coolest first (`/v1/admit?gpu=`). Held back by every node, the job retries after the
shortest Retry-After it was given.
"""

from __future__ import annotations

import random

from gpuwatch.exposure.publication import JITTER_BITS, JITTER_VARIANTS
from gpuwatch.policy.admission import Admission, admit
from gpuwatch.policy.config import PolicyConfig
from gpuwatch.policy.decision import NodeDecision, PriorityClass, ThermalState
from gpuwatch.policy.engine import Policy, expire
from gpuwatch.sampler import Sampler
from gpuwatch.simulate.cluster import Cluster
from gpuwatch.simulate.controllers.base import FULL, Decision, Hold, Start
from gpuwatch.simulate.workload import Job

_LEVELS = {ThermalState.OK: 0, ThermalState.ELEVATED: 1, ThermalState.HOT: 2}


class GpuwatchController:
    """One sampler and one policy per node; admission exactly as `/v1/admit` answers it."""

    def __init__(
        self, cluster: Cluster, config: PolicyConfig, interval_s: float, priority: PriorityClass, seed: int
    ) -> None:
        self._cluster = cluster
        self._config = config
        self._interval_s = interval_s
        self._priority = priority
        self._rng = random.Random(seed)  # noqa: S311 - Retry-After jitter, as the daemon's
        self._samplers = [
            Sampler(node.source, interval_s=interval_s, clock=cluster.clock, read_inline=True)
            for node in cluster.nodes
        ]
        self._policies = [Policy(config, interval_s) for _ in cluster.nodes]
        self.decisions: list[NodeDecision] = []

    def observe(self, now_s: float) -> None:  # noqa: ARG002 - the snapshot carries its own time
        """Sample every node and decide, as the daemon does once per interval."""
        self.decisions = [
            policy.update(sampler.sample_once())
            for policy, sampler in zip(self._policies, self._samplers, strict=True)
        ]

    def decide(self, job: Job, now_s: float) -> Decision:  # noqa: ARG002 - every job is of the scenario's class
        """Ask the nodes, lowest pressure first; start where the first admission says."""
        decisions = [expire(d, now_s, self._config, self._interval_s) for d in self.decisions]
        waits: list[float] = []
        admitted_somewhere = False
        for node in sorted(range(len(decisions)), key=lambda i: (decisions[i].pressure, i)):
            answer = admit(decisions[node], self._priority, jitter=self._jitter())
            if not answer.admitted:
                waits.append(float(answer.retry_after_s or self._config.retry_after_max_s))
                continue
            admitted_somewhere = True
            gpu = self._gpu_for(node, decisions[node], answer)
            if gpu is not None:
                return Start(node, gpu)
        if admitted_somewhere:
            return FULL
        return Hold(min(waits, default=self._config.retry_after_max_s))

    def _gpu_for(self, node: int, decision: NodeDecision, answer: Admission) -> int | None:
        """The GPU the admission names if it has a free slot, else the first free one admitted pinned."""
        if answer.gpu is not None and self._cluster.has_slot(node, answer.gpu.index):
            return answer.gpu.index
        for gpu in sorted(decision.gpus, key=lambda g: (g.pressure, g.index)):
            if self._cluster.has_slot(node, gpu.index):
                pinned = admit(decision, self._priority, gpu=gpu.index, jitter=self._jitter())
                if pinned.admitted:
                    return gpu.index
        return None

    def _jitter(self) -> float:
        """One of the daemon's Retry-After jitters, picked at random as it picks them."""
        variant = self._rng.getrandbits(JITTER_BITS)
        return -1.0 + (2 * variant + 1) / JITTER_VARIANTS

    def levels(self) -> tuple[int, ...]:
        """Per node: 0 OK, 1 ELEVATED, 2 HOT, 3 CRITICAL or worse."""
        return tuple(_LEVELS.get(d.state, 3) for d in self.decisions) or tuple(0 for _ in self._cluster.nodes)

    def close(self) -> None:
        """Stop the samplers (which close the sources)."""
        for sampler in self._samplers:
            sampler.stop()
