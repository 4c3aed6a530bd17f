"""The jobs of a run: Poisson arrivals that follow the profile, lengths with the asked mean and spread."""

from __future__ import annotations

import itertools
import random
import statistics

import pytest

from gpuwatch.simulate.scenario import ArrivalProfile, JobSpec
from gpuwatch.simulate.workload import arrival_times, draw_jobs


class TestArrivals:
    """Arrivals are a Poisson process: counts follow the rate's integral, gaps are exponential."""

    def test_count_follows_the_profile(self):
        profile = ArrivalProfile(2.0, ((0.0, 1.0), (1000.0, 1.0), (2000.0, 10.0)))
        times = arrival_times(profile, 3000.0, random.Random(1))
        before = sum(1 for t in times if t < 1000)
        ramp = sum(1 for t in times if 1000 <= t < 2000)
        peak = sum(1 for t in times if t >= 2000)
        # Expected 2000, 11000 and 20000; a Poisson count's spread is its square root.
        assert before == pytest.approx(2000, abs=4 * 2000**0.5)
        assert ramp == pytest.approx(11000, abs=4 * 11000**0.5)
        assert peak == pytest.approx(20000, abs=4 * 20000**0.5)

    def test_gaps_at_a_constant_rate_are_exponential(self):
        times = arrival_times(ArrivalProfile(0.5), 40_000.0, random.Random(2))
        gaps = [b - a for a, b in itertools.pairwise(times)]
        assert statistics.mean(gaps) == pytest.approx(2.0, rel=0.03)
        assert statistics.stdev(gaps) == pytest.approx(2.0, rel=0.05)

    def test_no_rate_no_arrivals(self):
        assert arrival_times(ArrivalProfile(0.0), 100.0, random.Random(3)) == []


class TestJobs:
    """Job lengths are lognormal with the asked mean and spread; each deadline follows its arrival."""

    def test_lengths(self):
        jobs = draw_jobs(
            ArrivalProfile(5.0), 4000.0, JobSpec(work_s=20.0, work_cv=0.5, deadline_s=90.0), seed=4
        )
        works = [job.work_s for job in jobs]
        assert statistics.mean(works) == pytest.approx(20.0, rel=0.03)
        assert statistics.stdev(works) / statistics.mean(works) == pytest.approx(0.5, rel=0.08)
        assert all(job.gives_up_s == job.arrival_s + 90.0 for job in jobs)
        assert [job.number for job in jobs] == list(range(len(jobs)))

    def test_no_spread_means_equal_lengths(self):
        jobs = draw_jobs(ArrivalProfile(1.0), 100.0, JobSpec(work_s=7.0, work_cv=0.0), seed=5)
        assert {job.work_s for job in jobs} == {7.0}

    def test_same_seed_same_jobs_and_lengths_do_not_move_arrivals(self):
        profile = ArrivalProfile(1.0)
        first = draw_jobs(profile, 500.0, JobSpec(work_cv=0.5), seed=6)
        assert first == draw_jobs(profile, 500.0, JobSpec(work_cv=0.5), seed=6)
        other = draw_jobs(profile, 500.0, JobSpec(work_cv=1.0), seed=6)
        assert [job.arrival_s for job in other] == [job.arrival_s for job in first]
