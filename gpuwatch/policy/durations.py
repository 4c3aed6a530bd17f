"""How long each class's jobs are planned to run: learned from released leases, else configured, else unknown.

DESIGN §2: a request may say how long its job runs (`expected_s`, capped by `max_job_s`); else
the class's duration is learned on this node from the leases released lately: a high quantile
of their held times, so that a long job is the exception and not the plan; else the configured
`job_seconds` for the class; else it is unknown, and a job lasts the whole horizon (a step, as
before leases).

Why the 0.9 quantile of the last 64 releases, with 8 needed (measured with `gpuwatch simulate`,
jobs of lognormal length, coefficient of variation 0.5; see docs/simulation.md): planning at the
median leaves half the jobs running past their plan, each one's heat an error the forecast did
not make room for; at the 0.99 quantile the plan is close to twice the typical job, and the
slots it leaves are the ones a forecast of steps leaves. The 0.9 quantile kept every GPU out of
slowdown with a long tail of lengths, and a job overrunning it still counts as running until its
lease's deadline (grace.py). 64 releases follow a change of workload within a minute of a busy
node's releases; 8 are enough to know the bulk of a distribution from a handful of the first jobs.
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

    def end_at(self, lease: Lease, now: float) -> float:
        """When a leased job running at `now` is planned to stop (monotonic s; inf: not before its deadline).

        A job of a class whose durations are learned has outlived some of them: it is planned
        at the same quantile of the held times longer than its age, so that a job near its
        class's usual length is not counted on to stop on time just because most do (of the
        jobs that reach the 0.9 quantile, most run past it). Older than every one, it is
        counted as running. A duration the request gave, or the configured one, is its end;
        past it, the job counts as running until its lease's deadline, and so here for good.
        """
        if lease.expected_s is None:
            return math.inf
        age_s = now - lease.taken_at
        learned = None if lease.requested else self.learned_s.get(lease.priority)
        if learned:
            longer = learned[bisect.bisect_right(learned, age_s) :]
            if not longer:
                return math.inf
            return lease.taken_at + quantile(longer, self.share, ordered=True)
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


def requested(expected_s: float, config: PolicyConfig) -> JobPlan:
    """A duration an admit request gave, capped by `max_job_s`."""
    return JobPlan(min(expected_s, config.max_job_s), DurationBasis.REQUEST)


def deadline_s(expected_s: float | None, config: PolicyConfig) -> float:
    """Seconds after it is taken that a lease ends if not released: its expected end plus the grace.

    A job of unknown duration: the horizon, over which it was planned as running.
    """
    if expected_s is None:
        return config.horizon_s
    return expected_s + max(config.lease_grace_min_s, config.lease_grace_ratio * expected_s)
