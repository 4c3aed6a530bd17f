"""How long each class's jobs are planned to run: learned from released leases, else configured, else unknown.

DESIGN §2: a request may say how long its job runs (`expected_s`, capped by `max_job_s`); else
the class's duration is learned on this node from the leases released lately: a high quantile
of their held times (`job_seconds_quantile`), so that a long job is the exception and not the
plan; else the configured `job_seconds` for the class; else it is unknown, and a job lasts the
whole horizon (a step, as before leases).

A job already running is planned by what it has outlived (`JobDurations.end_at`): of the jobs
that reach a class's 0.9 quantile most run past it, so a job of that age is planned at the same
quantile of the held times longer than it. Where fewer than 1 / (1 - 0.9) = 10 of them are
longer, it runs on until released: of its class's last 64 jobs, a job past the longest few has
about one chance in (few + 1) to outlive them all, and a quantile of two or three held times is
their longest. Measured on the wide family of plants (`bench/targets.py --plants wide`): a
20 s job of lognormal length at 36 s, planned to end at 40 s from the few held times longer
than it, ran past 45 s and put a fast board into slowdown.

Why the 0.9 quantile of the last 64 releases, with 8 needed (`gpuwatch simulate`, surge and
viral-launch, seeds 1-3, 20 s jobs of lognormal length, coefficient of variation 0.5; a run
"slowed" when any GPU spent a second in thermal slowdown):
- 0.5 (the median): 0.1-2.1 % more jobs than 0.9, and slowed 2 of 6 runs;
- 0.75: -0.2 to +1.0 % (within the seeds' noise), and slowed 1 of 6;
- 0.9: slowed none of 6 (nor of 12 more at boards drawn ±30 %);
- 0.99: 0.2-1.6 % fewer jobs than 0.9 (measured with the guards of steps): the plan is nearly
  twice the typical job, and the slots it leaves are close to those of steps.
Once the die's share of a planned end is no longer counted on (model/schedule.py), 0.6 and 0.75
slowed none of 9 runs of surge, viral-launch and long-tail either, within -1.0 to +1.7 % of
0.9's jobs: the seeds' noise. 0.9 stays, on the side where its errors are cheap.
A plan that errs long costs the sink's share of a few seconds of heat; one that errs short costs
it too, and more runs near the guards. 64 releases follow a change of workload within a minute
on a busy node; 8 are enough to place the bulk of a distribution.
"""

from __future__ import annotations

import bisect
import enum
import math
from collections.abc import Mapping
from dataclasses import dataclass, field

from gpuwatch.policy.config import PolicyConfig
from gpuwatch.policy.decision import PriorityClass
from gpuwatch.policy.leases import Lease

LEARN_FROM = 64  # the most recent releases of a class that the quantile is taken over
LEARN_AFTER = 8  # releases of a class needed before its duration is learned


class DurationBasis(enum.StrEnum):
    """Where a planned job duration comes from (DESIGN §2, in order of precedence)."""

    REQUEST = "request"  # the admit request said
    LEARNED = "learned"  # the class's recent released leases
    CONFIGURED = "configured"  # policy.job_seconds
    UNKNOWN = "unknown"  # nothing: a job lasts the whole horizon


@dataclass(frozen=True, slots=True)
class JobPlan:
    """The duration a class's jobs are planned with, and its basis."""

    seconds: float | None  # None: unknown
    basis: DurationBasis


Plans = tuple[tuple[PriorityClass, JobPlan], ...]
UNKNOWN_PLAN = JobPlan(None, DurationBasis.UNKNOWN)


def quantile(values: tuple[float, ...], share: float, *, ordered: bool = False) -> float:
    """The `share` quantile of `values` (not empty; already sorted if `ordered`), interpolated."""
    if not ordered:
        values = tuple(sorted(values))
    position = share * (len(values) - 1)
    low = math.floor(position)
    high = min(low + 1, len(values) - 1)
    return values[low] + (values[high] - values[low]) * (position - low)


