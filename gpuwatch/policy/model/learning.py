"""The model stage: each fresh reading of one GPU, screened, into its margin model (fit, trajectory, ΔP_job).

What the model keeps between readings is a `MarginModel`; `observe` returns the next one and,
when the reading could not be learned from, why (screen.py's reason). A reading it drops leaves
the fit, the crossings and ΔP_job as they were. `learn` is the stage: it also matches the GPU's
leases against the power steps that show their jobs starting and ending (leases.py), and learns
ΔP_job from the fall a released job leaves as from the rise a starting one makes. Pure: no
clock, no I/O.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from gpuwatch.policy.config import PolicyConfig
from gpuwatch.policy.leases import LeaseMemory, Ledger, OnGpu, dropped, matched
from gpuwatch.policy.model import screen
from gpuwatch.policy.model.dequantise import Dequantiser, held_power_w
from gpuwatch.policy.model.history import Point, appended
from gpuwatch.policy.model.job_power import CAP_RATIO, JobPower
from gpuwatch.policy.model.thermal_model import RcFit
from gpuwatch.policy.model.trajectory import SETTLE_AFTER_STEP_S, Measured, Trajectory, still_holds
from gpuwatch.policy.model.trajectory import fit as fit_trajectory
from gpuwatch.policy.readings import Readings
from gpuwatch.sources.model import ClockEventReason, GpuReading

# Reasons that move power for other reasons than jobs: such readings teach nothing about ΔP_job.
_HELD_CLOCKS = (
    ClockEventReason.SW_POWER_CAP
    | ClockEventReason.SW_THERMAL_SLOWDOWN
    | ClockEventReason.HW_THERMAL_SLOWDOWN
    | ClockEventReason.HW_SLOWDOWN
)


@dataclass(frozen=True, slots=True)
class Load:
    """What the GPU draws now, its enforced limit and one more job's power, W."""

    power_w: float | None
    power_limit_w: float | None
    job_power_w: float | None

    def with_one_more_job_w(self) -> float | None:
        """Power if one more job started now, capped at the enforced limit."""
        if self.power_w is None:
            return None
        raised = self.power_w + (self.job_power_w or 0.0)
        return raised if self.power_limit_w is None else min(raised, max(self.power_limit_w, self.power_w))


