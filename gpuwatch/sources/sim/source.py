"""The simulated source: SPEC parsing, and GPUs advanced in the injected clock's time."""

from __future__ import annotations

import math
import random
import re
import threading
from collections.abc import Iterable
from dataclasses import dataclass

from gpuwatch.sources.base import SourceError, SourceReading
from gpuwatch.sources.clock import Clock
from gpuwatch.sources.model import GpuIdentity, GpuSample
from gpuwatch.sources.sim import physics
from gpuwatch.sources.sim.gpu import SimGpu
from gpuwatch.sources.sim.plants import draw_plant
from gpuwatch.sources.sim.profiles import PROFILES, SkuProfile, find_profile, first_order, with_spread
from gpuwatch.sources.sim.scenario import (
    DEFAULT_MEAN_JOB_S,
    LEGACY_PLANTS,
    MAX_GPUS,
    LoadSettings,
    Scenario,
    ScenarioEvent,
    load_scenario,
)

DEFAULT_SPEC = "8xH100"
DRIVER_VERSION = "sim"
# Virtual seconds run before the first read so temperatures have settled from the cool start
# (settled_state puts both nodes at the steady state of the starting load; random jobs move it).
PREROLL_S = 300.0
# PCI bus ids of an HGX H100 board (H100SXMx8_nvidia-smi-a.txt:70, :294, ... :1638); GPUs past
# eight go to further PCI domains.
_HGX_BUSES = ("18", "2A", "3A", "5D", "9A", "AB", "BA", "DB")
_ITEM = re.compile(r"(?:(\d+)\s*[xX]\s*)?([A-Za-z][A-Za-z0-9]*)")
# Demo load: each GPU gets its own mean number of jobs in this range, so a plain `sim:8xH100`
# shows GPUs from nearly idle to power-capped.
_DEMO_MEAN_JOBS = (0.3, 3.3)


def open_sim(spec: str, clock: Clock, *, seed: int = 0) -> SimSource:
    """Open simulated GPUs from a SPEC: "", "sim", "8xH100", "2xH100,2xA100", or a .toml path.

    Raises SourceError naming what was wrong (ScenarioError, a subclass, for scenario files).
    """
    return SimSource(scenario_from_spec(spec), clock, seed=seed, spec=spec)


def scenario_from_spec(spec: str) -> Scenario:
    """The scenario a SPEC stands for; SKU names in any case, counts 1-64 in all."""
    text = _without_prefix(spec) or DEFAULT_SPEC
    if text.lower().endswith(".toml") or "/" in text:
        return load_scenario(text)
    skus: list[str] = []
    for item in text.split(","):
        found = _ITEM.fullmatch(item.strip())
        if found is None:
            raise _spec_error(spec, f"cannot read {item.strip()!r}; write COUNTxSKU items like 8xH100")
        profile = find_profile(found.group(2))
        if profile is None:
            raise _spec_error(spec, f"unknown SKU {found.group(2)!r}")
        count = int(found.group(1) or 1)
        if not 1 <= count <= MAX_GPUS:
            raise _spec_error(spec, f"GPU count must be 1 to {MAX_GPUS}, got {count}")
        skus.extend([profile.sku] * count)
    if len(skus) > MAX_GPUS:
        raise _spec_error(spec, f"{len(skus)} GPUs in all; at most {MAX_GPUS}")
    return Scenario(skus=tuple(skus))


def _without_prefix(spec: str) -> str:
    """The SPEC without a leading `sim` or `sim:`, which callers may or may not have removed."""
    text = spec.strip()
    if text.lower() == "sim" or text.lower().startswith("sim:"):
        return text[4:].strip()
    return text


def _spec_error(spec: str, problem: str) -> SourceError:
    """A SourceError for a bad SPEC that also lists what is valid."""
    valid = ", ".join(sorted(PROFILES))
    return SourceError(
        f"sim spec {spec!r}: {problem} (valid SKUs: {valid}; e.g. sim:8xH100, sim:2xH100,2xA100, "
        "or a scenario .toml path)"
    )


def sim_uuid(seed: int, index: int) -> str:
    """A stable, recognisably simulated uuid: 5e7f0000 marks it, then the seed, then the index."""
    low32 = seed & 0xFFFFFFFF
    return f"GPU-5e7f0000-{low32 >> 16:04x}-{low32 & 0xFFFF:04x}-0000-{index:012x}"


