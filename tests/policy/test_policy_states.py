"""Tests of the per-GPU state machine: the state table, escalation, hysteresis and dwell."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gpuwatch.policy import reasons
from gpuwatch.policy.config import PolicyConfig
from gpuwatch.policy.decision import ThermalState
from gpuwatch.policy.states import (
    LADDER,
    Ladder,
    Observation,
    dwell_s,
    enter_reasons,
    leave_holds,
    step,
    target_level,
)

OK, ELEVATED, HOT, CRITICAL = LADDER
CONFIG = PolicyConfig()


def at_level(level: ThermalState) -> Ladder:
    return Ladder(level, since=0.0)


def hold(ladder: Ladder, obs: Observation, seconds: int, start: float = 1.0) -> list[Ladder]:
    """The ladder stepped once a second for `seconds` readings of `obs`."""
    trail = []
    for i in range(seconds):
        ladder = step(ladder, obs, start + i, CONFIG)
        trail.append(ladder)
    return trail


class TestEnterTable:
    """Each state is entered exactly at its DESIGN §2 thresholds, with the matching reason code."""

    @pytest.mark.parametrize(
        ("obs", "level", "code"),
        [
            (Observation(margin_c=15.0), OK, reasons.WITHIN_LIMITS),
            (Observation(margin_c=14.9), ELEVATED, reasons.MARGIN_BELOW_ELEVATED),
            (Observation(margin_c=30.0, predicted_margin_c=10.0), OK, reasons.WITHIN_LIMITS),
            (
                Observation(margin_c=30.0, predicted_margin_c=9.9),
                ELEVATED,
                reasons.PREDICTED_MARGIN_BELOW_ELEVATED,
            ),
            (Observation(margin_c=8.0), ELEVATED, reasons.MARGIN_BELOW_ELEVATED),
            (Observation(margin_c=7.9), HOT, reasons.MARGIN_BELOW_HOT),
            (Observation(margin_c=30.0, time_to_slowdown_s=30.0), OK, reasons.WITHIN_LIMITS),
            (Observation(margin_c=30.0, time_to_slowdown_s=29.9), HOT, reasons.TIME_TO_SLOWDOWN_SHORT),
            (Observation(margin_c=30.0, sw_thermal=True), HOT, reasons.SW_THERMAL_SLOWDOWN),
            (Observation(margin_c=0.1), HOT, reasons.MARGIN_BELOW_HOT),
            (Observation(margin_c=0.0), CRITICAL, reasons.MARGIN_EXHAUSTED),
            (Observation(margin_c=30.0, hw_thermal=True), CRITICAL, reasons.HW_THERMAL_SLOWDOWN),
            (Observation(margin_c=30.0, memory_margin_c=0.1), OK, reasons.WITHIN_LIMITS),
            (Observation(margin_c=30.0, memory_margin_c=0.0), CRITICAL, reasons.MEMORY_MARGIN_EXHAUSTED),
        ],
    )
    def test_threshold(self, obs, level, code):
        assert target_level(obs, CONFIG) is level
        if level is not OK:
            assert code in enter_reasons(level, obs, CONFIG)

    def test_thresholds_come_from_the_config(self):
        config = PolicyConfig(elevated_enter_margin_c=25.0, elevated_leave_margin_c=30.0)
        assert target_level(Observation(margin_c=20.0), config) is ELEVATED
        assert target_level(Observation(margin_c=20.0), CONFIG) is OK


class TestLeaveTable:
    """Each state is left only when its leave thresholds hold (and none of its enter conditions)."""

    @pytest.mark.parametrize(
        ("level", "obs", "holds"),
        [
            (ELEVATED, Observation(margin_c=20.0, predicted_margin_c=15.0), True),
            (ELEVATED, Observation(margin_c=19.0, predicted_margin_c=15.0), False),
            (ELEVATED, Observation(margin_c=20.0, predicted_margin_c=14.9), False),
            (ELEVATED, Observation(margin_c=20.0), False),  # no prediction yet: not proven cool
            (HOT, Observation(margin_c=13.0), True),
            (HOT, Observation(margin_c=12.9), False),
            (HOT, Observation(margin_c=20.0, sw_thermal=True), False),
            (HOT, Observation(margin_c=20.0, time_to_slowdown_s=10.0), False),
            (CRITICAL, Observation(margin_c=8.0), True),
            (CRITICAL, Observation(margin_c=7.9), False),
            (CRITICAL, Observation(margin_c=20.0, sw_thermal=True), False),
            (CRITICAL, Observation(margin_c=20.0, hw_thermal=True), False),
            (OK, Observation(margin_c=50.0), False),
        ],
    )
    def test_leave_condition(self, level, obs, holds):
        assert leave_holds(level, obs, CONFIG) is holds

    @pytest.mark.parametrize(
        ("level", "obs", "dwell"),
        [
            (ELEVATED, Observation(margin_c=20.0, predicted_margin_c=15.0), 30),
            (HOT, Observation(margin_c=13.0), 60),
            (CRITICAL, Observation(margin_c=8.0), 120),
        ],
    )
    def test_steps_down_one_level_exactly_after_the_dwell(self, level, obs, dwell):
        trail = hold(at_level(level), obs, dwell + 1)
        assert all(ladder.level is level for ladder in trail[:dwell])
        assert trail[dwell].level is LADDER[LADDER.index(level) - 1]


class TestEscalation:
    """Escalation happens within the same reading, skipping levels when the reading calls for it."""

    @pytest.mark.parametrize("start", [OK, ELEVATED, HOT])
    def test_jumps_straight_to_critical(self, start):
        ladder = step(Ladder(start, 0.0, leave_held_since=0.0), Observation(margin_c=0.0), 1.0, CONFIG)
        assert ladder == Ladder(CRITICAL, 1.0, None)

    def test_escalation_resets_the_dwell(self):
        ladder = Ladder(ELEVATED, 0.0, leave_held_since=0.0)
        assert step(ladder, Observation(margin_c=5.0), 10.0, CONFIG) == Ladder(HOT, 10.0, None)


class TestHysteresis:
    """De-escalation waits for the full dwell, restarts it on any break, and goes one level at a time."""

    def test_a_break_in_the_leave_condition_restarts_the_dwell(self):
        cool = Observation(margin_c=14.0)
        warm = Observation(margin_c=12.0)
        ladder = at_level(HOT)
        ladder = hold(ladder, cool, 59)[-1]
        ladder = step(ladder, warm, 60.0, CONFIG)
        assert ladder.level is HOT
        assert ladder.leave_held_since is None
        trail = hold(ladder, cool, 61, start=61.0)
        assert [lad.level for lad in trail].index(ELEVATED) == 60

    def test_cooling_from_critical_takes_every_dwell_in_turn(self):
        cool = Observation(margin_c=40.0, predicted_margin_c=40.0)
        trail = hold(at_level(CRITICAL), cool, 300)
        levels = [ladder.level for ladder in trail]
        assert levels.index(HOT) == dwell_s(CRITICAL, CONFIG)
        assert levels.index(ELEVATED) == levels.index(HOT) + dwell_s(HOT, CONFIG)
        assert levels.index(OK) == levels.index(ELEVATED) + dwell_s(ELEVATED, CONFIG)

    @settings(max_examples=60, deadline=None)
    @given(
        st.lists(st.tuples(st.integers(-2, 40), st.integers(-5, 40), st.booleans()), min_size=1, max_size=200)
    )
    def test_never_steps_down_early_or_by_more_than_one(self, readings):
        ladder = at_level(OK)
        held_from: float | None = None  # when the current level's leave condition began to hold
        for t, (margin, predicted, sw) in enumerate(readings, start=1):
            obs = Observation(margin_c=margin, predicted_margin_c=predicted, sw_thermal=sw)
            if leave_holds(ladder.level, obs, CONFIG):
                held_from = t if held_from is None else held_from
            else:
                held_from = None
            new = step(ladder, obs, float(t), CONFIG)
            if new.level.severity < ladder.level.severity:
                assert LADDER.index(new.level) == LADDER.index(ladder.level) - 1
                assert held_from is not None
                assert t - max(held_from, ladder.since) >= dwell_s(ladder.level, CONFIG)
                held_from = t if leave_holds(new.level, obs, CONFIG) else None
            elif new.level is not ladder.level:
                assert new.level is target_level(obs, CONFIG)
                held_from = None
            ladder = new

    @pytest.mark.parametrize(
        ("centre", "level"), [(16, OK), (14, ELEVATED), (20, ELEVATED), (8, HOT), (13, HOT), (0, CRITICAL)]
    )
    def test_noisy_constant_margin_does_not_flap(self, centre, level):
        rng = random.Random(centre)  # noqa: S311 - reproducible noise, not cryptography
        ladder = at_level(level)
        for t in range(1, 600):
            noisy = Observation(margin_c=centre + rng.choice((-1, 0, 1)), predicted_margin_c=20.0)
            ladder = step(ladder, noisy, float(t), CONFIG)
            assert ladder.level is level