@dataclass(frozen=True, slots=True)
class MarginModel:
    """Everything the model has learned of one GPU; replaced, never changed."""

    window: tuple[Point, ...] = ()  # margins as the dequantiser estimates them, held power
    dequantiser: Dequantiser = field(default_factory=Dequantiser)
    fit: RcFit | None = None
    power_changed_at: float | None = None  # when the held power last moved
    trajectory: Trajectory | None = None
    job_power: JobPower = field(default_factory=JobPower)
    clocks_free: bool = True  # the last reading learned from had no clock-holding reason
    learned_at: float | None = None  # monotonic time of the last reading learned from
    last_margin_c: float | None = None  # that reading's margin
    rejected: tuple[tuple[str, int], ...] = ()  # readings dropped, by reason
    jumps: tuple[float, ...] = ()  # margins of the margin jumps in a row just now

    def observe(
        self, reading: GpuReading, margin_c: float, interval_s: float, config: PolicyConfig
    ) -> tuple[MarginModel, str | None]:
        """The model after `reading` (margin `margin_c`), and why it was dropped (None: learned from).

        screen.JUMP_CONFIRMATIONS margin jumps in a row that agree with each other are real (a
        new board behind the uuid, a sensor recalibrated): the model starts again from them.
        """
        problem = screen.unusable(reading, self.last_margin_c, self.learned_at)
        if problem is None:
            return self._learned(reading, margin_c, interval_s, config), None
        jumps = (*self.jumps, margin_c) if problem == screen.MARGIN_JUMP else ()
        if len(jumps) >= screen.JUMP_CONFIRMATIONS and max(jumps) - min(jumps) <= screen.AGREE_C:
            fresh = MarginModel(rejected=self.rejected)
            return fresh._learned(reading, margin_c, interval_s, config), None
        counted = screen.counted(self.rejected, problem)
        return dataclasses.replace(self, rejected=counted, jumps=jumps[-screen.JUMP_CONFIRMATIONS :]), problem

    def load(self, reading: GpuReading, config: PolicyConfig) -> Load:
        """The GPU's load as the forecast sees it: power now (as the model holds it), its limit, ΔP_job."""
        limit_w = reading.power_limit_w
        held_w = self.window[-1].power_w if self.window else None
        power_w = held_w if held_w is not None else reading.power_w
        return Load(power_w, limit_w, self.job_power.estimate_w(limit_w, config))

    def rise_w(self) -> float | None:
        """How much the held power rose at the last reading learned from, W (None: no step to read)."""
        if len(self.window) < 2:
            return None
        before, after = self.window[-2].power_w, self.window[-1].power_w
        return None if before is None or after is None else after - before

    def previous_at(self) -> float | None:
        """When the reading before the last one learned from was taken (monotonic s; None: none)."""
        return self.window[-2].at if len(self.window) >= 2 else None

    def released(self, on_gpu: OnGpu, limit_w: float | None) -> MarginModel:
        """The model after the fall of jobs released at the last step: ΔP_job learned from it.

        Only a step with releases and no job taken in it says how much one job drew.
        """
        fall_w = -(self.rise_w() or 0.0)
        if not on_gpu.released_shown or on_gpu.started_between or fall_w <= 0 or not self.clocks_free:
            return self
        before_w = self.window[-2].power_w
        if limit_w is not None and before_w is not None and before_w >= CAP_RATIO * limit_w:
            return self  # a job ending under the power cap gives back less than it would draw
        job_power = self.job_power.observe_fall(fall_w / on_gpu.released_shown, limit_w)
        return dataclasses.replace(self, job_power=job_power)

    def measured(self, at: float, margin_c: float) -> Measured:
        """What the readings show at `at` (reading `margin_c`): the trajectory, and the margin's rate.

        Within seconds of a power step the die's own jump dominates the rate; the model knows it.
        """
        path = still_holds(self.trajectory, at, margin_c, self.dequantiser.noise_band_c)
        changed_at = self.power_changed_at
        settled = changed_at is None or at - changed_at >= SETTLE_AFTER_STEP_S
        rate = self.dequantiser.rate_now_c_per_s(at) if settled else None
        return Measured(at, path, rate)

    def _learned(
        self, reading: GpuReading, margin_c: float, interval_s: float, config: PolicyConfig
    ) -> MarginModel:
        """The model after one usable reading: crossings, held power, ΔP_job, fit and trajectory."""
        at = reading.monotonic
        previous = self.window[-1] if self.window else None
        previous_w = previous.power_w if previous else None
        power_w = held_power_w(previous_w, reading.power_w, reading.power_limit_w)
        stepped = previous_w is not None and power_w is not None and power_w != previous_w
        dequantiser, estimate_c = self.dequantiser.observe(at, margin_c, stepped=stepped)
        if dequantiser.noisy and not stepped:
            # A noisy sensor's margin now: the trajectory through the bins, while the readings
            # agree with it, places it better than a line through the last few bins does.
            held = still_holds(self.trajectory, at, margin_c, dequantiser.noise_band_c)
            estimate_c = estimate_c if held is None else held.margin_c(at)
        clocks_free = not (reading.clock_event_reasons or 0) & _HELD_CLOCKS
        job_power = self.job_power
        if previous_w is not None and power_w is not None:
            free = clocks_free and self.clocks_free
            job_power = job_power.observe(previous_w, power_w, reading.power_limit_w, clocks_free=free)
        point = Point(at, estimate_c, power_w)
        fit = _fitted(self.fit, point, interval_s, config)
        changed_at = at if previous is None or previous_w != power_w else self.power_changed_at
        path = self.trajectory
        if dequantiser.crossings != self.dequantiser.crossings or changed_at != self.power_changed_at:
            params = fit.parameters if fit else None
            tau_prior_s = params.tau_s if params is not None else config.tau_prior_s
            since = (at if changed_at is None else changed_at) + SETTLE_AFTER_STEP_S
            path = fit_trajectory(dequantiser.crossings, since, at, tau_prior_s, dequantiser.point_sds)
        return MarginModel(
            window=appended(self.window, point, max(config.slope_max_samples, config.slope_min_samples)),
            dequantiser=dequantiser,
            fit=fit,
            power_changed_at=changed_at,
            trajectory=path,
            job_power=job_power,
            clocks_free=clocks_free,
            learned_at=at,
            last_margin_c=margin_c,
            rejected=self.rejected,
        )


