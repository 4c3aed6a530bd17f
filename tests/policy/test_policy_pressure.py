"""Tests of pressure: bounded, continuous, never rising with margin, and the node's mean."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gpuwatch.policy.config import PolicyConfig
from gpuwatch.policy.decision import ThermalState
from gpuwatch.policy.pressure import gpu_pressure, margin_pressure, node_pressure, state_floor

CONFIG = PolicyConfig()
margins = st.floats(-50.0, 100.0, allow_nan=False)
optional_margins = st.none() | margins


class TestGpuPressure:
    """A GPU's pressure is 0 when cool, 1 at the limit, and monotone non-increasing in every margin."""

    @pytest.mark.parametrize(
        ("margin", "pressure"), [(40.0, 0.0), (60.0, 0.0), (20.0, 0.5), (0.0, 1.0), (-5.0, 1.0)]
    )
    def test_linear_between_cool_and_limit(self, margin, pressure):
        assert margin_pressure(margin, CONFIG) == pytest.approx(pressure)

    @given(margins, margins, optional_margins, optional_margins)
    def test_monotone_in_margin(self, low, high, memory, predicted):
        low, high = sorted((low, high))
        assert gpu_pressure(low, memory, predicted, CONFIG) >= gpu_pressure(high, memory, predicted, CONFIG)

    @given(margins, margins, optional_margins)
    def test_monotone_in_predicted_margin(self, low, high, margin):
        low, high = sorted((low, high))
        assert gpu_pressure(margin, None, low, CONFIG) >= gpu_pressure(margin, None, high, CONFIG)

    @given(margins, st.floats(0.0, 1.0), optional_margins, optional_margins)
    def test_bounded_and_continuous(self, margin, delta, memory, predicted):
        near = gpu_pressure(margin + delta, memory, predicted, CONFIG)
        here = gpu_pressure(margin, memory, predicted, CONFIG)
        assert 0.0 <= near <= here <= 1.0
        assert here - near <= delta / CONFIG.pressure_cool_margin_c + 1e-9

    def test_nothing_known_is_full_pressure(self):
        assert gpu_pressure(None, None, None, CONFIG) == 1.0

    @pytest.mark.parametrize(
        ("state", "floor"),
        [
            (ThermalState.OK, 0.0),
            (ThermalState.HOT, 0.0),
            (ThermalState.CRITICAL, 1.0),
            (ThermalState.FAILED, 1.0),
            (ThermalState.UNKNOWN, 0.8),
        ],
    )
    def test_state_floor(self, state, floor):
        assert state_floor(state, CONFIG) == pytest.approx(floor)

    def test_fail_open_unknown_has_no_floor(self):
        assert state_floor(ThermalState.UNKNOWN, PolicyConfig(fail_open=True)) == 0.0


class TestNodePressure:
    """The node's pressure is the mean of its GPUs': one hot GPU among cool ones costs its share."""

    def test_mean_of_the_gpus(self):
        assert node_pressure([0.1, 0.9, 0.5]) == pytest.approx(0.5)

    def test_one_gpu_at_the_limit_among_seven_cool_ones_costs_an_eighth(self):
        assert node_pressure([1.0] + [0.0] * 7) == pytest.approx(0.125)

    @given(st.lists(st.floats(0, 1), min_size=1, max_size=16), st.integers(0, 15), st.floats(0, 1))
    def test_never_falls_when_a_gpu_gets_hotter(self, pressures, which, hotter):
        which %= len(pressures)
        raised = [*pressures]
        raised[which] = max(raised[which], hotter)
        assert node_pressure(raised) >= node_pressure(pressures) - 1e-12

    def test_no_gpu_is_full_pressure(self):
        assert node_pressure([]) == 1.0
