"""`gpuwatch`: jobs go through `gpuwatch serve`'s code: Sampler, Policy.update, expire, admit, leases.

Per node, a real `Sampler` reads the node's sim source every sampling interval on the virtual
clock (on this thread, `read_inline`: a sim read cannot hang), and `Policy.update` turns each
snapshot into the node's decision with the node's LeaseBook read in, as the daemon's sampler
thread does. The gateway asks each node in order of its pressure (lowest first) with
`admit(...)` for the job's class, jittered as the daemon jitters (one of its eight Retry-After
variants, at random), with the slots taken since the decision counted; an admission takes its
lease in the book at once, as `/v1/admit` does, planned with its class's duration on the node.
The job starts on the GPU the first admission names. If that GPU is at the concurrency limit,
the gateway asks the node again pinned to each GPU with a free slot, most slots first
(`/v1/admit?gpu=`). Held back by every node, the job retries after the shortest Retry-After it
was given. When a job ends, the gateway releases its lease (`POST /v1/release`) `release_delay_s`
later (an application answers, then releases: the release comes after the power falls), unless
it plays a proxy that never does (`releases=False`): its leases then end at their deadlines.
"""

from __future__ import annotations

import random

from gpuwatch.exposure.leases import LeaseBook
from gpuwatch.exposure.publication import JITTERS
from gpuwatch.policy.admission import Admission, admit
from gpuwatch.policy.config import PolicyConfig
from gpuwatch.policy.decision import NodeDecision, PriorityClass, ThermalState
from gpuwatch.policy.engine import Policy, expire
from gpuwatch.sampler.loop import Sampler
from gpuwatch.simulate.cluster import Cluster
from gpuwatch.simulate.controllers.base import FULL, Decision, Hold, Start
from gpuwatch.simulate.workload import Job

_LEVELS = {ThermalState.OK: 0, ThermalState.ELEVATED: 1, ThermalState.HOT: 2}


class GpuwatchController:
    """One sampler, one policy and one lease book per node; admission exactly as `/v1/admit` does it."""

    def __init__(  # noqa: PLR0913 - keyword-only past the cluster's settings
        self,
        cluster: Cluster,
        config: PolicyConfig,
        interval_s: float,
        *,
        seed: int,
        releases: bool = True,
        release_delay_s: float = 0.0,
    ) -> None:
        self._cluster = cluster
        self._releases = releases
        self._release_delay_s = release_delay_s
        self._due: list[tuple[float, int, str]] = []  # releases not sent yet: (when, node, lease id)
        self._leases: dict[int, tuple[int, str]] = {}  # job number -> (node, lease id)
        self._config = config
        self._interval_s = interval_s
        self._rng = random.Random(seed)  # noqa: S311 - Retry-After jitter, as the daemon's
        self._samplers = [
            Sampler(node.source, interval_s=interval_s, clock=cluster.clock, read_inline=True)
            for node in cluster.nodes
        ]
        self._policies = [Policy(config, interval_s) for _ in cluster.nodes]
        self._books = [LeaseBook(config, clock=cluster.clock.monotonic) for _ in cluster.nodes]
        self.decisions: list[NodeDecision] = []

    def observe(self, now_s: float) -> None:
        """Sample every node and decide, as the daemon does once per interval."""
        self._send_releases(now_s)
        self.decisions = [
            policy.update(sampler.sample_once(), book.leases())
            for policy, sampler, book in zip(self._policies, self._samplers, self._books, strict=True)
        ]
        for book, decision in zip(self._books, self.decisions, strict=True):
            book.end_out(decision)

    def ended(self, job: Job, now_s: float) -> None:
        """The job is over: release its lease, as a gateway does once the response has been sent."""
        taken = self._leases.pop(job.number, None)
        if taken is not None and self._releases:
            self._due.append((now_s + self._release_delay_s, *taken))
            self._send_releases(now_s)

    def _send_releases(self, now_s: float) -> None:
        """Release the leases whose release is due by `now_s`."""
        if not self._due:
            return
        due = [entry for entry in self._due if entry[0] <= now_s]
        self._due = [entry for entry in self._due if entry[0] > now_s]
        for _, node, lease_id in due:
            self._books[node].release(lease_id)

    def decide(self, job: Job, now_s: float) -> Decision:
        """Ask the nodes, lowest pressure first; start where the first admission says, taking its slot."""
        self._send_releases(now_s)
        decisions = [expire(d, now_s, self._config, self._interval_s) for d in self.decisions]
        waits: list[float] = []
        admitted_somewhere = False
        for node in sorted(range(len(decisions)), key=lambda i: (decisions[i].pressure, i)):
            answer = admit(
                decisions[node],
                job.priority,
                jitter=self._jitter(),
                taken=self._taken(node),
            )
            if not answer.admitted:
                waits.append(float(answer.retry_after_s or self._config.retry_after_max_s))
                continue
            admitted_somewhere = True
            gpu = self._gpu_for(node, decisions[node], answer, job.priority)
            if gpu is not None:
                expected_s, _ = decisions[node].job_plan(job.priority)
                lease = self._books[node].take(gpu, job.priority, expected_s)
                self._leases[job.number] = (node, lease.id)
                return Start(node, gpu)
        if admitted_somewhere:
            return FULL
        return Hold(min(waits, default=self._config.retry_after_max_s))

    def _taken(self, node: int) -> dict[int, int]:
        """Admissions on each of the node's GPUs since its decision, as the publication counts them."""
        book = self._books[node]
        return {g.index: book.total(g.index) - g.slots_counted for g in self.decisions[node].gpus}

    def _gpu_for(
        self, node: int, decision: NodeDecision, answer: Admission, priority: PriorityClass
    ) -> int | None:
        """The GPU the admission names if it has a free slot, else the first free one admitted pinned."""
        if answer.gpu is not None and self._cluster.has_slot(node, answer.gpu.index):
            return answer.gpu.index
        taken = self._taken(node)
        for gpu in sorted(
            decision.gpus, key=lambda g: (-g.free(priority, taken.get(g.index, 0)), g.pressure)
        ):
            if self._cluster.has_slot(node, gpu.index):
                pinned = admit(decision, priority, gpu=gpu.index, jitter=self._jitter(), taken=taken)
                if pinned.admitted:
                    return gpu.index
        return None

    def _jitter(self) -> float:
        """One of the daemon's Retry-After jitters, picked at random as it picks them."""
        return JITTERS[self._rng.randrange(len(JITTERS))]

    def levels(self) -> tuple[int, ...]:
        """Per node: 0 OK, 1 ELEVATED, 2 HOT, 3 CRITICAL or worse (the shown state)."""
        return tuple(_LEVELS.get(d.state, 3) for d in self.decisions) or tuple(0 for _ in self._cluster.nodes)

    def close(self) -> None:
        """Stop the samplers (which close the sources)."""
        for sampler in self._samplers:
            sampler.stop()
