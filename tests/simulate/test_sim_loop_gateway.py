"""The gateway: retries after Retry-After, waits for a free slot oldest first, gives up at the deadline."""

from __future__ import annotations

from dataclasses import dataclass, field

from sim_loop_helpers import one_gpu

from gpuwatch.simulate.cluster import Cluster
from gpuwatch.simulate.controllers.base import FULL, Decision, Hold, Start
from gpuwatch.simulate.gateway import Gateway
from gpuwatch.simulate.metrics import Recorder
from gpuwatch.simulate.workload import Job


@dataclass
class Scripted:
    """A controller that answers from a script, and remembers who asked when."""

    answers: list[Decision]
    asked: list[tuple[int, float]] = field(default_factory=list)

    def observe(self, now_s: float) -> None:
        """Nothing to watch."""

    def decide(self, job: Job, now_s: float) -> Decision:
        self.asked.append((job.number, now_s))
        return self.answers.pop(0) if self.answers else Start(0, 0)

    def levels(self) -> tuple[int, ...]:
        return (0,)

    def close(self) -> None:
        """Nothing to release."""


def gateway(jobs, answers, per_gpu=8):
    """A gateway over one GPU that runs up to `per_gpu` jobs, asking a scripted controller."""
    cluster = Cluster(one_gpu())
    cluster.per_gpu = per_gpu
    controller = Scripted(list(answers))
    recorder = Recorder(cluster)
    return Gateway(tuple(jobs), controller, cluster, recorder), controller, recorder, cluster


class TestGateway:
    """Every controller's jobs wait and give up by the same rules."""

    def test_a_held_job_asks_again_after_its_retry_after(self):
        gate, controller, recorder, cluster = gateway([Job(0, 0.0, 5.0, 100.0)], [Hold(7.0)])
        for step in range(20):
            gate.step(step * 0.5)
        assert controller.asked == [(0, 0.0), (0, 7.0)]
        assert recorder.rejected == {0}
        assert len(cluster.nodes[0].running[0]) == 1

    def test_a_job_held_past_its_deadline_times_out(self):
        gate, controller, recorder, _ = gateway([Job(0, 0.0, 5.0, 10.0)], [Hold(30.0)])
        for step in range(80):
            gate.step(step * 0.5)
        assert controller.asked == [(0, 0.0)]
        assert recorder.timed_out == 1

    def test_full_gpus_make_jobs_wait_oldest_first(self):
        jobs = [Job(0, 0.0, 5.0, 100.0), Job(1, 0.5, 5.0, 100.0), Job(2, 1.0, 5.0, 100.0)]
        gate, controller, _, _ = gateway(jobs, [FULL, FULL, FULL])
        for step in range(4):
            gate.step(step * 0.5)
        # Job 0 is asked each tick until it starts; younger jobs are not asked while it waits.
        assert controller.asked == [(0, 0.0), (0, 0.5), (0, 1.0), (0, 1.5), (1, 1.5), (2, 1.5)]

    def test_no_free_slot_means_no_question(self):
        gate, controller, _, _ = gateway([Job(0, 0.0, 5.0, 100.0)], [], per_gpu=0)
        gate.step(0.0)
        assert controller.asked == []
        assert gate.finish(0.0) == 1
