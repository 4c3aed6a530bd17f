"""Runs every controller over the same jobs: one after the other here, or side by side in worker processes."""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, wait
from typing import Any

from gpuwatch.simulate.controllers import CONTROLLERS
from gpuwatch.simulate.engine import run_one
from gpuwatch.simulate.metrics import ControllerResult
from gpuwatch.simulate.scenario import Scenario
from gpuwatch.simulate.workload import Job, draw_jobs

# Called with the share of the whole run done (0-1) and what is running, for a progress bar.
Progress = Callable[[float, str], None]
POLL_S = 0.1  # how often the parent reads its workers' progress, wall s

_done_s: Any = None  # in a worker: the shared array of virtual seconds done, per controller


def run(
    scenario: Scenario,
    controllers: tuple[str, ...] = CONTROLLERS,
    progress: Progress | None = None,
    workers: int = 1,
) -> list[ControllerResult]:
    """Every controller on the same jobs, in `controllers` order; results do not depend on `workers`."""
    jobs = draw_jobs(scenario.arrivals, scenario.duration_s, scenario.jobs, scenario.seed)
    if workers <= 1 or len(controllers) <= 1:
        return [_in_process(scenario, controllers, i, jobs, progress) for i in range(len(controllers))]
    return _in_workers(scenario, controllers, jobs, progress, workers)


def _in_process(
    scenario: Scenario,
    controllers: tuple[str, ...],
    index: int,
    jobs: tuple[Job, ...],
    progress: Progress | None,
) -> ControllerResult:
    def on_sample(done_s: float) -> None:
        if progress is not None:
            progress((index + done_s / scenario.duration_s) / len(controllers), controllers[index])

    return run_one(scenario, controllers[index], jobs, on_sample)


def _in_workers(
    scenario: Scenario,
    controllers: tuple[str, ...],
    jobs: tuple[Job, ...],
    progress: Progress | None,
    workers: int,
) -> list[ControllerResult]:
    """One controller per task on a pool of `workers` processes; progress through shared memory."""
    # spawn: a fresh interpreter per worker, never a fork of a process that may hold threads.
    context = multiprocessing.get_context("spawn")
    done_s = context.Array("d", len(controllers), lock=False)
    with ProcessPoolExecutor(workers, mp_context=context, initializer=_share, initargs=(done_s,)) as pool:
        futures = [pool.submit(_worker_run, scenario, name, i, jobs) for i, name in enumerate(controllers)]
        while not all(future.done() for future in futures):
            wait(futures, timeout=POLL_S)
            if progress is not None:
                share = sum(done_s) / (len(controllers) * scenario.duration_s)
                running = [
                    name for name, future in zip(controllers, futures, strict=True) if future.running()
                ]
                progress(share, ", ".join(running))
        return [future.result() for future in futures]


def _share(done_s: Any) -> None:  # noqa: ANN401 - a multiprocessing shared array
    global _done_s  # noqa: PLW0603 - the one way a pool initializer hands state to its tasks
    _done_s = done_s


def _worker_run(scenario: Scenario, name: str, index: int, jobs: tuple[Job, ...]) -> ControllerResult:
    def on_sample(done: float) -> None:
        _done_s[index] = done

    return run_one(scenario, name, jobs, on_sample)
