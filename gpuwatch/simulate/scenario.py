"""What a simulated surge is made of: nodes, their air and cooling, the workload, events and controllers.

These are plain, checked values; scenario_file.py reads them from TOML (the format is documented
there and in the shipped scenarios/*.toml).
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field

from gpuwatch.policy.config import PolicyConfig
from gpuwatch.policy.decision import PriorityClass

# The boards' plants: the SKU profiles' own, or the wide family (sources/sim/plants.py).
PLANT_CHOICES = ("profiles", "wide")


class ScenarioError(ValueError):
    """A simulate scenario cannot be used; the message reads `FILE:LINE: key: problem (got value)`."""

    def __init__(self, message: str, *, key: str | None = None, line: int | None = None) -> None:
        super().__init__(message)
        self.key = key
        self.line = line


@dataclass(frozen=True, slots=True)
class NodeSpec:
    """One node: its GPUs by index, the air at their inlets and how well its chassis cools them."""

    name: str
    skus: tuple[str, ...]  # one SKU name per GPU index ("H100")
    inlet_c: float  # air at every GPU inlet, °C
    # Multiplies each GPU's healthy thermal resistance (°C/W), and so its time constant: 1 is the
    # SKU profile's well-cooled board, above 1 a denser chassis or slower fans.
    cooling_factor: float = 1.0


@dataclass(frozen=True, slots=True)
class ScenarioEvent:
    """A change to some nodes' surroundings `at_s` seconds into the run; None leaves a value as it was."""

    at_s: float
    nodes: tuple[int, ...] | None = None  # node indexes; None: every node
    gpus: tuple[int, ...] | None = None  # GPU indexes within those nodes; None: every GPU
    inlet_c: float | None = None
    cooling_factor: float | None = None


@dataclass(frozen=True, slots=True)
class ArrivalProfile:
    """Cluster-wide Poisson arrival rate over time: `per_s` times a piecewise-linear multiplier.

    `points` are (seconds, multiplier) with strictly increasing times, the first at 0; the
    multiplier is linear between points and held after the last.
    """

    per_s: float  # jobs per second at multiplier 1
    points: tuple[tuple[float, float], ...] = ((0.0, 1.0),)

    def rate_at(self, t_s: float) -> float:
        """Arrivals per second at `t_s`."""
        after = bisect.bisect_right([at for at, _ in self.points], t_s)
        if after == 0:
            return self.per_s * self.points[0][1]
        if after == len(self.points):
            return self.per_s * self.points[-1][1]
        (t0, m0), (t1, m1) = self.points[after - 1], self.points[after]
        return self.per_s * (m0 + (m1 - m0) * (t_s - t0) / (t1 - t0))

    @property
    def peak_per_s(self) -> float:
        """The highest rate the profile reaches, jobs/s."""
        return self.per_s * max(multiplier for _, multiplier in self.points)


ClassShares = tuple[tuple[PriorityClass, float], ...]


@dataclass(frozen=True, slots=True)
class JobSpec:
    """What each job is like, which class it is asked as, and how long its submitter waits for it to start."""

    work_s: float = 20.0  # mean run time at full clocks, s
    # Coefficient of variation of the run time (lognormal); 0: every job takes exactly `work_s`.
    work_cv: float = 0.5
    per_gpu: int = 3  # jobs one GPU runs at once: the serving stack's concurrency limit
    deadline_s: float = 120.0  # a job not started this long after it arrived gives up
    # The share of jobs of each class (summing to 1), as the gateway asks gpuwatch for them.
    mix: ClassShares = ((PriorityClass.DEFAULT, 1.0),)
    class_deadlines_s: ClassShares = ()  # deadlines of their own for some classes, s

    def deadline_for(self, priority: PriorityClass) -> float:
        """How long a job of `priority` waits to start before it gives up, s."""
        return next((s for cls, s in self.class_deadlines_s if cls is priority), self.deadline_s)

    @property
    def classes(self) -> tuple[PriorityClass, ...]:
        """The classes jobs come in, in class order."""
        present = {cls for cls, share in self.mix if share > 0}
        return tuple(cls for cls in PriorityClass if cls in present)


@dataclass(frozen=True, slots=True)
class StaticSettings:
    """The `static` controller: per GPU, pause above `pause_c`, resume at or below `resume_c` (°C)."""

    pause_c: float = 83.0
    resume_c: float = 75.0
    poll_s: float = 1.0  # a paused GPU's temperature is checked this often, s


@dataclass(frozen=True, slots=True)
class OracleSettings:
    """The `oracle` controller: how far ahead it checks, and how close to the limit it runs."""

    horizon_s: float = 600.0  # s of the future (physics, events, the jobs' own ends) checked
    # Stays this far below the max-operating temperature, °C: DESIGN §2's quality bar is set
    # against an oracle with exact physics and half a degree to spare.
    guard_c: float = 0.5


@dataclass(frozen=True, slots=True)
class Scenario:
    """A whole simulated run."""

    name: str
    nodes: tuple[NodeSpec, ...]
    arrivals: ArrivalProfile
    duration_s: float
    seed: int = 1
    jobs: JobSpec = field(default_factory=JobSpec)
    events: tuple[ScenarioEvent, ...] = ()  # sorted by time
    interval_s: float = 1.0  # gpuwatch's sampling interval, as `gpuwatch serve --interval`
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    static: StaticSettings = field(default_factory=StaticSettings)
    oracle: OracleSettings = field(default_factory=OracleSettings)
    title: str = ""  # one line for the table and plot headers
    # Each GPU's R, C and power per job drawn within ±this of its SKU profile: 0.03 a fleet's
    # board-to-board spread; 0.3 physics the policy's priors were not set for.
    spread: float = 0.03
    # The boards' plants: "profiles" (the SKU profiles' own two-node plants, with `spread`) or
    # "wide" (each GPU's drawn from sources/sim/plants.py's families, a decade either side).
    plants: str = "profiles"  # one of PLANT_CHOICES
    # Gateways release each lease when its job ends; False plays a proxy that never releases (and
    # says no duration): leases end at their deadlines.
    releases: bool = True
    # How long after its job ends a gateway's release reaches gpuwatch, s: the power falls first.
    release_delay_s: float = 0.0

    @property
    def gpu_count(self) -> int:
        """GPUs over all nodes."""
        return sum(len(node.skus) for node in self.nodes)
