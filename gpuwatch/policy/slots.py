"""The slots stage: how many more jobs of each class may start on a GPU now, and when a class gets one back.

A class's slots are the largest k >= 0 such that the forecast margin over the horizon, with k
more jobs started now on top of those already reserved, stays at or above the class's guard at
every point looked at (forecast.HORIZON_SHARES):

    path(h) - min(k * ΔP_job, headroom_w) * G(h) >= guard    for every h in [0, H]

with path(h) the margin at present power and G(h) the model's step response (°C per W). The
power limit caps what jobs can add: a GPU whose path stays above the guard even at its limit is
offered `max_slots`. No class has a slot at margin <= 0, in SW or HW thermal slowdown, or at
memory margin <= 0. Guards are ordered (critical <= default <= sheddable), so `critical` has at
least the slots of `default`, and `default` at least those of `sheddable`.

A class without a slot gets one back when the margin has risen by what it lacks. Retry-After is
the first time the forecast shows that, with one job's power gone (a running job ending: what a
held-back GPU does next), plus one sampling interval for the samples to show it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from gpuwatch.policy import reasons
from gpuwatch.policy.decision import NO_SLOTS, PriorityClass, Slots
from gpuwatch.policy.forecast import Forecast, Outlook

# Where a wait for a slot is looked for, s after now: the Retry-After range, finer near now.
WAIT_OFFSETS_S = (1.0, 2.0, 3.0, 5.0, 7.0, 10.0, 15.0, 20.0, 30.0, 45.0, 60.0, 90.0, 120.0)


@dataclass(frozen=True, slots=True)
class Headroom:
    """The slots stage's output for one GPU."""

    outlook: Outlook
    capacity: Slots  # jobs that may start now if nothing were reserved: the GPU's thermal standing
    slots: Slots  # what admission reads: the capacity less the reserved jobs
    reserved: int
    blocked: str | None  # the reason code that leaves no class a slot, if any
    headroom_c: float | None  # margin above the `default` guard over the horizon with one more job
    # Per class, until it has a slot beyond those offered now (for a class without: until it has one).
    waits_s: tuple[tuple[PriorityClass, float | None], ...]


def extra_jobs(forecast: Forecast, job_power_w: float, guard_c: float) -> float:
    """How many extra jobs fit over the horizon above `guard_c` (a real number; inf: the limit caps first).

    Negative when even today's power leaves the path below the guard.
    """
    if forecast.response is None or not forecast.path_c:
        return -math.inf
    cap_w = forecast.headroom_w
    fits = math.inf
    capped_safe = True
    for margin_c, cost_c_per_w in zip(forecast.path_c, forecast.cost_c_per_w, strict=True):
        room_c = margin_c - guard_c
        if room_c < 0:
            return min(fits, room_c)  # the path itself falls below the guard
        if cost_c_per_w <= 0:
            continue
        fits = min(fits, room_c / (cost_c_per_w * job_power_w))
        if cap_w is None or room_c < cost_c_per_w * cap_w:
            capped_safe = False
    return math.inf if capped_safe else fits


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
    """The slots stage: slots, reserved jobs, the headroom for pressure and the wait for a slot, per class."""
    moment = outlook.learned.readings.moment
    config = moment.config
    forecast = outlook.forecast
    learned = outlook.learned
    reserved = learned.reserved.reserved
    job_power_w = learned.job_power_w
    readings = learned.readings
    if not readings.judged:
        # FAILED: out. UNKNOWN: nothing to forecast from; a fresh reading is due within an
        # interval. Failing open, an UNKNOWN GPU is offered every slot.
        open_ = readings.unknown is not None and not readings.failures and config.fail_open
        slots = Slots(config.max_slots, config.max_slots, config.max_slots) if open_ else NO_SLOTS
        wait = None if readings.failures else moment.interval_s
        return Headroom(outlook, slots, slots, 0, None, None, tuple((cls, wait) for cls in PriorityClass))
    blocked = blocked_reason(outlook)
    if blocked is not None or job_power_w is None or job_power_w <= 0 or not forecast.path_c:
        waits = tuple(
            (cls, _wait_s(forecast, job_power_w, config.guard_c(cls), reserved, moment.interval_s))
            for cls in PriorityClass
        )
        return Headroom(outlook, NO_SLOTS, NO_SLOTS, reserved, blocked, None, waits)
    fits = {cls: extra_jobs(forecast, job_power_w, config.guard_c(cls)) for cls in PriorityClass}
    capacity = Slots(*(_whole(fits[cls], config.max_slots) for cls in PriorityClass))
    # Reserved jobs come off the capped count too: a GPU the power limit keeps safe still takes
    # at most max_slots jobs its readings do not show yet.
    slots = capacity.less(reserved)
    # For a class with slots: the wait for the next one once those are taken.
    waits = tuple(
        (
            cls,
            _wait_s(forecast, job_power_w, config.guard_c(cls), reserved + slots.of(cls), moment.interval_s),
        )
        for cls in PriorityClass
    )
    return Headroom(
        outlook,
        capacity,
        slots,
        reserved,
        None,
        _headroom_c(forecast, job_power_w * (reserved + 1), config.default_guard_c),
        waits,
    )


def _whole(jobs: float, most: int) -> int:
    """Whole jobs that fit, in [0, most]."""
    if jobs >= most:
        return most
    return max(0, math.floor(jobs + 1e-9))


def lowest_margin_c(forecast: Forecast, extra_w: float) -> float | None:
    """The lowest margin over the horizon with `extra_w` more drawn from now (capped at the limit), °C."""
    if forecast.response is None or not forecast.path_c:
        return None
    added_w = extra_w if forecast.headroom_w is None else min(extra_w, forecast.headroom_w)
    return min(
        [
            margin_c - added_w * cost_c_per_w
            for margin_c, cost_c_per_w in zip(forecast.path_c, forecast.cost_c_per_w, strict=True)
        ]
    )


def _headroom_c(forecast: Forecast, extra_w: float, guard_c: float) -> float | None:
    """The lowest margin over the horizon with `extra_w` more drawn from now, less `guard_c`, °C."""
    lowest = lowest_margin_c(forecast, extra_w)
    return None if lowest is None else lowest - guard_c


def _wait_s(
    forecast: Forecast, job_power_w: float | None, guard_c: float, reserved: int, interval_s: float
) -> float | None:
    """Seconds until a class of `guard_c` gets a slot, one job's power gone from now; None: not in 120 s."""
    response = forecast.response
    if response is None or not forecast.path_c or job_power_w is None or job_power_w <= 0:
        return None
    lacking_c = -(_headroom_c(forecast, job_power_w * (reserved + 1), guard_c) or 0.0)
    if lacking_c <= 0:
        return interval_s
    now_c = forecast.path_c[0]
    for wait_s in WAIT_OFFSETS_S:
        drift_c = _path_at(forecast, wait_s) - now_c
        if job_power_w * response.step_response_c_per_w(wait_s) + drift_c >= lacking_c:
            return wait_s + interval_s
    return None


def _path_at(forecast: Forecast, seconds: float) -> float:
    """The margin path at `seconds` (held at its last point past the horizon), °C."""
    offsets, path = forecast.offsets_s, forecast.path_c
    if seconds >= offsets[-1]:
        return path[-1]
    for (h0, m0), (h1, m1) in zip(
        zip(offsets, path, strict=True), zip(offsets[1:], path[1:], strict=True), strict=False
    ):
        if h0 <= seconds <= h1:
            return m0 + (m1 - m0) * (seconds - h0) / (h1 - h0)
    return path[-1]
