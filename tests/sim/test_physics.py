"""Tests of the per-GPU two-node physics: steady state, both time constants, power cap, thermal slowdown."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gpuwatch.sources.model import ClockEventReason
from gpuwatch.sources.sim import physics
from gpuwatch.sources.sim.physics import Conditions, GpuState
from gpuwatch.sources.sim.profiles import A100_SXM, H100_SXM, SkuProfile, first_order

THERMAL = H100_SXM.thermal
R = THERMAL.resistance_c_per_w  # R_ds + R_sa, °C/W
R_DS, R_SA = THERMAL.die_resistance_c_per_w, THERMAL.sink_resistance_c_per_w
HW_BITS = ClockEventReason.HW_SLOWDOWN | ClockEventReason.HW_THERMAL_SLOWDOWN


def h100(jobs: int, inlet_c: float = 25.0, cooling: float = 1.0, limit_w: float = 700.0) -> Conditions:
    return Conditions(jobs=jobs, inlet_c=inlet_c, power_limit_w=limit_w, cooling_factor=cooling)


def run(profile: SkuProfile, state: GpuState, conditions: Conditions, seconds: float, dt: float = 1.0):
    for _ in range(round(seconds / dt)):
        state = physics.step(profile, state, conditions, dt)
    return state


def at(temperature_c: float, *, hw_slowdown: bool = False) -> GpuState:
    return GpuState(
        temperature_c=temperature_c, sink_temperature_c=temperature_c - 5.0, hw_slowdown=hw_slowdown
    )


def two_exponentials(times: list[float], rises: list[float], final: float) -> tuple[float, float, float]:
    """(fast tau, slow tau, fast share) of `final - rise(t) = a e^(-t/tf) + b e^(-t/ts)`, fitted.

    The slow tau from the tail's log-linear slope, the fast one from what the slow mode leaves
    in the first seconds: a two-exponential fit as one would do on a bench recording.
    """
    tail = [(t, math.log(final - r)) for t, r in zip(times, rises, strict=True) if 60 <= t <= 400]
    mean_t = sum(t for t, _ in tail) / len(tail)
    mean_y = sum(y for _, y in tail) / len(tail)
    slope = sum((t - mean_t) * (y - mean_y) for t, y in tail) / sum((t - mean_t) ** 2 for t, _ in tail)
    slow_tau, slow_amp = -1.0 / slope, math.exp(mean_y - slope * mean_t)
    head = [(t, final - r - slow_amp * math.exp(-t / slow_tau)) for t, r in zip(times, rises, strict=True)]
    head = [(t, math.log(v)) for t, v in head if 0 < t <= 1 and v > 1e-6]
    fast_tau = -(head[-1][0] - head[0][0]) / (head[-1][1] - head[0][1])
    return fast_tau, slow_tau, 1.0 - slow_amp / final


class TestSteadyState:
    """At constant power the die settles at T_inlet + (R_ds + R_sa)*P, the sink at T_inlet + R_sa*P."""

    @pytest.mark.parametrize("jobs", [0, 1, 2, 3])
    def test_die_settles_at_inlet_plus_r_times_power(self, jobs):
        conditions = h100(jobs)
        state = run(H100_SXM, at(25.0), conditions, 2400.0, dt=4.0)
        power_w = physics.operating_point(H100_SXM, state, conditions).power_w
        assert power_w == pytest.approx(85.0 + 200.0 * jobs)
        assert state.temperature_c == pytest.approx(25.0 + R * power_w, abs=1e-6)
        assert state.sink_temperature_c == pytest.approx(25.0 + R_SA * power_w, abs=1e-6)

    def test_memory_settles_at_offset_plus_its_slope(self):
        conditions = h100(2)
        state = run(H100_SXM, at(25.0), conditions, 2400.0, dt=4.0)
        memory_c = physics.memory_temperature_c(H100_SXM, conditions, state.sink_temperature_c)
        assert memory_c == pytest.approx(25.0 + 9.5 + 0.016 * 485.0, abs=1e-3)

    def test_inlet_change_moves_the_steady_state_by_as_much(self):
        cool = run(H100_SXM, at(25.0), h100(2, inlet_c=20.0), 2400.0, dt=4.0)
        warm = run(H100_SXM, cool, h100(2, inlet_c=32.0), 2400.0, dt=4.0)
        assert warm.temperature_c - cool.temperature_c == pytest.approx(12.0, abs=1e-6)

    def test_settled_state_starts_at_the_steady_state(self):
        state = physics.settled_state(H100_SXM, h100(3))
        assert state.temperature_c == pytest.approx(25.0 + R * 685.0)
        assert physics.step(H100_SXM, state, h100(3), 5.0).temperature_c == pytest.approx(state.temperature_c)

    def test_a_cooling_fault_raises_only_the_sink_to_air_resistance(self):
        conditions = h100(3, cooling=2.0)
        assert physics.steady_temperature_c(H100_SXM, conditions, 685.0) == pytest.approx(
            25.0 + (R_DS + 2.0 * R_SA) * 685.0
        )


class TestStepResponse:
    """A step from idle to full load: most of the die's own rise in seconds, the rest over minutes."""

    def step_response(self, profile: SkuProfile) -> tuple[list[float], list[float], float]:
        idle = physics.settled_state(profile, h100(0))
        busy = h100(3)
        final = physics.steady_temperature_c(profile, busy, 685.0) - idle.temperature_c
        # Every 50 ms for the first two seconds (the die's part), then every second.
        steps = [0.05] * 40 + [1.0] * 598
        times, rises, state = [0.0], [0.0], idle
        for dt in steps:
            state = physics.step(profile, state, busy, dt)
            times.append(round(times[-1] + dt, 6))
            rises.append(state.temperature_c - idle.temperature_c)
        return times, rises, final

    @staticmethod
    def rise_at(times: list[float], rises: list[float], second: float) -> float:
        return rises[times.index(second)]

    def test_two_time_constants_from_a_two_exponential_fit(self):
        times, rises, final = self.step_response(H100_SXM)
        fast_tau, slow_tau, fast_share = two_exponentials(times, rises, final)
        # Die over sink: ~R_ds*C_d = 0.25 s; sink over air: ~R_sa*C_s = 120 s (coupled: a little more).
        assert 0.15 < fast_tau < 0.35
        assert 110.0 < slow_tau < 140.0
        assert fast_share == pytest.approx(R_DS / R, abs=0.05)

    def test_most_of_the_die_rise_within_ten_seconds_then_a_slow_climb(self):
        times, rises, final = self.step_response(H100_SXM)
        die_part = R_DS * 600.0
        at = self.rise_at
        assert at(times, rises, 1.0) >= 0.9 * die_part
        assert at(times, rises, 10.0) < 0.5 * final
        assert at(times, rises, 300.0) > 0.9 * final > at(times, rises, 120.0)

    def test_the_first_order_plant_has_one_time_constant(self):
        plant = first_order(H100_SXM)
        times, rises, final = self.step_response(plant)
        covered = self.rise_at(times, rises, 20.0) / final
        assert covered == pytest.approx(1 - math.exp(-1), abs=1e-6)
        assert plant.thermal.resistance_c_per_w == pytest.approx(R)

    def test_a_cooling_fault_lengthens_the_slow_time_constant(self):
        healthy = physics.response(H100_SXM, h100(3), 50.0, 40.0, 685.0)
        faulty = physics.response(H100_SXM, h100(3, cooling=3.0), 50.0, 40.0, 685.0)
        assert -1 / faulty.rate_slow > 2.5 * -1 / healthy.rate_slow

    def test_one_long_step_equals_many_short_ones(self):
        start = physics.settled_state(H100_SXM, h100(0))
        long_step = physics.step(H100_SXM, start, h100(2), 60.0)
        short_steps = run(H100_SXM, start, h100(2), 60.0, dt=0.25)
        assert long_step.temperature_c == pytest.approx(short_steps.temperature_c, abs=1e-9)
        assert long_step.sink_temperature_c == pytest.approx(short_steps.sink_temperature_c, abs=1e-9)
        assert long_step.energy_j == pytest.approx(short_steps.energy_j, rel=1e-12)

    def test_die_peak_is_found_inside_a_stretch(self):
        # Die hot, sink cold, power dropped: the die falls first, then rises with the sink.
        path = physics.response(H100_SXM, h100(3), 40.0, 20.0, 685.0)
        sampled = max(path.at(t / 10)[0] for t in range(6001))
        assert path.die_peak_c(600.0) == pytest.approx(sampled, abs=1e-3)


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
    """A cooling fault (R_sa multiplied) drives a busy GPU from a healthy margin into thermal slowdown."""

    def test_fault_raises_temperature_into_slowdown(self):
        healthy = run(H100_SXM, physics.settled_state(H100_SXM, h100(4)), h100(4), 300.0)
        assert healthy.temperature_c < 65.0
        faulty = healthy
        peak = healthy.temperature_c
        for _ in range(1200):
            faulty = physics.step(H100_SXM, faulty, h100(4, cooling=4.0), 1.0)
            peak = max(peak, faulty.temperature_c)
        assert peak >= H100_SXM.slowdown_temperature_c
        assert faulty.hw_thermal_slowdown_s > 0
        assert faulty.sw_thermal_slowdown_s > 0

    def test_mild_fault_is_held_near_max_operating_by_sw_thermal(self):
        state = physics.settled_state(H100_SXM, h100(3))
        temperatures = []
        for _ in range(2400):
            state = physics.step(H100_SXM, state, h100(3, cooling=2.5), 1.0)
            temperatures.append(state.temperature_c)
        # Without SW thermal it would settle at 25 + (0.02 + 2.5 * 0.03) * 685 = 90.1 °C, in HW slowdown.
        # The die answers the controller within a second, so it hunts a degree or two below.
        assert 84.0 <= min(temperatures[-300:]) <= max(temperatures[-300:]) < 89.0
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
        state = GpuState(temperature_c=start_c, sink_temperature_c=start_c)
        # The die may first rise over a warm sink by at most R_ds * P before the sink cools.
        hottest = max(start_c, inlet_c + (R_DS + R_SA * cooling) * 700.0) + R_DS * 700.0
        # Nothing cools below the inlet or where it started.
        coolest = min(start_c, inlet_c)
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