@dataclass(frozen=True, slots=True)
class JobDurations:
    """What the node knows of its jobs' durations: each class's plan, and the held times it learned from."""

    plans: Plans = ()
    # Per class whose duration is learned: its recent held times, sorted, s.
    learned_s: Mapping[PriorityClass, tuple[float, ...]] = field(default_factory=dict)
    share: float = 0.9  # the quantile planned with

    def plan(self, priority: PriorityClass) -> JobPlan:
        """The plan for a new job of `priority`."""
        return plan_of(self.plans, priority)

    def end_at(self, lease: Lease, now: float, share: float | None = None) -> float:
        """When a leased job running at `now` is planned to stop (monotonic s; inf: not before its deadline).

        `share`: the quantile to plan at (None: the configured one); the median is what a slot
        is expected back by, for Retry-After.

        A job of a class whose durations are learned has outlived some of them: it is planned
        at the same quantile of the held times longer than its age, so that a job near its
        class's usual length is not counted on to stop on time just because most do (of the
        jobs that reach the 0.9 quantile, most run past it). Older than every one, it is
        counted as running, and so is one that fewer than 1 / (1 - share) held times outlived.
        A duration the request gave, or the configured one, is its end;
        past it, the job counts as running until its lease's deadline, and so here for good.
        """
        if lease.expected_s is None:
            return math.inf
        age_s = now - lease.taken_at
        learned = None if lease.requested else self.learned_s.get(lease.priority)
        if learned:
            longer = learned[bisect.bisect_right(learned, age_s) :]
            share = self.share if share is None else share
            # A quantile of fewer held times than 1 / (1 - share) is their longest or near it,
            # and a job has about 1 chance in (count + 1) to outlive all of them: too few to
            # say where its tail ends.
            if len(longer) * (1.0 - share) < 1.0 - 1e-9:
                return math.inf
            return lease.taken_at + quantile(longer, share, ordered=True)
        end = lease.taken_at + lease.expected_s
        return end if end > now else math.inf


def planned(held_s: Mapping[PriorityClass, tuple[float, ...]], config: PolicyConfig) -> JobDurations:
    """Each class's planned duration on this node, from its recent released leases' held times."""
    plans = []
    learned_s = {}
    for cls in PriorityClass:
        recent = held_s.get(cls, ())[-LEARN_FROM:]
        configured = config.job_seconds_for(cls)
        if len(recent) >= LEARN_AFTER:
            ordered = tuple(sorted(min(s, config.max_job_s) for s in recent))
            learned_s[cls] = ordered
            seconds = quantile(ordered, config.job_seconds_quantile, ordered=True)
            plan = JobPlan(seconds, DurationBasis.LEARNED)
        elif configured is not None:
            plan = JobPlan(min(configured, config.max_job_s), DurationBasis.CONFIGURED)
        else:
            plan = UNKNOWN_PLAN
        plans.append((cls, plan))
    return JobDurations(tuple(plans), learned_s, config.job_seconds_quantile)


NO_DURATIONS = JobDurations()


def plan_of(plans: Plans, priority: PriorityClass) -> JobPlan:
    """The plan for `priority` (unknown if it has none)."""
    return next((plan for cls, plan in plans if cls is priority), UNKNOWN_PLAN)


def requested_s(expected_s: float, config: PolicyConfig) -> float:
    """The duration an admit request gave, as planned with: capped by `max_job_s`, s."""
    return min(expected_s, config.max_job_s)


def deadline_s(expected_s: float | None, config: PolicyConfig) -> float:
    """Seconds after it is taken that a lease ends if not released: its expected end plus the grace.

    A job of unknown duration: the horizon, over which it was planned as running. The grace
    (`lease_grace_ratio` of the plan, at least `lease_grace_min_s`) makes the deadline twice the
    plan by default: a job planned at the 0.9 quantile runs past twice that rarely (lognormal lengths:
    1 in 300 at a coefficient of variation of 0.5, 1 in 40 at 1.5), so an expired lease on the
    dashboard is a gateway that forgot to release, not a long job. Planning does not wait for
    the deadline (an overdue job simply counts as running), and a release after it still
    teaches the duration; half the plan expired 1 in 13 released leases in the closed loop.
    """
    if expected_s is None:
        return config.horizon_s
    return expected_s + max(config.lease_grace_min_s, config.lease_grace_ratio * expected_s)
