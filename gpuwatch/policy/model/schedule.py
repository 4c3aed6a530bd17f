"""The power schedule of one GPU: its margin ahead, with the jobs its leases plan to start and end.

DESIGN §2, "Jobs end": the forecast's path at present power (forecast.py) moved by each step in
power the leases plan,

    margin(h) = path(h) - Σ_j δ_j · G(h - t_j)

with δ_j the change in power planned t_j seconds from now (W) and G the model's step response
(°C per W, 0 before the step). A running job's lease plans a fall of ΔP_job at its planned end;
a lease whose job the power does not show yet plans a rise now and a fall at its end; a new job
of a class is a pulse of ΔP_job from now until the class's expected duration. A job of unknown
duration never ends. A lease the power never showed starting stops counting once its job should
have ended. The enforced power limit caps the rises: at the limit more jobs draw no
more. A GPU held at its limit hides how much its jobs would draw, so there the first job
ending is planned to give nothing back.

A pulse's cost peaks when it ends (the die and the sink both cool from then on), so the margin
is looked at where the horizon's shares fall (forecast.HORIZON_SHARES), at each planned step and
at the end of each job being planned. A job longer than the horizon is looked after to its end:
the heat it commits lasts that long. Pure: a `Schedule` remembers the margins it has worked
out, for the slots and waits of every class to share.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

from gpuwatch.policy.leases import Lease
from gpuwatch.policy.model.prediction import Forecast

Step = tuple[float, float]  # (seconds from now, change in power, W)


def lease_steps(  # noqa: PLR0913 - the leases, when they end, and the power they are planned in
    running: Iterable[Lease],
    pending: Iterable[Lease],
    end_at: Callable[[Lease], float],
    now: float,
    *,
    job_power_w: float,
    headroom_w: float | None,
    at_limit: bool,
) -> tuple[Step, ...]:
    """The steps in power the leases plan, capped at the enforced limit, in time order.

    `end_at` says when a leased job is planned to stop (monotonic s; inf: not within the horizon).
    """
    changes: list[Step] = []
    for lease in running:
        end = end_at(lease) - now
        if 0 < end < math.inf:
            changes.append((end, -job_power_w))
    for lease in pending:
        end = end_at(lease) - now
        if end == math.inf and lease.expected_s is not None:
            # Past its end and never seen starting: its job started behind another's end (and
            # is in the present power), never started, or is over; it adds nothing any more.
            continue
        changes.append((0.0, job_power_w))
        if 0 < end < math.inf:
            changes.append((end, -job_power_w))
    if not changes:
        return ()
    changes.sort()
    cap_w = math.inf if headroom_w is None else headroom_w
    hidden_w = job_power_w if at_limit else 0.0
    shown_w = min(cap_w, hidden_w)
    level_w = 0.0
    planned_w = 0.0  # the capped level the steps so far add up to
    steps: list[Step] = []
    for at, change_w in changes:
        level_w += change_w
        step_w = min(cap_w, hidden_w + level_w) - shown_w - planned_w
        if step_w == 0.0:
            continue
        planned_w += step_w
        if steps and steps[-1][0] == at:
            steps[-1] = (at, steps[-1][1] + step_w)
        else:
            steps.append((at, step_w))
    return tuple(step for step in steps if step[1] != 0.0)


class Schedule:
    """One GPU's margin ahead under its leases' steps; the cost of more jobs on top, °C.

    `safe` (what slots are counted with) does not count on the die's share of a planned fall:
    when a job will really stop is known only to seconds, and the die gives back its few degrees
    within a fraction of one, so a job running a little past its plan would leave the margin
    that much lower than planned, at once. The readings show the die's fall as soon as it comes.
    The slow node's share, which builds over minutes, is planned: a few seconds either way move
    it by little. Not `safe` (what Retry-After is read from), a planned fall gives back all of it:
    that is when a slot is expected back.
    """

    def __init__(
        self,
        forecast: Forecast,
        steps: tuple[Step, ...],
        job_power_w: float,
        *,
        safe: bool = True,
        shared_from: Schedule | None = None,
    ) -> None:
        """`shared_from`: a schedule of the same GPU and sample whose worked-out responses this one reuses."""
        if forecast.margin_at is None or forecast.response is None:
            raise ValueError("a schedule needs a forecast path and a step response")
        self._forecast = forecast
        self._margin_at = forecast.margin_at
        self._response = forecast.start_c_per_w or forecast.response.step_response_c_per_w
        own = forecast.response
        self._fall = own.slow_response_c_per_w if safe else own.step_response_c_per_w
        self.safe = safe
        self._offsets = forecast.offsets_s
        self.horizon_s = forecast.offsets_s[-1]
        self.steps = steps
        self.job_power_w = job_power_w
        self._margins: dict[float, float] = {}
        shared = shared_from.worked if shared_from is not None else None
        # The step responses do not depend on the steps: a sample's schedules work each out once.
        self.worked: _Worked = (
            shared
            if shared is not None and shared.serves(self._response, forecast, job_power_w)
            else _Worked(self._response, forecast, job_power_w)
        )
        self._responses = self.worked.rises
        self._paths = self.worked.paths
        falls: dict[float, float] = {}
        pulses: dict[float | None, list[Step]] = {}
        self._falls, self._pulses = self.worked.by_safety.setdefault(safe, (falls, pulses))

    def with_one_ending_now(self) -> Schedule:
        """This schedule with one more job's power gone from now: a running job nothing leased ends."""
        steps = ((0.0, -self.job_power_w), *self.steps)
        return Schedule(self._forecast, steps, self.job_power_w, safe=self.safe, shared_from=self)

    def _rise(self, seconds: float) -> float:
        """The step response after `seconds` (0 before the step), °C per W."""
        return _once(self._responses, self._response, seconds)

    def _fall_back(self, seconds: float) -> float:
        """What a planned fall gives back after `seconds`, °C per W (see the class)."""
        return _once(self._falls, self._fall, seconds)

    def margin_c(self, h: float) -> float:
        """The planned margin `h` seconds from now, before any job not yet admitted, °C."""
        found = self._margins.get(h)
        if found is None:
            path_c = self._paths.get(h)
            if path_c is None:
                path_c = self._paths[h] = self._margin_at(h)
            found = path_c - sum(
                [
                    change * (self._rise(h - at) if change > 0 else self._fall_back(h - at))
                    for at, change in self.steps
                ]
            )
            self._margins[h] = found
        return found

    def pulse_c(self, h: float, start: float, duration: float | None) -> float:
        """What one job started `start` s from now for `duration` s (None: for good) costs at `h`, °C."""
        on = h - start
        if on <= 0:
            return 0.0
        cost = self._rise(on)
        if duration is not None and on > duration:
            cost -= self._fall_back(on - duration)
        return self.job_power_w * cost

    def window_s(self, duration: float | None) -> float:
        """How far a job of `duration` is looked after: the horizon, or its whole run if longer, s.

        A job started now commits its heat until it ends: one longer than the horizon still
        heats the GPU at its end, and a heat sink that takes minutes is hottest then.
        """
        return self.horizon_s if duration is None else max(self.horizon_s, duration)

    def offsets(self, duration: float | None) -> list[float]:
        """Where a job of `duration` is looked at, s after it starts.

        The horizon's shares and its end, and past the horizon every half horizon to the end of
        a longer job.
        """
        offsets = set(self._offsets)
        if duration is not None:
            offsets.add(duration)
            beyond = self.horizon_s * 1.5
            while beyond < duration:
                offsets.add(beyond)
                beyond += self.horizon_s / 2
        return sorted(offsets)

    def points(self, start: float, duration: float | None) -> list[float]:
        """Where the margin is looked at for a job started `start` s from now, over its window from then."""
        end = start + self.window_s(duration)
        points = {start + offset for offset in self.offsets(duration)}
        points.update(at for at, _ in self.steps if start < at < end)
        return sorted(points)

    def jobs_fitting(self, guard_c: float, duration: float | None) -> float:
        """How many jobs of `duration` started now keep the margin at or above `guard_c` (a real number).

        Negative when the planned margin itself falls below the guard.
        """
        fits = math.inf
        for h in self.points(0.0, duration):
            room_c = self.margin_c(h) - guard_c
            if room_c < 0:
                return min(fits, room_c)
            cost_c = self.pulse_c(h, 0.0, duration)
            if cost_c > 0:
                fits = min(fits, room_c / cost_c)
        return fits

    def lowest_c(self, duration: float | None, jobs: int) -> float:
        """The lowest planned margin over the horizon with `jobs` more of `duration` started now, °C.

        The power limit caps what they add: at the limit, more jobs draw no more.
        """
        cap_w = self._forecast.headroom_w
        drawn = jobs if cap_w is None else min(float(jobs), cap_w / self.job_power_w)
        return min(
            [self.margin_c(h) - drawn * self.pulse_c(h, 0.0, duration) for h in self.points(0.0, duration)]
        )

    def lowest_from(self, start: float, duration: float | None, started: int, floor_c: float) -> float:
        """The lowest margin over one horizon from `start` s on with one more job started then.

        `started` jobs of `duration` start now; the job started at `start` lasts `duration` too.
        Stops at the first margin below `floor_c` (returning it): the caller only needs to know.
        """
        lowest = math.inf
        for offset, cost_c in self._pulse(duration):
            h = start + offset
            margin_c = self.margin_c(h) - cost_c
            if started:
                margin_c -= started * self.pulse_c(h, 0.0, duration)
            if margin_c < floor_c:
                return margin_c
            lowest = min(lowest, margin_c)
        end = start + self.window_s(duration)
        for at, _ in self.steps:
            if start < at < end:
                margin_c = self.margin_c(at) - self.pulse_c(at, start, duration)
                margin_c -= started * self.pulse_c(at, 0.0, duration)
                if margin_c < floor_c:
                    return margin_c
                lowest = min(lowest, margin_c)
        return lowest

    def _pulse(self, duration: float | None) -> list[tuple[float, float]]:
        """(offset, cost °C) of one job of `duration` where it is looked at (`offsets`), from its start."""
        found = self._pulses.get(duration)
        if found is None:
            found = self._pulses[duration] = [
                (offset, self.pulse_c(offset, 0.0, duration)) for offset in self.offsets(duration)
            ]
        return found


class _Worked:
    """The responses a sample's schedules worked out, by seconds after the step, shared among them.

    A planned fall's response depends on `safe` as well: those are kept per `safe`.
    """

    def __init__(self, rise: Callable[[float], float], forecast: Forecast, job_power_w: float) -> None:
        self.rise, self.forecast, self.job_power_w = rise, forecast, job_power_w
        self.rises: dict[float, float] = {}
        self.paths: dict[float, float] = {}  # the forecast's margin at present power
        self.by_safety: dict[bool, tuple[dict[float, float], dict[float | None, list[Step]]]] = {}

    def serves(self, rise: Callable[[float], float], forecast: Forecast, job_power_w: float) -> bool:
        """Whether a schedule of `forecast` with this rise and job power may reuse what was worked out."""
        return forecast is self.forecast and rise == self.rise and job_power_w == self.job_power_w


def _once(worked_out: dict[float, float], response: Callable[[float], float], seconds: float) -> float:
    """`response(seconds)` (0 before the step), each worked out once and kept in `worked_out`."""
    if seconds <= 0:
        return 0.0
    found = worked_out.get(seconds)
    if found is None:
        found = worked_out[seconds] = response(seconds)
    return found
