"""Tests of the per-GPU RC physics: steady state, time constant, power cap, thermal slowdown."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gpuwatch.model import ClockEventReason
from gpuwatch.sources.sim import physics
from gpuwatch.sources.sim.physics import Conditions, GpuState
from gpuwatch.sources.sim.profiles import A100_SXM, H100_SXM, SkuProfile

R = H100_SXM.thermal.resistance_c_per_w
TAU = H100_SXM.thermal.time_constant_s
HW_BITS = ClockEventReason.HW_SLOWDOWN | ClockEventReason.HW_THERMAL_SLOWDOWN


def h100(jobs: int, inlet_c: float = 25.0, cooling: float = 1.0, limit_w: float = 700.0) -> Conditions:
    return Conditions(jobs=jobs, inlet_c=inlet_c, power_limit_w=limit_w, cooling_factor=cooling)


def run(profile: SkuProfile, state: GpuState, conditions: Conditions, seconds: float, dt: float = 1.0):
    for _ in range(round(seconds / dt)):
        state = physics.step(profile, state, conditions, dt)
    return state


def at(temperature_c: float, *, hw_slowdown: bool = False) -> GpuState:
    return GpuState(temperature_c=temperature_c, memory_temperature_c=40.0, hw_slowdown=hw_slowdown)


class TestSteadyState:
    """A GPU at constant power settles at T_inlet + R*P, and its HBM at its own offset and slope."""

    @pytest.mark.parametrize("jobs", [0, 1, 2, 3])
    def test_die_settles_at_inlet_plus_r_times_power(self, jobs):
        conditions = h100(jobs)
        state = run(H100_SXM, at(25.0), conditions, 30 * TAU)
        power_w = physics.operating_point(H100_SXM, state, conditions).power_w
        assert power_w == pytest.approx(85.0 + 200.0 * jobs)
        assert state.temperature_c == pytest.approx(25.0 + R * power_w, abs=1e-6)

    def test_memory_settles_at_offset_plus_its_slope(self):
        state = run(H100_SXM, at(25.0), h100(2), 600.0)
        assert state.memory_temperature_c == pytest.approx(25.0 + 9.5 + 0.016 * 485.0, abs=1e-3)

    def test_inlet_change_moves_the_steady_state_by_as_much(self):
        cool = run(H100_SXM, at(25.0), h100(2, inlet_c=20.0), 600.0)
        warm = run(H100_SXM, cool, h100(2, inlet_c=32.0), 600.0)
        assert warm.temperature_c - cool.temperature_c == pytest.approx(12.0, abs=1e-6)

    def test_settled_state_starts_at_the_steady_state(self):
        state = physics.settled_state(H100_SXM, h100(3))
        assert state.temperature_c == pytest.approx(25.0 + R * 685.0)
        assert physics.step(H100_SXM, state, h100(3), 5.0).temperature_c == pytest.approx(state.temperature_c)


class TestTimeConstant:
    """After a power step the die covers 63 % of the way to its new steady state in one tau."""

    def test_63_percent_after_tau(self):
        idle = physics.settled_state(H100_SXM, h100(0))
        busy = h100(3)
        target = physics.steady_temperature_c(H100_SXM, busy, 685.0)
        after = run(H100_SXM, idle, busy, TAU, dt=0.5)
        covered = (after.temperature_c - idle.temperature_c) / (target - idle.temperature_c)
        assert covered == pytest.approx(1 - math.exp(-1), abs=1e-9)

    def test_a_cooling_fault_lengthens_tau_with_r(self):
        idle = physics.settled_state(H100_SXM, h100(0))
        faulty = h100(3, cooling=2.0)
        target = physics.steady_temperature_c(H100_SXM, faulty, 685.0)
        after = run(H100_SXM, idle, faulty, 2 * TAU)
        covered = (after.temperature_c - idle.temperature_c) / (target - idle.temperature_c)
        assert covered == pytest.approx(1 - math.exp(-1), abs=1e-9)

    def test_one_long_step_equals_many_short_ones(self):
        start = physics.settled_state(H100_SXM, h100(0))
        long_step = physics.step(H100_SXM, start, h100(2), 60.0)
        short_steps = run(H100_SXM, start, h100(2), 60.0, dt=0.25)
        assert long_step.temperature_c == pytest.approx(short_steps.temperature_c, abs=1e-9)
        assert long_step.energy_j == pytest.approx(short_steps.energy_j, rel=1e-12)


class TestPowerCap:
    """Demand above the enforced limit is held at the limit by lower clocks, with SW power cap set."""

    def test_power_is_capped_at_the_limit_with_the_bit(self):
        point = physics.operating_point(H100_SXM, at(50.0), h100(5))
        assert point.power_w == pytest.approx(700.0)
        assert point.reasons & ClockEventReason.SW_POWER_CAP
        # Clocks fall in proportion: 615 W of the 1000 W the five jobs would draw above idle.
        assert point.sm_clock_mhz == pytest.approx(1980.0 * 615.0 / 1000.0)

    def test_below_the_limit_no_cap(self):
        point = physics.operating_point(H100_SXM, at(50.0), h100(3))
        assert point.power_w == pytest.approx(685.0)
        assert not point.reasons & ClockEventReason.SW_POWER_CAP
        assert point.sm_clock_mhz == 1980.0

    def test_a_lowered_limit_is_enforced(self):
        point = physics.operating_point(H100_SXM, at(50.0), h100(3, limit_w=400.0))
        assert point.power_w == pytest.approx(400.0)
        assert point.reasons & ClockEventReason.SW_POWER_CAP

    def test_idle_gpu_reports_idle_at_idle_clocks(self):
        point = physics.operating_point(H100_SXM, at(30.0), h100(0))
        assert point.reasons == ClockEventReason.GPU_IDLE
        assert (point.power_w, point.sm_clock_mhz, point.utilization) == (85.0, 345.0, 0.0)


class TestThermalSlowdown:
    """SW thermal slowdown starts at max operating (margin <= 0); HW slowdown halves clocks."""

    @pytest.mark.parametrize(
        ("profile", "slowdown_c", "shutdown_c"), [(H100_SXM, 89.0, 95.0), (A100_SXM, 89.0, 92.0)]
    )
    def test_absolute_thresholds(self, profile, slowdown_c, shutdown_c):
        assert profile.slowdown_temperature_c == slowdown_c
        assert profile.shutdown_temperature_c == shutdown_c

    def test_sw_thermal_starts_at_max_operating(self):
        below = physics.operating_point(H100_SXM, at(86.99), h100(3))
        at_limit = physics.operating_point(H100_SXM, at(87.0), h100(3))
        assert not below.reasons & ClockEventReason.SW_THERMAL_SLOWDOWN
        assert at_limit.reasons & ClockEventReason.SW_THERMAL_SLOWDOWN
        assert at_limit.sm_clock_mhz < below.sm_clock_mhz
        assert at_limit.power_w < below.power_w

    def test_sw_thermal_is_not_reported_as_a_power_cap(self):
        point = physics.operating_point(H100_SXM, at(88.0), h100(4))
        assert point.power_w < 700.0
        assert point.reasons & ClockEventReason.SW_THERMAL_SLOWDOWN
        assert not point.reasons & ClockEventReason.SW_POWER_CAP

    def test_hw_slowdown_at_the_threshold_halves_clocks(self):
        state = physics.latch(H100_SXM, at(89.0))
        assert state.hw_slowdown
        slowed = physics.operating_point(H100_SXM, state, h100(3))
        unslowed = physics.operating_point(H100_SXM, at(89.0), h100(3))
        assert slowed.reasons & HW_BITS == HW_BITS
        assert slowed.sm_clock_mhz == pytest.approx(unslowed.sm_clock_mhz / 2)
        assert not physics.latch(H100_SXM, at(88.99)).hw_slowdown

    def test_hw_slowdown_releases_three_degrees_below(self):
        assert physics.latch(H100_SXM, at(86.5, hw_slowdown=True)).hw_slowdown
        assert not physics.latch(H100_SXM, at(85.9, hw_slowdown=True)).hw_slowdown

    def test_counters_integrate_seconds_while_active(self):
        state = physics.step(H100_SXM, at(90.0), h100(3), 2.5)
        counters = (state.hw_thermal_slowdown_s, state.sw_thermal_slowdown_s, state.sw_power_cap_s)
        assert counters == (2.5, 2.5, 0.0)
        capped = physics.step(H100_SXM, at(50.0), h100(5), 1.5)
        assert (capped.sw_power_cap_s, capped.hw_thermal_slowdown_s) == (1.5, 0.0)


class TestCoolingFault:
    """A cooling fault (R multiplied) drives a busy GPU from a healthy margin into thermal slowdown."""

    def test_fault_raises_temperature_into_slowdown(self):
        healthy = run(H100_SXM, physics.settled_state(H100_SXM, h100(4)), h100(4), 300.0)
        assert healthy.temperature_c < 65.0
        faulty = healthy
        peak = healthy.temperature_c
        for _ in range(600):
            faulty = physics.step(H100_SXM, faulty, h100(4, cooling=3.5), 1.0)
            peak = max(peak, faulty.temperature_c)
        assert peak >= H100_SXM.slowdown_temperature_c
        assert faulty.hw_thermal_slowdown_s > 0
        assert faulty.sw_thermal_slowdown_s > 0

    def test_mild_fault_is_held_near_max_operating_by_sw_thermal(self):
        state = physics.settled_state(H100_SXM, h100(3))
        temperatures = []
        for _ in range(900):
            state = physics.step(H100_SXM, state, h100(3, cooling=2.0), 1.0)
            temperatures.append(state.temperature_c)
        # Without SW thermal it would settle at 25 + 2 * 0.05 * 685 = 93.5 °C, in HW slowdown.
        assert 86.0 <= min(temperatures[-300:]) <= max(temperatures[-300:]) < 89.0
        assert state.sw_thermal_slowdown_s > 0
        assert state.hw_thermal_slowdown_s == 0.0


jobs_per_step = st.lists(
    st.tuples(st.integers(0, 8), st.floats(0.01, 30.0)),
    min_size=1,
    max_size=40,
)


class TestInvariants:
    """Whatever the load, temperature stays between the idle and limit steady states; energy grows."""

    @settings(max_examples=150, deadline=None)
    @given(
        steps=jobs_per_step,
        start_c=st.floats(20.0, 95.0),
        inlet_c=st.floats(-5.0, 45.0),
        cooling=st.floats(0.5, 4.0),
    )
    def test_temperature_bounded_and_energy_monotone(self, steps, start_c, inlet_c, cooling):
        state = GpuState(temperature_c=start_c, memory_temperature_c=start_c)
        hottest = max(start_c, inlet_c + R * cooling * 700.0)
        # Even halved by HW slowdown, clocks never take the draw below idle.
        coolest = min(start_c, inlet_c + R * cooling * 85.0)
        for jobs, dt in steps:
            before = state
            state = physics.step(H100_SXM, state, h100(jobs, inlet_c, cooling), dt)
            assert coolest - 1e-9 <= state.temperature_c <= hottest + 1e-9
            assert state.energy_j - before.energy_j >= 85.0 * dt - 1e-9
            assert state.hw_thermal_slowdown_s >= before.hw_thermal_slowdown_s
            assert state.sw_power_cap_s >= before.sw_power_cap_s

    @settings(max_examples=100, deadline=None)
    @given(jobs=st.integers(0, 8), temperature_c=st.floats(20.0, 100.0), hw=st.booleans())
    def test_power_never_exceeds_the_limit(self, jobs, temperature_c, hw):
        state = at(temperature_c, hw_slowdown=hw)
        point = physics.operating_point(H100_SXM, state, h100(jobs))
        assert 85.0 <= point.power_w <= 700.0 + 1e-9
        assert 0.0 <= point.utilization <= 1.0
        assert 345.0 <= point.sm_clock_mhz <= 1980.0
