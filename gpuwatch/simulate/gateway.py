"""The gateway in front of the fleet: every controller's jobs wait, retry and give up by the same rules.

A job that has arrived and not started is either *ready* (it may start as soon as a GPU has a
free slot) or *held* (a controller held it back for heat and it asks again after the
Retry-After it was given). Ready jobs are asked as a tiered queue asks them: `critical` first,
then `default`, then `sheddable`, oldest first within a class. A job not started by its deadline
gives up.
"""

from __future__ import annotations

import heapq

from gpuwatch.policy.decision import PriorityClass
from gpuwatch.simulate.cluster import Cluster
from gpuwatch.simulate.controllers.base import Controller, Full, Hold, Start
from gpuwatch.simulate.metrics import Recorder
from gpuwatch.simulate.workload import Job


class Gateway:
    """Sends each job to its controller when it may start, and keeps the ones that must wait."""

    def __init__(
        self, jobs: tuple[Job, ...], controller: Controller, cluster: Cluster, recorder: Recorder
    ) -> None:
        self._jobs = jobs
        self._controller = controller
        self._cluster = cluster
        self._recorder = recorder
        self._arrived = 0  # jobs[:_arrived] have arrived
        self._ready: list[tuple[int, int, Job]] = []  # heap by (class rank, job number)
        self._held: list[tuple[float, int, Job]] = []  # heap by retry time

    @property
    def waiting(self) -> int:
        """Jobs that have arrived and neither started nor given up (some may be past their deadline)."""
        return len(self._ready) + len(self._held)

    def step(self, now_s: float) -> None:
        """Take in arrivals and due retries, then start what the controller lets start."""
        first = self._arrived
        while self._arrived < len(self._jobs) and self._jobs[self._arrived].arrival_s <= now_s:
            job = self._jobs[self._arrived]
            heapq.heappush(self._ready, _ready_key(job))
            self._arrived += 1
        self._recorder.arrived(self._arrived - first)
        while self._held and self._held[0][0] <= now_s:
            _, _, job = heapq.heappop(self._held)
            heapq.heappush(self._ready, _ready_key(job))
        self._start_ready(now_s)
        self._ready = [
            entry for entry in self._ready if entry[2].gives_up_s > now_s or self._gave_up(entry[2])
        ]
        heapq.heapify(self._ready)

    def _start_ready(self, now_s: float) -> None:
        """Ask for ready jobs, oldest first, while some GPU has a free slot."""
        while self._ready and self._cluster.any_slot():
            entry = heapq.heappop(self._ready)
            number, job = entry[1], entry[2]
            if job.gives_up_s <= now_s:
                self._recorder.gave_up(job)
                continue
            decision = self._controller.decide(job, now_s)
            if isinstance(decision, Start):
                self._cluster.nodes[decision.node].start(job, decision.gpu, now_s)
                self._recorder.started()
            elif isinstance(decision, Hold):
                heapq.heappush(self._held, (now_s + decision.retry_after_s, number, job))
                self._recorder.held_back(job)
            elif isinstance(decision, Full):
                # Every GPU the controller would use is busy: the jobs after it would be told the same.
                heapq.heappush(self._ready, entry)
                return

    def finish(self, end_s: float) -> int:
        """At the end of the run: count the waiting jobs past their deadline as timed out; the rest."""
        waiting = [job for _, _, job in self._ready] + [job for _, _, job in self._held]
        expired = [job for job in waiting if job.gives_up_s <= end_s]
        for job in expired:
            self._recorder.gave_up(job)
        return len(waiting) - len(expired)

    def _gave_up(self, job: Job) -> bool:
        """Count `job` as timed out; False, so a filter drops it."""
        self._recorder.gave_up(job)
        return False


_RANKS = {priority: rank for rank, priority in enumerate(PriorityClass)}


def _ready_key(job: Job) -> tuple[int, int, Job]:
    """A ready job's place: its class's rank (critical first), then its arrival order."""
    return (_RANKS[job.priority], job.number, job)
