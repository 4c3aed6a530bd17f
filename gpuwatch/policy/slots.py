"""The slots stage: how many more jobs of each class may start on a GPU now, and when a class gets one back.

A class's slots are the largest k >= 0 such that the planned margin over the horizon, with k
more jobs of the class's expected duration started now on top of the jobs its leases plan
(model/schedule.py), stays at or above the class's guard wherever it is looked at:

    margin(h) - k * ΔP_job * (G(h) - G(h - d)) >= guard

with margin(h) the path at present power moved by the leases' planned starts and ends, G the
model's step response (°C per W) and d the class's expected duration (a job of unknown duration
never ends: G(h) alone, the step every job was before leases). The power limit caps what jobs
can add: a GPU whose path stays above the guard even at its limit is offered `max_slots`, less
the leased jobs its power does not show yet. No class has a slot at margin <= 0, in SW or HW
thermal slowdown, or at memory margin <= 0. Paid work keeps its precedence whatever the
durations: `critical` has at least the slots of `default`, and `default` at least those of
`sheddable`.

A class without a slot gets one back when the schedule says so: Retry-After is the first time,
among the leased jobs' ends and a ladder of waits, at which one more job of the class would fit,
plus one sampling interval for the samples to show it. It is read from what is expected, not
from what is safe: running jobs end at the median of the held times longer than their age (the
slots plan them at the high quantile), and a planned end gives back the die's share too.
Told to come back at the safe end, a held-back client would sleep past the moment most slots
come back, and past its deadline. Where no leased job is planned
to end (a gateway that says no durations), a running job is taken to end now, as it will at
some point: what a held-back GPU does next.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from gpuwatch.policy import reasons
from gpuwatch.policy.config import PolicyConfig
from gpuwatch.policy.decision import NO_SLOTS, PriorityClass, Slots
from gpuwatch.policy.durations import JobPlan
from gpuwatch.policy.leases import OnGpu
from gpuwatch.policy.model import Forecast, Outlook, Schedule, lease_steps

# Where a wait for a slot is looked for, s after now (besides the leased jobs' planned ends):
# the Retry-After range, finer near now.
WAIT_OFFSETS_S = (1.0, 2.0, 3.0, 5.0, 7.0, 10.0, 15.0, 20.0, 30.0, 45.0, 60.0, 90.0, 120.0)
# A reading at or above this share of the enforced limit is held at it: its jobs would draw more.
AT_LIMIT_RATIO = 0.97


@dataclass(frozen=True, slots=True)
class Headroom:
    """The slots stage's output for one GPU."""

    outlook: Outlook
    capacity: Slots  # jobs that may start now if no leased job were still to show: the GPU's thermal standing
    slots: Slots  # what admission reads
    pending: int  # leased jobs the power does not show yet
    blocked: str | None  # the reason code that leaves no class a slot, if any
    headroom_c: float | None  # margin above the `default` guard over the horizon with one more job
    # Per class, until it has a slot beyond those offered now (for a class without: until it has one).
    waits_s: tuple[tuple[PriorityClass, float | None], ...]
    schedule: Schedule | None = None  # the margin ahead with the leased jobs; None: nothing to plan with
    long_slots: Slots = NO_SLOTS  # slots for jobs that last the whole horizon (decision.long_slots)
    # `default` has no slot only for the allowance the forecast keeps for its own errors.
    uncertain: bool = False

    def lowest_with_one_more_c(self, priority: PriorityClass) -> float | None:
        """The lowest planned margin over the horizon with one more job of `priority`, °C."""
        if self.schedule is None:
            return None
        plan = self.outlook.learned.readings.moment.durations.plan(priority)
        return self.schedule.lowest_c(plan.seconds, 1)


# What a GPU offered every slot must keep beyond its guard, °C: half the readings' whole degree.
# It may then sit at its power limit for minutes, on a plateau where no reading crosses a degree
# and a drift within it goes unseen (a board 30 % off its profile drifted from 1 °C to slowdown).
PINNED_EXTRA_C = 0.5


def capped_safe(forecast: Forecast, guard_c: float) -> bool:
    """Whether the path stays PINNED_EXTRA_C above `guard_c` over the horizon even at the power limit."""
    cap_w = forecast.headroom_w
    if cap_w is None or forecast.response is None or not forecast.path_c:
        return False
    return all(
        margin_c - cap_w * cost_c_per_w >= guard_c + PINNED_EXTRA_C
        for margin_c, cost_c_per_w in zip(forecast.path_c, forecast.cost_c_per_w, strict=True)
    )


