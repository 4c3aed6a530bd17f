"""Each class's planned job duration (learned, else configured, else unknown); when jobs end; deadlines."""

from __future__ import annotations

import math

import pytest

from gpuwatch.policy.config import PolicyConfig, PolicyConfigError
from gpuwatch.policy.decision import PriorityClass
from gpuwatch.policy.durations import (
    LEARN_AFTER,
    LEARN_FROM,
    DurationBasis,
    JobPlan,
    deadline_s,
    planned,
    quantile,
    requested_s,
)
from gpuwatch.policy.leases import Lease


class TestPlanned:
    """Learned beats configured beats unknown; the cap holds for all."""

    def test_unknown_without_releases_or_settings(self):
        plans = planned({}, PolicyConfig())
        assert {plan.basis for _, plan in plans.plans} == {DurationBasis.UNKNOWN}
        assert plans.plan(PriorityClass.DEFAULT).seconds is None

    def test_configured_per_class(self):
        plans = planned({}, PolicyConfig(job_seconds={"sheddable": 12.0}))
        assert plans.plan(PriorityClass.SHEDDABLE).seconds == 12.0
        assert plans.plan(PriorityClass.DEFAULT).basis is DurationBasis.UNKNOWN

    def test_learned_once_enough_releases(self):
        config = PolicyConfig(job_seconds={"default": 30.0})
        few = planned({PriorityClass.DEFAULT: (8.0,) * (LEARN_AFTER - 1)}, config)
        assert few.plan(PriorityClass.DEFAULT).basis is DurationBasis.CONFIGURED
        enough = planned({PriorityClass.DEFAULT: (8.0,) * LEARN_AFTER}, config)
        assert enough.plan(PriorityClass.DEFAULT) == JobPlan(8.0, DurationBasis.LEARNED)

    def test_a_high_quantile_of_the_recent_ones(self):
        old = (100.0,) * 50
        recent = tuple(float(s) for s in range(1, LEARN_FROM + 1))
        plan = planned({PriorityClass.DEFAULT: old + recent}, PolicyConfig()).plan(PriorityClass.DEFAULT)
        assert plan.seconds == pytest.approx(quantile(recent, 0.9))
        assert plan.seconds < 100.0

    def test_capped_by_max_job_s(self):
        config = PolicyConfig(max_job_s=20.0, job_seconds={"critical": 50.0})
        plans = planned({PriorityClass.DEFAULT: (90.0,) * LEARN_AFTER}, config)
        assert plans.plan(PriorityClass.DEFAULT).seconds == 20.0
        assert plans.plan(PriorityClass.CRITICAL).seconds == 20.0
        assert requested_s(45.0, config) == 20.0


class TestEnds:
    """When a running leased job is planned to stop: given its age, by what the class's jobs did."""

    def test_a_young_job_is_planned_at_the_quantile(self):
        durations = planned({PriorityClass.DEFAULT: tuple(float(s) for s in range(1, 11))}, PolicyConfig())
        lease = Lease(1, 100.0, PriorityClass.DEFAULT, 9.1, 200.0)
        assert durations.end_at(lease, 100.5) == pytest.approx(100.0 + 9.1)

    def test_a_job_that_outlived_most_is_planned_by_the_longer_ones(self):
        longer = tuple(float(s) for s in range(30, 40))
        held = (*(float(s) for s in range(1, 11)), *longer)
        durations = planned({PriorityClass.DEFAULT: held}, PolicyConfig())
        lease = Lease(1, 100.0, PriorityClass.DEFAULT, durations.plan(PriorityClass.DEFAULT).seconds, 200.0)
        # At 10.5 s old it has outlived 1..10 s: it is planned at the 0.9 quantile of 30..39 s.
        assert durations.end_at(lease, 110.5) == pytest.approx(100.0 + quantile(longer, 0.9))
        assert durations.end_at(lease, 141.0) == math.inf  # older than every one: it runs on

    def test_a_tail_of_too_few_held_times_is_not_counted_on(self):
        # Nine held times longer than its age say little of where a 0.9 quantile lies: about one
        # job in ten outlives them all. It runs on until released; the median (Retry-After) needs two.
        held = (*(float(s) for s in range(1, 11)), *(float(s) for s in range(31, 40)))
        durations = planned({PriorityClass.DEFAULT: held}, PolicyConfig())
        lease = Lease(1, 100.0, PriorityClass.DEFAULT, durations.plan(PriorityClass.DEFAULT).seconds, 200.0)
        assert durations.end_at(lease, 110.5) == math.inf
        assert durations.end_at(lease, 110.5, 0.5) == pytest.approx(100.0 + quantile(held[10:], 0.5))
        assert durations.end_at(lease, 138.5, 0.5) == math.inf  # older than all but one: 39 s

    def test_a_requested_or_configured_end_holds_until_it_passes(self):
        durations = planned({PriorityClass.DEFAULT: (5.0,) * LEARN_AFTER}, PolicyConfig())
        said = Lease(1, 100.0, PriorityClass.DEFAULT, 20.0, 130.0, requested=True)
        assert durations.end_at(said, 110.0) == 120.0
        assert durations.end_at(said, 121.0) == math.inf
        unknown = Lease(2, 100.0, PriorityClass.DEFAULT, None, 160.0)
        assert durations.end_at(unknown, 101.0) == math.inf


class TestDeadline:
    """A lease ends at its expected end plus the grace; of unknown duration, after the horizon."""

    def test_grace(self):
        config = PolicyConfig(lease_grace_ratio=0.5, lease_grace_min_s=5.0)
        assert deadline_s(40.0, config) == 60.0
        assert deadline_s(4.0, config) == 9.0
        assert deadline_s(40.0, PolicyConfig()) == 80.0  # twice the plan, by default
        assert deadline_s(None, config) == config.horizon_s


class TestConfig:
    """job_seconds is a table by class; bad entries are named."""

    def test_from_a_toml_table(self):
        config = PolicyConfig.from_mapping({"job_seconds": {"default": 10, "critical": 8.5}})
        assert config.job_seconds_for(PriorityClass.CRITICAL) == 8.5
        assert config.job_seconds_for(PriorityClass.SHEDDABLE) is None

    @pytest.mark.parametrize(
        ("value", "named"),
        [
            ({"premium": 10}, "job_seconds.premium"),
            ({"default": 0}, "job_seconds.default"),
            ({"default": "ten"}, "job_seconds.default"),
            (10, "job_seconds"),
        ],
    )
    def test_bad_values_are_named(self, value, named):
        with pytest.raises(PolicyConfigError) as caught:
            PolicyConfig.from_mapping({"job_seconds": value})
        assert named in str(caught.value)
