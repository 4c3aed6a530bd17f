"""One simulated GPU: its physics state, its jobs (held and random) and its NVML-like reading."""

from __future__ import annotations

import heapq
import math
import random

from gpuwatch.sources.model import GpuReading, RecoveryAction, SlowdownCounters
from gpuwatch.sources.sim import physics
from gpuwatch.sources.sim.profiles import SkuProfile
from gpuwatch.sources.sim.scenario import DEFAULT_MEAN_JOB_S, LoadSettings

# Power readings carry noise, as NVML's do: a relative error of this standard deviation, cut at
# POWER_NOISE_MAX (modelling assumption for "±1-2 %"), then whole watts.
POWER_NOISE_SD = 0.01
POWER_NOISE_MAX = 0.02
# A GPU serving more than this many jobs at once is a broken scheduler, not a load: random
# arrivals beyond it are turned away, as a server with a full queue would.
MAX_JOBS = 64


class SimGpu:
    """A GPU in virtual seconds: held jobs, a Poisson stream of random jobs, and two-node RC physics.

    `profile` is this board's own (spread already drawn). Random jobs arrive at `arrival_per_s`
    and last an exponential time of mean `mean_job_s`; the stream draws only from `rng`, and its
    events do not depend on when the GPU is read. Power-reading noise is a function of this GPU's
    noise seed (drawn from `rng` at the start) and the virtual time read, so a reading does not
    depend on how many reads came before it either.
    Between load changes the physics advances in steps of at most `max_step_s`, because
    slowdown and its feedback on power are decided once per step.
    """

    def __init__(  # noqa: PLR0913 - keyword-only settings of one GPU; an object would only move them
        self,
        profile: SkuProfile,
        rng: random.Random,
        *,
        inlet_c: float,
        cooling_factor: float = 1.0,
        load: LoadSettings,
        now_s: float,
        max_step_s: float,
    ) -> None:
        self.profile = profile
        self._rng = rng
        self._noise_seed = rng.getrandbits(64)
        self._now_s = now_s
        self._max_step_s = max_step_s
        self._inlet_c = inlet_c
        self._cooling_factor = cooling_factor
        self._held_jobs = 0
        self._random_ends: list[float] = []  # heap of end times, virtual s
        self._arrival_per_s = 0.0
        self._mean_job_s = DEFAULT_MEAN_JOB_S
        self._next_arrival_s = math.inf
        self.apply_load(load)
        self._start_stationary()
        self._state = physics.settled_state(profile, self.conditions())

    @property
    def jobs(self) -> int:
        """Jobs running now: held plus random."""
        return self._held_jobs + len(self._random_ends)

    @property
    def held_jobs(self) -> int:
        """Jobs held by the caller or by scenario `jobs` settings."""
        return self._held_jobs

    def conditions(self) -> physics.Conditions:
        """What the surroundings impose right now."""
        return physics.Conditions(
            jobs=self.jobs,
            inlet_c=self._inlet_c,
            power_limit_w=self.profile.power_default_limit_w,
            cooling_factor=self._cooling_factor,
        )

    def set_held_jobs(self, jobs: int) -> None:
        """Hold exactly `jobs` jobs (0 to MAX_JOBS) besides the random ones."""
        if not 0 <= jobs <= MAX_JOBS:
            msg = f"jobs on a GPU must be 0 to {MAX_JOBS}, got {jobs}"
            raise ValueError(msg)
        self._held_jobs = jobs

    def set_inlet(self, inlet_c: float) -> None:
        """Change the inlet air temperature, °C."""
        self._inlet_c = inlet_c

    def set_cooling(self, factor: float) -> None:
        """Multiply the healthy thermal resistance by `factor` (> 0; 1 = healthy)."""
        if not factor > 0:
            msg = f"cooling factor must be > 0, got {factor}"
            raise ValueError(msg)
        self._cooling_factor = factor

    def apply_load(self, load: LoadSettings) -> None:
        """Change what `load` names: held jobs, random arrival rate, mean random job length."""
        if load.jobs is not None:
            self.set_held_jobs(load.jobs)
        if load.mean_job_s is not None:
            self._mean_job_s = load.mean_job_s
        if load.arrival_per_s is not None:
            self._arrival_per_s = load.arrival_per_s
            # Poisson arrivals are memoryless: drawing the next one afresh from now is exact.
            self._next_arrival_s = self._now_s + self._gap_s()

    def advance_to(self, t_s: float) -> None:
        """Run the physics and the random jobs up to virtual time `t_s` (no-op if not later)."""
        self._run_due_jobs()
        while self._now_s < t_s:
            next_change_s = min(self._next_arrival_s, self._random_ends[0] if self._random_ends else math.inf)
            until_s = min(t_s, self._now_s + self._max_step_s, next_change_s)
            self._state = physics.step(self.profile, self._state, self.conditions(), until_s - self._now_s)
            self._now_s = until_s
            self._run_due_jobs()

    def reading(self, taken_at: float, monotonic: float) -> GpuReading:
        """What NVML would report now: integer °C, margins from them, noisy whole W, MHz, whole percent."""
        profile = self.profile
        state = physics.latch(profile, self._state)
        conditions = self.conditions()
        point = physics.operating_point(profile, state, conditions)
        temperature_c = float(math.floor(self._sensed_c(state)))
        memory_c = physics.memory_temperature_c(profile, conditions, state.sink_temperature_c)
        memory_temperature_c = float(math.floor(memory_c))
        memory_used = min(profile.memory_total_bytes, self.jobs * profile.job.memory_bytes)
        return GpuReading(
            taken_at=taken_at,
            monotonic=monotonic,
            temperature_c=temperature_c,
            memory_temperature_c=memory_temperature_c,
            margin_c=profile.max_operating_temperature_c - temperature_c,
            slowdown_margin_c=profile.slowdown_temperature_c - temperature_c,
            shutdown_margin_c=profile.shutdown_temperature_c - temperature_c,
            memory_margin_c=profile.memory_max_temperature_c - memory_temperature_c,
            power_w=float(round(point.power_w * (1.0 + self._power_noise()))),
            power_limit_w=profile.power_default_limit_w,
            energy_j=math.floor(state.energy_j * 1000) / 1000,
            utilization_ratio=round(point.utilization, 2),
            memory_utilization_ratio=round(point.memory_utilization, 2),
            memory_used_bytes=memory_used,
            memory_free_bytes=profile.memory_total_bytes - memory_used,
            sm_clock_hz=round(point.sm_clock_mhz) * 1e6,
            memory_clock_hz=profile.memory_clock_max_mhz * 1e6,
            clock_event_reasons=point.reasons,
            slowdown_counters=SlowdownCounters(
                sw_power_cap_s=state.sw_power_cap_s,
                sync_boost_s=0.0,
                sw_thermal_slowdown_s=state.sw_thermal_slowdown_s,
                hw_thermal_slowdown_s=state.hw_thermal_slowdown_s,
                hw_power_brake_slowdown_s=0.0,
            ),
            pstate=0,
            ecc_corrected_volatile=0,
            ecc_uncorrected_volatile=0,
            pcie_replay_count=0,
            recovery_action=RecoveryAction.NONE,
        )

    def clock_ratio(self) -> float:
        """SM clock over its maximum now: how fast jobs progress (1 = full speed)."""
        state = physics.latch(self.profile, self._state)
        point = physics.operating_point(self.profile, state, self.conditions())
        return point.sm_clock_mhz / self.profile.sm_clock_max_mhz

    @property
    def state(self) -> physics.GpuState:
        """The continuous physical state (not rounded as readings are)."""
        return self._state

    def _sensed_c(self, state: physics.GpuState) -> float:
        """The sensor's value now, before NVML's rounding: the die's, or a lagging and noisy one."""
        sensed_c = state.temperature_c if state.sensor_temperature_c is None else state.sensor_temperature_c
        noise_c = self.profile.thermal.sensor_noise_c
        if noise_c > 0:
            # A draw of its own per reading time, apart from the power's (the key's top bit set).
            key = self._noise_seed ^ (round(self._now_s * 1000) & 0xFFFFFFFFFFFF) ^ (1 << 63)
            sensed_c += random.Random(key).gauss(0.0, noise_c)  # noqa: S311 - reproducible noise, not secrets
        return sensed_c

    def _power_noise(self) -> float:
        """The relative power error of a reading at this virtual time (whole ms)."""
        key = self._noise_seed ^ (round(self._now_s * 1000) & 0xFFFFFFFFFFFF)
        draw = random.Random(key).gauss(0.0, POWER_NOISE_SD)  # noqa: S311 - reproducible noise, not secrets
        return max(-POWER_NOISE_MAX, min(POWER_NOISE_MAX, draw))

    def _gap_s(self) -> float:
        """Seconds to the next random arrival."""
        return self._rng.expovariate(self._arrival_per_s) if self._arrival_per_s > 0 else math.inf

    def _start_stationary(self) -> None:
        """Start the random jobs as if they had always run: Poisson count, exponential remainders."""
        mean_jobs = min(self._arrival_per_s * self._mean_job_s, float(MAX_JOBS))
        # Knuth's method: multiply uniforms until below e^-mean; exact, and quick for small means.
        count, product, floor = 0, self._rng.random(), math.exp(-mean_jobs)
        while product > floor and count < MAX_JOBS:
            count += 1
            product *= self._rng.random()
        for _ in range(count):
            heapq.heappush(self._random_ends, self._now_s + self._rng.expovariate(1.0 / self._mean_job_s))

    def _run_due_jobs(self) -> None:
        """Start the random jobs that arrived by now and end those that are done."""
        while self._next_arrival_s <= self._now_s:
            if len(self._random_ends) < MAX_JOBS:
                duration_s = self._rng.expovariate(1.0 / self._mean_job_s)
                heapq.heappush(self._random_ends, self._next_arrival_s + duration_s)
            self._next_arrival_s += self._gap_s()
        while self._random_ends and self._random_ends[0] <= self._now_s:
            heapq.heappop(self._random_ends)
