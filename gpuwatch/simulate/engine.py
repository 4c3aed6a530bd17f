"""The virtual-time loop: one run of a scenario under one controller.

Time moves in ticks of at most half a second (a whole fraction of the sampling interval). Each
tick: the physics is read; at sampling instants the controller samples; then the jobs progress at
their GPUs' clock ratios and those done end; the gateway starts what may start; GPUs whose jobs
changed are read again. Power changes only on ticks, so the sim's exact RC step runs from tick to
tick and the slowdown seconds counted per tick are exact. A sample is taken before what its tick
changes, as a reading is taken before a job ending just then shows: a power step never lands on
the very instant of a reading (where the die has had no time to answer it), which would teach a
model half the die's share.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from gpuwatch.policy.decision import PriorityClass
from gpuwatch.simulate.cluster import Cluster
from gpuwatch.simulate.controllers import make_controller
from gpuwatch.simulate.controllers.base import Controller
from gpuwatch.simulate.gateway import Gateway
from gpuwatch.simulate.metrics import ControllerResult, Recorder
from gpuwatch.simulate.scenario import Scenario
from gpuwatch.simulate.workload import Job

MAX_TICK_S = 0.5
# After the last arrival the run goes on until every job has ended, for at most this long, s.
DRAIN_LIMIT_S = 3600.0
# Called now and then with the virtual seconds done, for a progress bar.
Tick = Callable[[float], None]
# Called at each sample with the virtual seconds and the controller, to look at what it decided.
Watch = Callable[[float, Controller], None]


def _watching(on_sample: Tick | None, watch: Watch | None) -> Watch | None:
    """One call at each sample for both the progress `on_sample` and `watch` (None: neither given)."""
    if on_sample is None or watch is None:
        return watch if on_sample is None else (lambda now_s, _controller: on_sample(now_s))

    def both(now_s: float, controller: Controller) -> None:
        on_sample(now_s)
        watch(now_s, controller)

    return both


def tick_s(interval_s: float) -> float:
    """The longest tick of at most MAX_TICK_S that divides the sampling interval."""
    return interval_s / math.ceil(interval_s / MAX_TICK_S - 1e-9)


def run_one(
    scenario: Scenario,
    controller_name: str,
    jobs: tuple[Job, ...],
    on_sample: Tick | None = None,
    *,
    watch: Watch | None = None,
) -> ControllerResult:
    """One controller's run over `jobs`: arrivals for the scenario's duration, then until every job has ended.

    Past the duration no job arrives; the run goes on until the last job has finished or given
    up (at most DRAIN_LIMIT_S more), so every controller is judged on all the same jobs and none
    loses one that was merely still running when the clock stopped. `watch`, if given, sees the
    controller after each of its samples (bench/allowance_plot.py reads gpuwatch's decisions).
    """
    seen = _watching(on_sample, watch)
    tick = tick_s(scenario.interval_s)
    per_sample = round(scenario.interval_s / tick)
    cluster = Cluster(scenario)
    controller = make_controller(controller_name, scenario, cluster, tick_s=tick)
    recorder = Recorder(cluster)
    gateway = Gateway(jobs, controller, cluster, recorder)
    ticks = round(scenario.duration_s / tick)
    last = ticks + round(DRAIN_LIMIT_S / tick)
    try:
        for step in range(last + 1):
            now_s = step * tick
            if step > ticks and not gateway.waiting and not _running(cluster):
                break
            if step:
                cluster.clock.advance(now_s - cluster.clock.monotonic())
            sampling = step % per_sample == 0
            cluster.refresh()
            if sampling:
                controller.observe(now_s)
            if step:
                for node in cluster.nodes:
                    done = node.progress(tick, now_s)
                    recorder.completed(done)
                    for completion in done:
                        controller.ended(completion.job, now_s)
            gateway.step(now_s)
            cluster.refresh(changed_only=True)
            if sampling:
                recorder.sample(now_s, controller.levels(), gateway.waiting)
                if seen is not None:
                    seen(now_s, controller)
            recorder.interval(tick)
        waiting = gateway.finish(now_s)
    finally:
        controller.close()
        cluster.close()
    running = _running(cluster)
    arrived = [job for job in jobs if job.arrival_s <= scenario.duration_s]
    by_class = {cls: sum(1 for job in arrived if job.priority is cls) for cls in PriorityClass}
    return recorder.result(controller_name, len(arrived), waiting + running, by_class)


def _running(cluster: Cluster) -> int:
    """Jobs running on the cluster's GPUs."""
    return sum(len(on_gpu) for node in cluster.nodes for on_gpu in node.running)