def blocked_reason(outlook: Outlook) -> str | None:
    """Why no class may have a slot now, whatever the forecast says (DESIGN §2), else None."""
    readings = outlook.learned.readings
    reading = readings.reading
    if reading is None or readings.margin_c is None or readings.margin_c <= 0:
        return reasons.MARGIN_EXHAUSTED
    if readings.hw_thermal:
        return reasons.HW_THERMAL_SLOWDOWN
    if reading.memory_margin_c is not None and reading.memory_margin_c <= 0:
        return reasons.MEMORY_MARGIN_EXHAUSTED
    if readings.sw_thermal:
        return reasons.SW_THERMAL_SLOWDOWN
    return None


def headroom(outlook: Outlook) -> Headroom:
    """The slots stage: slots, leased jobs still to show, headroom for pressure, waits for slots, by class."""
    learned = outlook.learned
    readings = learned.readings
    moment = readings.moment
    config = moment.config
    on_gpu = learned.leases
    pending = len(on_gpu.pending)
    if not readings.judged:
        # FAILED: out. UNKNOWN: nothing to forecast from; a fresh reading is due within an
        # interval. Failing open, an UNKNOWN GPU is offered every slot.
        open_ = readings.unknown is not None and not readings.failures and config.fail_open
        slots = Slots(config.max_slots, config.max_slots, config.max_slots) if open_ else NO_SLOTS
        wait = None if readings.failures else moment.interval_s
        waits = tuple((cls, wait) for cls in PriorityClass)
        return Headroom(outlook, slots, slots, 0, None, None, waits, long_slots=slots)
    blocked = blocked_reason(outlook)
    schedule = _schedule(outlook, on_gpu, pending=True)
    expected = _schedule(outlook, on_gpu, pending=True, expected=True, shared_from=schedule)
    plans = {cls: moment.durations.plan(cls) for cls in PriorityClass}
    if blocked is not None or schedule is None:
        waits = _waits(expected, NO_SLOTS, plans, config, moment.interval_s)
        return Headroom(outlook, NO_SLOTS, NO_SLOTS, pending, blocked, None, waits, schedule)
    standing = _schedule(outlook, on_gpu, pending=False, shared_from=schedule) if pending else schedule
    capacity, slots = _counted(
        outlook.forecast, standing or schedule, schedule, plans, pending=pending, config=config
    )
    waits = _waits(expected, slots, plans, config, moment.interval_s)
    default_plan = plans[PriorityClass.DEFAULT]
    headroom_c = schedule.lowest_c(default_plan.seconds, 1) - config.default_guard_c
    steps = {cls: JobPlan(None, plans[cls].basis) for cls in PriorityClass}
    long_slots = (
        slots
        if all(plan.seconds is None for plan in plans.values())
        else _counted(outlook.forecast, schedule, schedule, steps, pending=pending, config=config)[1]
    )
    uncertain = slots.default == 0 and _fits_but_for_errors(
        outlook, on_gpu, plans[PriorityClass.DEFAULT], config
    )
    return Headroom(
        outlook, capacity, slots, pending, None, headroom_c, waits, schedule, long_slots, uncertain
    )


def _fits_but_for_errors(outlook: Outlook, on_gpu: OnGpu, plan: JobPlan, config: PolicyConfig) -> bool:
    """Whether one more job of `plan` would fit above the `default` guard on the forecast's own path.

    Worked out only for a GPU without a `default` slot whose forecast keeps an allowance.
    """
    forecast = outlook.forecast
    if forecast.own_margin_at is None or not any((*forecast.error_c, *forecast.start_ratio)):
        return False
    own_forecast = dataclasses.replace(forecast, margin_at=forecast.own_margin_at, start_c_per_w=None)
    own = dataclasses.replace(outlook, forecast=own_forecast)
    schedule = _schedule(own, on_gpu, pending=True)
    return schedule is not None and schedule.jobs_fitting(config.default_guard_c, plan.seconds) >= 1


# The quantile of the held times a running job's end is expected at, for Retry-After.
EXPECTED_SHARE = 0.5


