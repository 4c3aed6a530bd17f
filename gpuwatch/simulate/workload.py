"""The jobs of a run, drawn once from the seed: Poisson arrivals following the profile, lognormal lengths."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from gpuwatch.simulate.scenario import ArrivalProfile, JobSpec


@dataclass(frozen=True, slots=True)
class Job:
    """One job: when it arrives, how much work it is, and when its submitter stops waiting."""

    number: int  # 0, 1, ... in arrival order
    arrival_s: float  # virtual s
    work_s: float  # run time at full clocks, s; it stretches while its GPU runs slower
    gives_up_s: float  # virtual s: not started by then, it times out


def draw_jobs(profile: ArrivalProfile, duration_s: float, spec: JobSpec, seed: int) -> tuple[Job, ...]:
    """Every job arriving in [0, `duration_s`), the same for every controller given the same seed.

    Arrival times and lengths come from separate streams, so a different length spread leaves
    the arrival times as they were.
    """
    root = random.Random(seed)  # noqa: S311 - a reproducible simulation, not cryptography
    times = arrival_times(profile, duration_s, random.Random(root.getrandbits(64)))  # noqa: S311
    lengths = random.Random(root.getrandbits(64))  # noqa: S311
    return tuple(
        Job(number, at_s, _length_s(spec, lengths), at_s + spec.deadline_s)
        for number, at_s in enumerate(times)
    )


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
