"""The simulated fleet: one sim source per node on a shared virtual clock, and the jobs running on its GPUs.

A job is work measured in seconds at full clocks. It progresses at its GPU's clock ratio (SM
clock over its maximum): a power cap slows it a little, SW thermal slowdown more, and HW slowdown
halves what is left, so its duration doubles there. Each running job adds the SKU's per-job power
to its GPU (the sim's held jobs), and a GPU runs at most `per_gpu` jobs at once.
"""

from __future__ import annotations

from dataclasses import dataclass

from gpuwatch.simulate.scenario import NodeSpec, Scenario, ScenarioEvent
from gpuwatch.simulate.workload import Job
from gpuwatch.sources.clock import ManualClock
from gpuwatch.sources.sim import physics
from gpuwatch.sources.sim.plants import WIDE
from gpuwatch.sources.sim.scenario import LoadSettings
from gpuwatch.sources.sim.scenario import Scenario as SimScenario
from gpuwatch.sources.sim.scenario import ScenarioEvent as SimEvent
from gpuwatch.sources.sim.source import GpuPhysics, SimSource


@dataclass(slots=True)
class RunningJob:
    """A job on a GPU, with the work it has left."""

    job: Job
    started_s: float
    remaining_s: float  # work left, in seconds at full clocks


@dataclass(frozen=True, slots=True)
class Completion:
    """A job that ended, and when (virtual s, within the tick it ended in)."""

    job: Job
    started_s: float
    ended_s: float


@dataclass(frozen=True, slots=True)
class GpuView:
    """One GPU as the physics has it now, with the figures jobs and metrics need."""

    physics: GpuPhysics
    clock_ratio: float  # SM clock over its maximum; jobs progress at this rate
    power_w: float
    reasons: int  # ClockEventReason bitmask

    @property
    def temperature_c(self) -> float:
        """Exact die temperature, °C (readings floor it)."""
        return self.physics.state.temperature_c

    @property
    def margin_c(self) -> float:
        """Exact °C below the max-operating temperature, where SW thermal slowdown starts."""
        return self.physics.profile.max_operating_temperature_c - self.physics.state.temperature_c


def gpu_view(gpu: GpuPhysics) -> GpuView:
    """Clock ratio, power and clock-event reasons of a GPU in its present state and load."""
    point = physics.operating_point(gpu.profile, gpu.state, gpu.conditions)
    ratio = point.sm_clock_mhz / gpu.profile.sm_clock_max_mhz if gpu.conditions.jobs else 1.0
    return GpuView(gpu, ratio, point.power_w, point.reasons)


class SimNode:
    """One node: its sim source (its GPUs' physics) and the jobs on each GPU."""

    def __init__(self, index: int, spec: NodeSpec, scenario: Scenario, clock: ManualClock) -> None:
        self.index = index
        self.spec = spec
        events = [_sim_event(event) for event in scenario.events if _touches(event, index)]
        sim = SimScenario(
            skus=spec.skus,
            seed=scenario.seed * 1000 + index,
            inlet_c=spec.inlet_c,
            cooling_factor=spec.cooling_factor,
            spread=scenario.spread,
            plant=WIDE if scenario.plants == WIDE else "two-node",
            load=LoadSettings(jobs=0, arrival_per_s=0.0),
            events=tuple(sorted(events, key=lambda event: event.at_s)),
        )
        self.source = SimSource(sim, clock, spec=spec.name)
        self.running: list[list[RunningJob]] = [[] for _ in spec.skus]
        self.views: tuple[GpuView, ...] = ()
        self.changed = False  # a job started or ended since the views were read
        self.refresh()

    def refresh(self) -> None:
        """Bring the physics to now and re-read every GPU's view."""
        self.views = tuple(gpu_view(gpu) for gpu in self.source.physics_now())
        self.changed = False

    def start(self, job: Job, gpu: int, now_s: float) -> None:
        """Start `job` on `gpu` now."""
        self.source.start_job(gpu)
        self.running[gpu].append(RunningJob(job, now_s, job.work_s))
        self.changed = True

    def progress(self, dt_s: float, now_s: float) -> list[Completion]:
        """Advance every job by `dt_s` at its GPU's clock ratio; end and return those done by `now_s`."""
        done: list[Completion] = []
        for gpu, jobs in enumerate(self.running):
            ratio = self.views[gpu].clock_ratio
            for running in list(jobs):
                worked_s = ratio * dt_s
                if running.remaining_s > worked_s:
                    running.remaining_s -= worked_s
                    continue
                ended_s = now_s - dt_s + running.remaining_s / ratio
                done.append(Completion(running.job, running.started_s, ended_s))
                jobs.remove(running)
                self.source.finish_job(gpu)
                self.changed = True
        return done


class Cluster:
    """Every node of a scenario on one virtual clock that starts at 0."""

    def __init__(self, scenario: Scenario) -> None:
        self.clock = ManualClock()
        self.per_gpu = scenario.jobs.per_gpu
        self.nodes = tuple(SimNode(i, spec, scenario, self.clock) for i, spec in enumerate(scenario.nodes))

    @property
    def now_s(self) -> float:
        """Virtual seconds since the start."""
        return self.clock.monotonic()

    def has_slot(self, node: int, gpu: int) -> bool:
        """Whether `gpu` of `node` runs fewer jobs than the concurrency limit."""
        return len(self.nodes[node].running[gpu]) < self.per_gpu

    def any_slot(self) -> bool:
        """Whether any GPU can take one more job."""
        return any(len(jobs) < self.per_gpu for node in self.nodes for jobs in node.running)

    def gpus(self) -> list[tuple[int, int]]:
        """Every (node, gpu) pair, in order."""
        return [(node.index, gpu) for node in self.nodes for gpu in range(len(node.running))]

    def refresh(self, *, changed_only: bool = False) -> None:
        """Re-read every GPU's view at the clock's now (only nodes whose jobs changed, if asked)."""
        for node in self.nodes:
            if node.changed or not changed_only:
                node.refresh()

    def close(self) -> None:
        """Close the sim sources."""
        for node in self.nodes:
            node.source.close()


def _touches(event: ScenarioEvent, node: int) -> bool:
    return event.nodes is None or node in event.nodes


def _sim_event(event: ScenarioEvent) -> SimEvent:
    """A scenario event as the node's sim source applies it, at the same virtual second."""
    return SimEvent(
        at_s=event.at_s, gpus=event.gpus, inlet_c=event.inlet_c, cooling_factor=event.cooling_factor
    )