def sim_identity(index: int, profile: SkuProfile, seed: int) -> GpuIdentity:
    """Identity and fixed limits of simulated GPU `index`, as the driver would state them."""
    return GpuIdentity(
        index=index,
        uuid=sim_uuid(seed, index),
        name=profile.name,
        pci_bus_id=f"{index // len(_HGX_BUSES):08X}:{_HGX_BUSES[index % len(_HGX_BUSES)]}:00.0",
        driver_version=DRIVER_VERSION,
        sku=profile.sku,
        thermal_limits=profile.thermal_limits(),
        power_default_limit_w=profile.power_default_limit_w,
        power_min_limit_w=profile.power_min_limit_w,
        power_max_limit_w=profile.power_max_limit_w,
        sm_clock_max_hz=profile.sm_clock_max_mhz * 1e6,
        memory_clock_max_hz=profile.memory_clock_max_mhz * 1e6,
        memory_total_bytes=profile.memory_total_bytes,
    )


@dataclass(frozen=True, slots=True)
class GpuPhysics:
    """One simulated GPU's exact physics at an instant, unrounded, for closed-loop simulations."""

    profile: SkuProfile
    state: physics.GpuState  # latched: `hw_slowdown` is what holds now
    conditions: physics.Conditions


class SimSource:
    """Simulated GPUs with RC thermal physics, advanced to `clock.monotonic()` on every call.

    Virtual time starts at 0 when the source opens; scenario events run at their `at_s`. The
    control methods (for closed-loop simulations and fault injection) first bring the physics up
    to now, so a change takes effect at the instant it is made. `gpu=None` means every GPU.
    Same scenario, seed and clock sequence give identical readings. Thread-safe.
    """

    def __init__(
        self, scenario: Scenario, clock: Clock, *, seed: int = 0, spec: str = "", max_step_s: float = 1.0
    ) -> None:
        if not max_step_s > 0:
            msg = f"max_step_s must be > 0, got {max_step_s}"
            raise ValueError(msg)
        self._clock = clock
        self._spec = f"sim:{_without_prefix(spec)}" if _without_prefix(spec) else "sim"
        self._seed = seed if scenario.seed is None else scenario.seed
        self._pending = list(scenario.events)
        self._lock = threading.Lock()
        rng = random.Random(self._seed)  # noqa: S311 - a reproducible simulation, not cryptography
        self._gpus = tuple(
            SimGpu(
                _board(sku, scenario, random.Random(rng.getrandbits(64))),  # noqa: S311 - as above
                random.Random(rng.getrandbits(64)),  # noqa: S311 - as above
                inlet_c=scenario.inlet_c,
                cooling_factor=scenario.cooling_factor,
                load=_demo_load(rng) if scenario.load is None else scenario.load,
                now_s=-PREROLL_S,
                max_step_s=max_step_s,
            )
            for sku in scenario.skus
        )
        for gpu in self._gpus:
            gpu.advance_to(0.0)
        self._identities = tuple(sim_identity(i, gpu.profile, self._seed) for i, gpu in enumerate(self._gpus))
        self._start_s = clock.monotonic()

    @property
    def spec(self) -> str:
        """The --source spec, e.g. "sim:8xH100"."""
        return self._spec

    @property
    def seed(self) -> int:
        """The seed in effect (the scenario's, when it names one)."""
        return self._seed

    @property
    def gpu_count(self) -> int:
        """How many GPUs are simulated."""
        return len(self._gpus)

    def read(self) -> SourceReading:
        """Advance to now, run due events, and report every GPU."""
        with self._lock:
            self._advance()
            taken_at, monotonic = self._clock.time(), self._clock.monotonic()
            samples = tuple(
                GpuSample(identity=identity, reading=gpu.reading(taken_at, monotonic))
                for identity, gpu in zip(self._identities, self._gpus, strict=True)
            )
        return SourceReading(gpus=samples, driver_version=DRIVER_VERSION)

    def close(self) -> None:
        """Nothing to release: the simulation holds no threads, files or libraries."""

    def jobs(self, gpu: int) -> int:
        """Jobs running on `gpu` now (held plus random)."""
        with self._lock:
            self._advance()
            return self._gpus[self._checked(gpu)].jobs

    def set_jobs(self, gpu: int, jobs: int) -> None:
        """Hold exactly `jobs` jobs (0-64) on `gpu`, besides its random background jobs."""
        with self._lock:
            self._advance()
            self._gpus[self._checked(gpu)].set_held_jobs(jobs)

    def start_job(self, gpu: int) -> None:
        """Start one held job on `gpu` (an admitted request)."""
        with self._lock:
            self._advance()
            target = self._gpus[self._checked(gpu)]
            target.set_held_jobs(target.held_jobs + 1)

    def finish_job(self, gpu: int) -> None:
        """End one held job on `gpu`; ValueError if it holds none."""
        with self._lock:
            self._advance()
            target = self._gpus[self._checked(gpu)]
            if target.held_jobs == 0:
                msg = f"GPU {gpu} holds no job to finish"
                raise ValueError(msg)
            target.set_held_jobs(target.held_jobs - 1)

    def set_inlet(self, inlet_c: float, gpu: int | None = None) -> None:
        """Set the inlet air temperature, °C, of `gpu` or of all."""
        if not math.isfinite(inlet_c):
            msg = f"inlet temperature must be a finite number of °C, got {inlet_c}"
            raise ValueError(msg)
        with self._lock:
            self._advance()
            for target in self._targets(gpu):
                target.set_inlet(inlet_c)

    def set_cooling(self, factor: float, gpu: int | None = None) -> None:
        """Multiply the healthy thermal resistance by `factor` (1 healthy, 2-3 a failed fan)."""
        with self._lock:
            self._advance()
            for target in self._targets(gpu):
                target.set_cooling(factor)

    def set_background(
        self, arrival_per_s: float, mean_job_s: float | None = None, gpu: int | None = None
    ) -> None:
        """Set the random background load: arrivals per second and mean job length, s."""
        if arrival_per_s < 0 or (mean_job_s is not None and not mean_job_s > 0):
            msg = f"need arrival_per_s >= 0 and mean_job_s > 0, got {arrival_per_s}, {mean_job_s}"
            raise ValueError(msg)
        with self._lock:
            self._advance()
            for target in self._targets(gpu):
                target.apply_load(LoadSettings(arrival_per_s=arrival_per_s, mean_job_s=mean_job_s))

    def clock_ratio(self, gpu: int) -> float:
        """SM clock of `gpu` over its maximum now; a throttled GPU runs its jobs this much slower."""
        with self._lock:
            self._advance()
            return self._gpus[self._checked(gpu)].clock_ratio()

    def physics_now(self) -> tuple[GpuPhysics, ...]:
        """Every GPU's exact physics now, by index: what readings round, and what jobs run at."""
        with self._lock:
            self._advance()
            return tuple(
                GpuPhysics(gpu.profile, physics.latch(gpu.profile, gpu.state), gpu.conditions())
                for gpu in self._gpus
            )

    def _advance(self) -> None:
        """Bring every GPU to the clock's now, applying scenario events on the way."""
        now_s = self._clock.monotonic() - self._start_s
        while self._pending and self._pending[0].at_s <= now_s:
            event = self._pending.pop(0)
            for gpu in self._gpus:
                gpu.advance_to(event.at_s)
            self._apply(event)
        for gpu in self._gpus:
            gpu.advance_to(now_s)

    def _apply(self, event: ScenarioEvent) -> None:
        """Make a scenario event's changes to its GPUs."""
        for index in event.gpus if event.gpus is not None else range(len(self._gpus)):
            gpu = self._gpus[index]
            if event.inlet_c is not None:
                gpu.set_inlet(event.inlet_c)
            if event.cooling_factor is not None:
                gpu.set_cooling(event.cooling_factor)
            gpu.apply_load(event.load)

    def _checked(self, gpu: int) -> int:
        """`gpu` if it is a valid index, else IndexError naming the range."""
        if not 0 <= gpu < len(self._gpus):
            msg = f"no simulated GPU {gpu}; indexes are 0 to {len(self._gpus) - 1}"
            raise IndexError(msg)
        return gpu

    def _targets(self, gpu: int | None) -> Iterable[SimGpu]:
        """The GPU `gpu`, or all of them for None."""
        return self._gpus if gpu is None else (self._gpus[self._checked(gpu)],)


def _board(sku: str, scenario: Scenario, rng: random.Random) -> SkuProfile:
    """One GPU's own physics: its SKU's profile, first order if the scenario asks, with its spread.

    Or a board of a plants.py family (each draws its own spread).
    """
    profile = PROFILES[sku]
    if scenario.plant not in LEGACY_PLANTS:
        return draw_plant(profile, rng, scenario.plant)
    if scenario.plant == "first-order":
        profile = first_order(profile)
    return with_spread(profile, rng, scenario.spread)


def _demo_load(rng: random.Random) -> LoadSettings:
    """A random background load for demos: Poisson jobs of mean 45 s, a different rate per GPU."""
    mean_jobs = rng.uniform(*_DEMO_MEAN_JOBS)
    return LoadSettings(arrival_per_s=mean_jobs / DEFAULT_MEAN_JOB_S, mean_job_s=DEFAULT_MEAN_JOB_S)
