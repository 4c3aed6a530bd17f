"""Tests of the Retry-After planner and of ΔP_job learning."""

from __future__ import annotations

import pytest

from gpuwatch.policy.config import PolicyConfig
from gpuwatch.policy.decision import PriorityClass, ThermalState
from gpuwatch.policy.job_power import JobPower
from gpuwatch.policy.retry import clamp, ladder_retry_afters, seconds_until
from gpuwatch.policy.states import Ladder

CONFIG = PolicyConfig()


def cool_now(_target_c: float) -> float:
    return 0.0


def never(_target_c: float) -> None:
    return None


class TestSecondsUntil:
    """The wait walks down the ladder: cooling to each leave margin, then each dwell, minus what is served."""

    def test_rest_of_the_current_dwell(self):
        ladder = Ladder(ThermalState.HOT, 0.0, leave_held_since=100.0)
        assert seconds_until(ladder, ThermalState.ELEVATED, 120.0, CONFIG, never) == 40.0

    def test_cooling_then_every_dwell(self):
        cooling = {8.0: 50.0, 13.0: 150.0, 20.0: 300.0}.get
        ladder = Ladder(ThermalState.CRITICAL, 0.0)
        assert seconds_until(ladder, ThermalState.HOT, 0.0, CONFIG, cooling) == 50.0 + 120.0
        assert seconds_until(ladder, ThermalState.ELEVATED, 0.0, CONFIG, cooling) == 170.0 + 60.0
        assert seconds_until(ladder, ThermalState.OK, 0.0, CONFIG, cooling) == 300.0 + 30.0

    def test_never_cools_enough(self):
        assert seconds_until(Ladder(ThermalState.HOT, 0.0), ThermalState.ELEVATED, 0.0, CONFIG, never) is None

    def test_retry_afters_cover_refused_classes_clamped(self):
        ladder = Ladder(ThermalState.CRITICAL, 0.0)
        assert ladder_retry_afters(ladder, 0.0, CONFIG, cool_now) == (
            (PriorityClass.CRITICAL, 120.0),
            (PriorityClass.DEFAULT, 120.0),
            (PriorityClass.SHEDDABLE, 120.0),
        )
        assert ladder_retry_afters(Ladder(ThermalState.ELEVATED, 0.0), 0.0, CONFIG, cool_now) == (
            (PriorityClass.SHEDDABLE, 30.0),
        )

    @pytest.mark.parametrize(("seconds", "clamped"), [(None, 120.0), (0.2, 1.0), (55.5, 55.5), (1e6, 120.0)])
    def test_clamp(self, seconds, clamped):
        assert clamp(seconds, CONFIG) == clamped


class TestJobPower:
    """ΔP_job is the configured value, else the median recent upward power step, else a share of the limit."""

    def test_default_is_a_share_of_the_limit(self):
        assert JobPower().estimate_w(700.0, CONFIG) == 175.0
        assert JobPower().estimate_w(None, CONFIG) is None

    def test_configured_value_wins(self):
        assert JobPower((300.0,)).estimate_w(700.0, PolicyConfig(job_power_w=120.0)) == 120.0

    def test_learns_the_median_step(self):
        power = JobPower()
        for before, after in ((100.0, 300.0), (300.0, 500.0), (200.0, 600.0)):
            power = power.observe(before, after, 700.0, clocks_free=True)
        assert power.estimate_w(700.0, CONFIG) == 200.0

    @pytest.mark.parametrize(
        ("before", "after", "clocks_free"),
        [(400.0, 410.0, True), (500.0, 700.0, True), (300.0, 500.0, False), (500.0, 300.0, True)],
    )
    def test_ignores_noise_capped_held_and_falling_steps(self, before, after, clocks_free):
        assert JobPower().observe(before, after, 700.0, clocks_free=clocks_free).steps_w == ()