def _schedule(
    outlook: Outlook,
    on_gpu: OnGpu,
    *,
    pending: bool,
    expected: bool = False,
    shared_from: Schedule | None = None,
) -> Schedule | None:
    """The GPU's schedule with its running leased jobs (and those still to show, if `pending`).

    `expected`: as the jobs are expected to end (Retry-After), not as slots are counted.
    `shared_from`: another of this sample's schedules, whose worked-out responses it reuses.
    """
    forecast = outlook.forecast
    learned = outlook.learned
    job_power_w = learned.job_power_w
    load = learned.load
    if (
        job_power_w is None
        or job_power_w <= 0
        or load is None
        or forecast.margin_at is None
        or forecast.response is None
        or not forecast.path_c
    ):
        return None
    limit_w = load.power_limit_w
    at_limit = limit_w is not None and load.power_w is not None and load.power_w >= AT_LIMIT_RATIO * limit_w
    moment = learned.readings.moment
    steps = lease_steps(
        on_gpu.running,
        on_gpu.pending if pending else (),
        lambda lease: moment.durations.end_at(lease, moment.now, EXPECTED_SHARE if expected else None),
        moment.now,
        job_power_w=job_power_w,
        headroom_w=forecast.headroom_w,
        at_limit=at_limit,
    )
    return Schedule(forecast, steps, job_power_w, safe=not expected, shared_from=shared_from)


def _counted(  # noqa: PLR0913 - the two schedules, and what each class plans with
    forecast: Forecast,
    standing: Schedule,
    schedule: Schedule,
    plans: dict[PriorityClass, JobPlan],
    *,
    pending: int,
    config: PolicyConfig,
) -> tuple[Slots, Slots]:
    """Each class's capacity (without the leased jobs still to show) and slots, paid work first."""
    most = config.max_slots
    capacity: list[int] = []
    slots: list[int] = []
    for cls in PriorityClass:
        guard_c = config.guard_c(cls)
        if capped_safe(forecast, guard_c):
            cap, free = most, max(0, most - pending)
        else:
            duration = plans[cls].seconds
            cap = _whole(standing.jobs_fitting(guard_c, duration), most)
            free = cap if standing is schedule else _whole(schedule.jobs_fitting(guard_c, duration), most)
        if capacity:
            cap, free = min(cap, capacity[-1]), min(free, slots[-1])
        capacity.append(cap)
        slots.append(free)
    return Slots(*capacity), Slots(*slots)


def _whole(jobs: float, most: int) -> int:
    """Whole jobs that fit, in [0, most]."""
    if jobs >= most:
        return most
    return max(0, math.floor(jobs + 1e-9))


def _waits(
    schedule: Schedule | None,  # as expected (_schedule's `expected`)
    slots: Slots,
    plans: dict[PriorityClass, JobPlan],
    config: PolicyConfig,
    interval_s: float,
) -> tuple[tuple[PriorityClass, float | None], ...]:
    """Per class, seconds until one more job of its plan fits above its guard, its slots started now.

    None: not within the Retry-After range. Classes that plan alike (the same duration and slots
    started) share one look along the schedule, which tells each its wait by its guard.
    """
    if schedule is None:
        return tuple((cls, None) for cls in PriorityClass)
    ends = [at for at, change_w in schedule.steps if change_w < 0 and 0 < at < WAIT_OFFSETS_S[-1]]
    if not ends:
        schedule = schedule.with_one_ending_now()
    candidates = sorted({*WAIT_OFFSETS_S, *ends})
    waits: dict[PriorityClass, float | None] = dict.fromkeys(PriorityClass)
    groups: dict[tuple[float | None, int], list[PriorityClass]] = {}
    for cls in PriorityClass:
        if slots.of(cls) >= config.max_slots:
            # max_slots is a cap, not the heat's: the next decision offers slots again.
            waits[cls] = interval_s
            continue
        groups.setdefault((plans[cls].seconds, slots.of(cls)), []).append(cls)
    for (duration, started), classes in groups.items():
        guards = {cls: config.guard_c(cls) for cls in classes}
        for wait_s in candidates:
            lowest_c = schedule.lowest_from(wait_s, duration, started, min(guards.values()))
            for cls in [cls for cls, guard_c in guards.items() if lowest_c >= guard_c]:
                waits[cls] = wait_s + interval_s
                del guards[cls]
            if not guards:
                break
    return tuple(waits.items())
