"""`oracle`: admits a job only where the exact physics shows no thermal slowdown until its GPU's jobs end.

What it knows that gpuwatch does not: each GPU's exact (unrounded) temperature, its inlet and
cooling, the physics itself, the scheduled events (a cooling failure to come), and the exact work
of the job and of every job already on the GPU. Before a job starts, it plays the GPU's future
forward (foresight.py) with the job added, up to when the GPU's jobs end (at most `horizon_s`),
and admits only if the temperature stays `guard_c` below the max-operating limit, where SW
thermal slowdown begins. Of the GPUs that pass, it picks the one with the most headroom left.
A job held back asks again at the next sampling interval.

It is not told the arrivals to come, and would have little use for them: admitting greedily at
the exact limit already keeps every GPU as busy as its heat allows, and holding a job back for a
later one never cools a GPU faster than running fewer jobs does. Jobs are asked in the same
order, by the same gateway, as for the other controllers, so it cannot pick short ones first.
"""

from __future__ import annotations

from gpuwatch.simulate.cluster import Cluster
from gpuwatch.simulate.controllers.base import Decision, Hold, Start
from gpuwatch.simulate.controllers.foresight import Change, peak_temperature_c
from gpuwatch.simulate.scenario import OracleSettings, ScenarioEvent
from gpuwatch.simulate.workload import Job


class OracleController:
    """Exact look-ahead admission; an upper bound for any controller that avoids slowdown."""

    def __init__(
        self,
        cluster: Cluster,
        settings: OracleSettings,
        events: tuple[ScenarioEvent, ...],
        *,
        tick_s: float,
        interval_s: float,
    ) -> None:
        self._cluster = cluster
        self._settings = settings
        self._events = events
        self._tick_s = tick_s
        self._interval_s = interval_s
        # Within one tick, the least work seen refused by each GPU: more work only adds heat, so
        # anything at least as long is refused there too, without playing it forward again.
        self._refused_from: dict[tuple[int, int], float] = {}
        self._refused_at = -1.0

    def observe(self, now_s: float) -> None:
        """Nothing to sample: it reads the exact physics when it decides."""

    def decide(self, job: Job, now_s: float) -> Decision:
        """The free GPU with the most headroom left after the job's whole run, or hold until next interval."""
        if now_s != self._refused_at:
            self._refused_from, self._refused_at = {}, now_s
        best: tuple[float, int, int] | None = None
        for node, gpu in self._cluster.gpus():
            if not self._cluster.has_slot(node, gpu) or job.work_s >= self._refused_from.get(
                (node, gpu), 1e18
            ):
                continue
            headroom_c = self._headroom_c(node, gpu, job, now_s)
            if headroom_c < 0:
                self._refused_from[node, gpu] = job.work_s
            elif best is None or headroom_c > best[0]:
                best = (headroom_c, node, gpu)
        if best is None:
            return Hold(self._interval_s)
        return Start(best[1], best[2])

    def _headroom_c(self, node: int, gpu: int, job: Job, now_s: float) -> float:
        """°C left below the limit (less the guard) at the hottest moment with `job` added."""
        sim = self._cluster.nodes[node]
        view = sim.views[gpu]
        works = [running.remaining_s for running in sim.running[gpu]] + [job.work_s]
        changes = [
            Change(event.at_s - now_s, event.inlet_c, event.cooling_factor)
            for event in self._events
            if event.at_s > now_s
            and (event.nodes is None or node in event.nodes)
            and (event.gpus is None or gpu in event.gpus)
        ]
        peak_c = peak_temperature_c(view.physics, works, changes, self._tick_s, self._settings.horizon_s)
        return view.physics.profile.max_operating_temperature_c - self._settings.guard_c - peak_c

    def ended(self, job: Job, now_s: float) -> None:
        """Nothing to settle: it hands out nothing that a job holds."""

    def levels(self) -> tuple[int, ...]:
        """Per node: 0 none of its GPUs refused work this tick, 2 some did, 3 all did."""
        levels = []
        for node in self._cluster.nodes:
            refused = sum((node.index, gpu) in self._refused_from for gpu in range(len(node.running)))
            levels.append(0 if refused == 0 else (3 if refused == len(node.running) else 2))
        return tuple(levels)

    def close(self) -> None:
        """Nothing to release."""
