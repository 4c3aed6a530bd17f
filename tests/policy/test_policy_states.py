"""The states stage: states read off the slots, and the shown state that steps down only after a hold."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_policy_slots import outlook

from gpuwatch.policy import reasons
from gpuwatch.policy.decision import ThermalState
from gpuwatch.policy.slots import headroom
from gpuwatch.policy.states import Shown, step, thermal_state
from gpuwatch.sources.model import ClockEventReason

OK, ELEVATED, HOT, CRITICAL = ThermalState.OK, ThermalState.ELEVATED, ThermalState.HOT, ThermalState.CRITICAL
UNKNOWN, FAILED = ThermalState.UNKNOWN, ThermalState.FAILED
HOLD_S = 10.0


class TestThermalState:
    """Which classes have a slot decides the state; slowdown and an exhausted margin decide before."""

    @pytest.mark.parametrize(
        ("margin", "state", "code"),
        [
            (30.0, OK, reasons.WITHIN_LIMITS),
            (12.0, ELEVATED, reasons.NO_SHEDDABLE_SLOT),  # 12 - 6.7 < 8 (sheddable), >= 3 (default)
            (8.0, HOT, reasons.NO_DEFAULT_SLOT),  # 8 - 6.7 < 3
            (0.0, CRITICAL, reasons.MARGIN_EXHAUSTED),
        ],
    )
    def test_state_from_slots(self, margin, state, code):
        assert thermal_state(headroom(outlook(margin, power_w=100.0))) == (state, (code,))

    def test_sw_thermal_slowdown_is_hot(self):
        room = headroom(outlook(30.0, reasons_bits=int(ClockEventReason.SW_THERMAL_SLOWDOWN)))
        assert thermal_state(room) == (HOT, (reasons.SW_THERMAL_SLOWDOWN,))

    @pytest.mark.parametrize(
        ("kwargs", "code"),
        [
            ({"reasons_bits": int(ClockEventReason.HW_THERMAL_SLOWDOWN)}, reasons.HW_THERMAL_SLOWDOWN),
            ({"memory_margin_c": -1.0}, reasons.MEMORY_MARGIN_EXHAUSTED),
        ],
    )
    def test_critical_causes(self, kwargs, code):
        assert thermal_state(headroom(outlook(30.0, **kwargs))) == (CRITICAL, (code,))

    def test_a_gpu_whose_slots_are_all_reserved_is_busy_not_hot(self):
        room = headroom(outlook(30.0, power_w=100.0, reserved=5))
        assert room.slots.default == 0
        assert thermal_state(room)[0] is OK


class TestShown:
    """Up at once; down only after the lower state held for the hold, to the highest state seen meanwhile."""

    def test_escalates_at_once(self):
        shown = step(Shown(OK, 0.0), HOT, 5.0, HOLD_S)
        assert (shown.state, shown.since) == (HOT, 5.0)

    def test_steps_down_after_the_hold(self):
        shown = step(Shown(HOT, 0.0), OK, 10.0, HOLD_S)
        assert shown.state is HOT
        shown = step(shown, OK, 19.9, HOLD_S)
        assert shown.state is HOT
        shown = step(shown, OK, 20.0, HOLD_S)
        assert (shown.state, shown.since) == (OK, 20.0)

    def test_steps_down_to_the_highest_state_seen_during_the_hold(self):
        shown = Shown(HOT, 0.0)
        for at, state in ((1.0, OK), (4.0, ELEVATED), (7.0, OK), (11.0, OK)):
            shown = step(shown, state, at, HOLD_S)
        assert shown.state is ELEVATED

    def test_a_return_to_the_shown_state_restarts_the_hold(self):
        shown = step(Shown(HOT, 0.0), OK, 1.0, HOLD_S)
        shown = step(shown, HOT, 5.0, HOLD_S)
        shown = step(shown, OK, 12.0, HOLD_S)
        assert shown.state is HOT  # 7 s below since the return, not 11

    @pytest.mark.parametrize("overlay", [UNKNOWN, FAILED])
    def test_unknown_and_failed_give_way_at_once(self, overlay):
        shown = step(Shown(OK, 0.0), overlay, 1.0, HOLD_S)
        assert shown.state is overlay
        assert step(shown, OK, 2.0, HOLD_S).state is OK

    @settings(max_examples=300, deadline=None)
    @given(
        states=st.lists(st.sampled_from([OK, ELEVATED, HOT, CRITICAL]), min_size=1, max_size=40),
        gaps=st.lists(st.floats(0.1, 15.0), min_size=40, max_size=40),
    )
    def test_never_shows_less_than_now_nor_steps_down_before_the_hold(self, states, gaps):
        shown, at = Shown(), 0.0
        for state, gap in zip(states, gaps, strict=False):
            before = shown
            at += gap
            shown = step(shown, state, at, HOLD_S)
            assert shown.state is not None
            assert shown.state.severity >= state.severity
            if before.state is not None and shown.state.severity < before.state.severity:
                assert before.lower is not None
                assert at - before.lower_since >= HOLD_S
