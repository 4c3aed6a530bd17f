"""Pressure: 1 where a GPU has no `default` slot, falling to 0 with its headroom; the node's is the mean."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from policy_builders import wide_config
from test_policy_slots import outlook

from gpuwatch.policy.pressure import headroom_pressure, node_pressure
from gpuwatch.policy.slots import headroom

CONFIG = wide_config()


class TestHeadroomPressure:
    """Linear in the headroom above the `default` guard, clamped to [0, 1]."""

    @pytest.mark.parametrize(
        ("headroom_c", "pressure"),
        [(-3.0, 1.0), (0.0, 1.0), (10.0, 0.75), (40.0, 0.0), (90.0, 0.0), (None, 1.0)],
    )
    def test_values(self, headroom_c, pressure):
        assert headroom_pressure(headroom_c, CONFIG) == pytest.approx(pressure)

    def test_no_default_slot_is_full_pressure(self):
        room = headroom(outlook(8.0, power_w=100.0))
        assert room.slots.default == 0
        assert headroom_pressure(room.headroom_c, CONFIG) == 1.0

    def test_reserved_jobs_raise_it(self):
        free = headroom(outlook(30.0, power_w=100.0))
        reserved = headroom(outlook(30.0, power_w=100.0, reserved=2))
        assert headroom_pressure(reserved.headroom_c, CONFIG) > headroom_pressure(free.headroom_c, CONFIG)

    @settings(max_examples=200, deadline=None)
    @given(margin=st.floats(-5.0, 80.0), fall=st.floats(0.0, 30.0))
    def test_never_falls_as_the_margin_falls(self, margin, fall):
        warm = headroom(outlook(margin, power_w=200.0)).headroom_c
        hot = headroom(outlook(margin - fall, power_w=200.0)).headroom_c
        assert headroom_pressure(hot, CONFIG) >= headroom_pressure(warm, CONFIG)


class TestNodePressure:
    """The mean over the node's GPUs; 1 with none."""

    def test_mean(self):
        assert node_pressure([0.0, 1.0, 0.5, 0.5]) == pytest.approx(0.5)

    def test_no_gpus(self):
        assert node_pressure([]) == 1.0