def _fitted(fit: RcFit | None, point: Point, interval_s: float, config: PolicyConfig) -> RcFit | None:
    """The RC fit after `point`, started at the first reading with power."""
    if fit is not None:
        return fit.update(point)
    if point.power_w is None:
        return None
    return RcFit.start(
        point,
        step_s=interval_s,
        tau_prior_s=config.tau_prior_s,
        resistance_prior_c_per_w=config.resistance_prior_c_per_w,
        die_share_prior=config.die_share_prior,
        memory_s=config.model_memory_s,
    )


@dataclass(frozen=True, slots=True)
class Learned:
    """The model stage's output for one GPU."""

    readings: Readings
    model: MarginModel
    problem: str | None  # why the latest reading was dropped from the model; None: it was not
    leases: OnGpu  # the GPU's leased jobs: running, and still to show
    load: Load | None  # None: no fresh reading to judge by
    measured: Measured | None
    estimate_c: float | None  # the margin as the model tracks it (dequantised), °C

    @property
    def job_power_w(self) -> float | None:
        """ΔP_job, W."""
        return None if self.load is None else self.load.job_power_w


def learn(readings: Readings, model: MarginModel, ledger: Ledger, memory: LeaseMemory) -> Learned:
    """The model after `readings`, and where the GPU's leases stand.

    A GPU FAILED or UNKNOWN keeps its model and plans nothing from its leases (the book ends
    them); a reading seen before (the same reading judged again) teaches nothing new.
    """
    moment = readings.moment
    config = moment.config
    reading = readings.reading
    margin_c = readings.margin_c
    if readings.not_finite:
        model = dataclasses.replace(model, rejected=screen.counted(model.rejected, screen.NOT_A_NUMBER))
    if not readings.judged or reading is None or margin_c is None:
        return Learned(readings, model, None, dropped(ledger, memory), None, None, None)
    problem = None
    step_w = None
    fresh = model.learned_at is None or reading.monotonic != model.learned_at
    if fresh:
        model, problem = model.observe(reading, margin_c, moment.interval_s, config)
        step_w = model.rise_w() if problem is None else None
    job_power_w = model.job_power.estimate_w(reading.power_limit_w, config)
    on_gpu = matched(
        ledger,
        memory,
        reading_at=reading.monotonic,
        previous_at=model.previous_at(),
        step_w=step_w,
        job_power_w=job_power_w,
    )
    if step_w is not None:
        model = model.released(on_gpu, reading.power_limit_w)
    load = model.load(reading, config)
    if model.learned_at is None or problem is not None:
        # Judged on its own margin (a real jump towards the limit must still hold work back),
        # with nothing measured from a reading the model could not take.
        return Learned(readings, model, problem, on_gpu, load, None, margin_c)
    estimate_c = model.window[-1].margin_c if model.window else margin_c
    measured = model.measured(reading.monotonic, margin_c)
    return Learned(readings, model, problem, on_gpu, load, measured, estimate_c)
