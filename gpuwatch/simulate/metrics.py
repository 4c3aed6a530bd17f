"""What one controller's run came to: job outcomes, slowdown, heat and energy, and a per-second timeline."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from gpuwatch.policy.decision import PriorityClass
from gpuwatch.simulate.cluster import Cluster, Completion
from gpuwatch.simulate.workload import Job
from gpuwatch.sources.model import ClockEventReason

# Plain ints: masking with IntFlag members costs an enum construction per test.
_SW = int(ClockEventReason.SW_THERMAL_SLOWDOWN)
_HW = int(ClockEventReason.HW_THERMAL_SLOWDOWN | ClockEventReason.HW_SLOWDOWN)
_JOULES_PER_KWH = 3.6e6


@dataclass(slots=True)
class Timeline:
    """One row per sampling interval, for the plot."""

    max_operating_c: tuple[float, ...]  # per GPU, in cluster order: where SW thermal slowdown starts
    times_s: list[float] = field(default_factory=list)
    temperatures_c: list[tuple[float, ...]] = field(default_factory=list)  # per GPU, exact
    slowed: list[int] = field(default_factory=list)  # GPUs in thermal slowdown
    levels: list[tuple[int, ...]] = field(default_factory=list)  # per node, the controller's hold level
    arrived: list[int] = field(default_factory=list)  # jobs that arrived in the interval
    started: list[int] = field(default_factory=list)  # jobs that started in the interval
    running: list[int] = field(default_factory=list)
    waiting: list[int] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class ClassResult:
    """One priority class's share of a run."""

    priority: PriorityClass
    arrived: int
    completed: int
    timed_out: int
    p95_latency_s: float | None


@dataclass(frozen=True, slots=True)
class ControllerResult:
    """The row of the table for one controller, its rows per class, and its timeline."""

    controller: str
    arrived: int
    completed: int
    rejected: int  # jobs held back for heat at least once (they may have started later)
    timed_out: int  # gave up at their deadline before starting
    unfinished: int  # still waiting or running when the run ended
    p50_latency_s: float | None  # arrival to end, waiting included, of the completed jobs
    p95_latency_s: float | None
    slowdown_gpu_s: float  # GPU-seconds with SW or HW thermal slowdown active
    hw_slowdown_gpu_s: float  # of which HW slowdown (clocks halved)
    max_temperature_c: float
    energy_kwh: float
    timeline: Timeline
    by_class: tuple[ClassResult, ...] = ()

    def of_class(self, priority: PriorityClass) -> ClassResult | None:
        """The row of `priority`, if jobs of it arrived."""
        return next((row for row in self.by_class if row.priority is priority), None)


class Recorder:
    """Tallies one run as the engine goes."""

    def __init__(self, cluster: Cluster) -> None:
        self._cluster = cluster
        self.latencies_s: list[float] = []
        self.class_latencies_s: dict[PriorityClass, list[float]] = {cls: [] for cls in PriorityClass}
        self.class_timed_out: dict[PriorityClass, int] = dict.fromkeys(PriorityClass, 0)
        self.rejected: set[int] = set()
        self.timed_out = 0
        self.slowdown_gpu_s = 0.0
        self.hw_slowdown_gpu_s = 0.0
        self.max_temperature_c = -math.inf
        self._energy_start_j = self._energy_j()
        self._arrived = self._started = 0
        self.timeline = Timeline(
            max_operating_c=tuple(
                view.physics.profile.max_operating_temperature_c
                for node in cluster.nodes
                for view in node.views
            )
        )

    def interval(self, dt_s: float) -> None:
        """Account for the next `dt_s` seconds, over which the physics holds the present operating points."""
        for node in self._cluster.nodes:
            for view in node.views:
                self.max_temperature_c = max(self.max_temperature_c, view.temperature_c)
                if view.reasons & (_SW | _HW):
                    self.slowdown_gpu_s += dt_s
                if view.reasons & _HW:
                    self.hw_slowdown_gpu_s += dt_s

    def arrived(self, count: int) -> None:
        """Jobs that arrived."""
        self._arrived += count

    def started(self) -> None:
        """A job started."""
        self._started += 1

    def held_back(self, job: Job) -> None:
        """The controller held `job` back for heat."""
        self.rejected.add(job.number)

    def completed(self, completions: Sequence[Completion]) -> None:
        """Jobs that ended."""
        for done in completions:
            latency_s = done.ended_s - done.job.arrival_s
            self.latencies_s.append(latency_s)
            self.class_latencies_s[done.job.priority].append(latency_s)

    def gave_up(self, job: Job) -> None:
        """`job` timed out before it started."""
        self.timed_out += 1
        self.class_timed_out[job.priority] += 1

    def sample(self, now_s: float, levels: tuple[int, ...], waiting: int) -> None:
        """One timeline row at a sampling instant."""
        views = [view for node in self._cluster.nodes for view in node.views]
        self.max_temperature_c = max(self.max_temperature_c, *(view.temperature_c for view in views))
        line = self.timeline
        line.times_s.append(now_s)
        line.temperatures_c.append(tuple(round(view.temperature_c, 2) for view in views))
        line.slowed.append(sum(1 for view in views if view.reasons & (_SW | _HW)))
        line.levels.append(levels)
        line.arrived.append(self._arrived)
        line.started.append(self._started)
        line.running.append(sum(len(jobs) for node in self._cluster.nodes for jobs in node.running))
        line.waiting.append(waiting)
        self._arrived = self._started = 0

    def result(
        self, controller: str, arrived: int, unfinished: int, arrived_by_class: dict[PriorityClass, int]
    ) -> ControllerResult:
        """The totals, and per class for every class jobs arrived in."""
        ordered = sorted(self.latencies_s)
        by_class = tuple(
            ClassResult(
                priority=cls,
                arrived=arrived_by_class[cls],
                completed=len(self.class_latencies_s[cls]),
                timed_out=self.class_timed_out[cls],
                p95_latency_s=percentile(sorted(self.class_latencies_s[cls]), 0.95),
            )
            for cls in PriorityClass
            if arrived_by_class.get(cls)
        )
        return ControllerResult(
            controller=controller,
            arrived=arrived,
            completed=len(ordered),
            rejected=len(self.rejected),
            timed_out=self.timed_out,
            unfinished=unfinished,
            p50_latency_s=percentile(ordered, 0.50),
            p95_latency_s=percentile(ordered, 0.95),
            slowdown_gpu_s=self.slowdown_gpu_s,
            hw_slowdown_gpu_s=self.hw_slowdown_gpu_s,
            max_temperature_c=self.max_temperature_c,
            energy_kwh=(self._energy_j() - self._energy_start_j) / _JOULES_PER_KWH,
            timeline=self.timeline,
            by_class=by_class,
        )

    def _energy_j(self) -> float:
        return sum(view.physics.state.energy_j for node in self._cluster.nodes for view in node.views)


def percentile(ordered: Sequence[float], share: float) -> float | None:
    """The `share` quantile of sorted values by nearest rank; None when there are none."""
    if not ordered:
        return None
    return ordered[min(len(ordered) - 1, max(0, math.ceil(share * len(ordered)) - 1))]
