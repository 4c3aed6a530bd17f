"""A run's jobs, drawn once from the seed: Poisson arrivals by profile, lognormal lengths, classes by mix."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from gpuwatch.policy.decision import PriorityClass
from gpuwatch.simulate.scenario import ArrivalProfile, JobSpec


@dataclass(frozen=True, slots=True)
class Job:
    """One job: when it arrives, how much work it is, its class, and when its submitter stops waiting."""

    number: int  # 0, 1, ... in arrival order
    arrival_s: float  # virtual s
    work_s: float  # run time at full clocks, s; it stretches while its GPU runs slower
    gives_up_s: float  # virtual s: not started by then, it times out
    priority: PriorityClass = PriorityClass.DEFAULT


def draw_jobs(profile: ArrivalProfile, duration_s: float, spec: JobSpec, seed: int) -> tuple[Job, ...]:
    """Every job arriving in [0, `duration_s`), the same for every controller given the same seed.

    Arrival times and lengths come from separate streams, so a different length spread leaves
    the arrival times as they were.
    """
    root = random.Random(seed)  # noqa: S311 - a reproducible simulation, not cryptography
    times = arrival_times(profile, duration_s, random.Random(root.getrandbits(64)))  # noqa: S311
    lengths = random.Random(root.getrandbits(64))  # noqa: S311
    classes = random.Random(root.getrandbits(64))  # noqa: S311
    jobs = []
    for number, at_s in enumerate(times):
        work_s = _length_s(spec, lengths)
        priority = _class(spec, classes)
        jobs.append(Job(number, at_s, work_s, at_s + spec.deadline_for(priority), priority))
    return tuple(jobs)


def _class(spec: JobSpec, rng: random.Random) -> PriorityClass:
    """One job's class, drawn by the mix's shares."""
    if len(spec.mix) == 1:
        return spec.mix[0][0]
    draw = rng.random() * sum(share for _, share in spec.mix)
    for priority, share in spec.mix:
        draw -= share
        if draw < 0:
            return priority
    return spec.mix[-1][0]


def arrival_times(profile: ArrivalProfile, duration_s: float, rng: random.Random) -> list[float]:
    """A non-homogeneous Poisson process by thinning (Lewis and Shedler).

    Candidates arrive at the profile's peak rate; each is kept with probability rate(t)/peak.
    The rate is piecewise linear and never above its peak, so this is exact.
    """
    peak = profile.peak_per_s
    if peak <= 0:
        return []
    times: list[float] = []
    t_s = rng.expovariate(peak)
    while t_s < duration_s:
        if rng.random() * peak < profile.rate_at(t_s):
            times.append(t_s)
        t_s += rng.expovariate(peak)
    return times


def _length_s(spec: JobSpec, rng: random.Random) -> float:
    """One job's run time at full clocks: lognormal with the spec's mean and coefficient of variation."""
    if spec.work_cv == 0:
        return spec.work_s
    sigma2 = math.log1p(spec.work_cv**2)
    return rng.lognormvariate(math.log(spec.work_s) - sigma2 / 2, math.sqrt(sigma2))
