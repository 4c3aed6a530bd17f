"""The wide family of plants: each family's draws, and what it adds (a spreader, a lagging sensor, a fan)."""

from __future__ import annotations

import dataclasses
import math
import random
import statistics
from collections import Counter

import pytest

from gpuwatch.sources.clock import ManualClock
from gpuwatch.sources.sim import physics
from gpuwatch.sources.sim.gpu import SimGpu
from gpuwatch.sources.sim.plants import (
    CHAIN_SINK_TAU_S,
    DIE_SHARE,
    DIE_TAU_S,
    FAMILIES,
    SINK_TAU_S,
    WIDE,
    draw_plant,
)
from gpuwatch.sources.sim.profiles import H100_SXM, SkuProfile
from gpuwatch.sources.sim.scenario import LoadSettings, Scenario, ScenarioError, parse_scenario
from gpuwatch.sources.sim.source import SimSource

THREE_NODE = dataclasses.replace(
    H100_SXM,
    thermal=dataclasses.replace(
        H100_SXM.thermal,
        die_resistance_c_per_w=0.01,
        die_capacity_j_per_c=50.0,  # 0.5 s
        spreader_resistance_c_per_w=0.015,
        spreader_capacity_j_per_c=1000.0,  # 15 s
        sink_resistance_c_per_w=0.025,
        sink_capacity_j_per_c=12000.0,  # 300 s
    ),
)
LAGGED = dataclasses.replace(H100_SXM, thermal=dataclasses.replace(H100_SXM.thermal, sensor_lag_s=2.0))
FAN = dataclasses.replace(
    H100_SXM, thermal=dataclasses.replace(H100_SXM.thermal, fan_slow_ratio=2.0, fan_full_rise_c=15.0)
)


def conditions(jobs: int, cooling: float = 1.0) -> physics.Conditions:
    return physics.Conditions(jobs=jobs, inlet_c=25.0, power_limit_w=700.0, cooling_factor=cooling)


def euler(profile: SkuProfile, start: physics.GpuState, power_w: float, seconds: float, dt: float = 1e-3):
    """Die, spreader, sink and sensor by explicit Euler at `dt`: the ODEs as written, not their solution."""
    model, inlet_c = profile.thermal, 25.0
    die, sink = start.temperature_c, start.sink_temperature_c
    spreader = start.spreader_temperature_c if model.three_node else sink
    sensor = start.sensor_temperature_c if start.sensor_temperature_c is not None else die
    for _ in range(round(seconds / dt)):
        r_sa = physics.sink_resistance_c_per_w(profile, conditions(1), sink)
        if model.three_node:
            to_spreader = (die - spreader) / model.die_resistance_c_per_w
            to_sink = (spreader - sink) / model.spreader_resistance_c_per_w
            spreader += dt * (to_spreader - to_sink) / model.spreader_capacity_j_per_c
        else:
            to_spreader = to_sink = (die - sink) / model.die_resistance_c_per_w
        lag = model.sensor_lag_s
        sensor += dt * (die - sensor) / lag if lag else 0.0
        die += dt * (power_w - to_spreader) / model.die_capacity_j_per_c
        sink += dt * (to_sink - (sink - inlet_c) / r_sa) / model.sink_capacity_j_per_c
    return die, spreader, sink, sensor


def held_two_jobs(profile: SkuProfile) -> SimGpu:
    """A sim GPU of `profile` holding two jobs, seeded the same every time."""
    return SimGpu(
        profile,
        random.Random(3),
        inlet_c=25.0,
        load=LoadSettings(jobs=2, arrival_per_s=0.0),
        now_s=0.0,
        max_step_s=1.0,
    )


def stepped(profile: SkuProfile, start: physics.GpuState, jobs: int, seconds: float, dt: float):
    state = start
    for _ in range(round(seconds / dt)):
        state = physics.step(profile, state, conditions(jobs), dt)
    return state


class TestThreeNodePlant:
    """A spreader between die and sink: exact by its three modes."""

    def test_settles_at_inlet_plus_the_three_resistances_times_power(self):
        state = physics.settled_state(THREE_NODE, conditions(2))
        power_w = physics.operating_point(THREE_NODE, state, conditions(2)).power_w
        assert state.temperature_c == pytest.approx(25.0 + THREE_NODE.thermal.resistance_c_per_w * power_w)
        assert state.spreader_temperature_c == pytest.approx(25.0 + (0.015 + 0.025) * power_w)
        assert stepped(THREE_NODE, state, 2, 600.0, 7.0).temperature_c == pytest.approx(state.temperature_c)

    @pytest.mark.parametrize("seconds", [0.3, 4.0, 40.0])
    def test_a_step_follows_the_equations(self, seconds):
        start = physics.settled_state(THREE_NODE, conditions(1))
        power_w = physics.operating_point(THREE_NODE, start, conditions(3)).power_w
        die, spreader, sink, _ = euler(THREE_NODE, start, power_w, seconds, dt=1e-4)
        after = physics.step(THREE_NODE, start, conditions(3), seconds)
        assert (after.temperature_c, after.spreader_temperature_c, after.sink_temperature_c) == pytest.approx(
            (die, spreader, sink), abs=2e-3
        )

    def test_the_middle_node_shows_as_a_third_time_scale(self):
        start = physics.settled_state(THREE_NODE, conditions(0))
        after = [
            stepped(THREE_NODE, start, 3, t, 0.1).temperature_c - start.temperature_c for t in (2, 30, 600)
        ]
        final = physics.settled_state(THREE_NODE, conditions(3)).temperature_c - start.temperature_c
        # the die's own share within seconds, the spreader's within a minute, the sink's over minutes
        assert 0.15 * final < after[0] < 0.35 * final < after[1] < 0.6 * final < after[2] < 0.95 * final

    def test_one_long_step_equals_many_short_ones(self):
        start = physics.settled_state(THREE_NODE, conditions(0))
        assert stepped(THREE_NODE, start, 3, 60.0, 60.0).temperature_c == pytest.approx(
            stepped(THREE_NODE, start, 3, 60.0, 0.5).temperature_c, abs=1e-9
        )


class TestLaggedSensor:
    """The reading follows the die late; the protection acts on the die."""

    def test_the_sensor_follows_the_die_by_its_lag(self):
        start = physics.settled_state(LAGGED, conditions(0))
        assert start.sensor_temperature_c == start.temperature_c
        power_w = physics.operating_point(LAGGED, start, conditions(3)).power_w
        die, _, _, sensor = euler(LAGGED, start, power_w, 3.0, dt=1e-4)
        after = physics.step(LAGGED, start, conditions(3), 3.0)
        assert (after.temperature_c, after.sensor_temperature_c) == pytest.approx((die, sensor), abs=2e-3)
        assert after.sensor_temperature_c < after.temperature_c - 2.0  # well behind after a step

    def test_a_die_mode_as_fast_as_the_lag_is_followed_without_a_jump(self):
        die = physics.Response(50.0, 40.0, -0.5, -0.01, (4.0, 0.0), (2.0, 1.0))
        at_resonance = physics.lagged_c(die, 45.0, 2.0, 3.0)
        beside = [physics.lagged_c(die, 45.0, lag_s, 3.0) for lag_s in (2.0 - 1e-6, 2.0 + 1e-6)]
        assert beside == pytest.approx([at_resonance] * 2, abs=1e-4)

    def test_the_reading_is_the_sensor_with_noise_before_whole_degrees(self):
        noisy = dataclasses.replace(LAGGED, thermal=dataclasses.replace(LAGGED.thermal, sensor_noise_c=0.5))
        gpu = held_two_jobs(noisy)
        offsets = []
        for second in range(1, 400):
            gpu.advance_to(float(second))
            offsets.append(gpu.reading(0.0, 0.0).temperature_c - gpu.state.sensor_temperature_c)
        # floor() takes 0.5 °C off on average; the noise spreads the rest (sd 0.5 and the rounding's 0.29)
        assert statistics.mean(offsets) == pytest.approx(-0.5, abs=0.1)
        assert 0.45 < statistics.stdev(offsets) < 0.7
        again = held_two_jobs(noisy)
        again.advance_to(399.0)
        assert again.reading(0.0, 0.0).temperature_c == gpu.reading(0.0, 0.0).temperature_c


class TestFanCurve:
    """R_sa rises on a cool sink until the fan reaches full speed; a failed fan stays flat."""

    def test_a_light_load_runs_warmer_than_the_full_speed_fan_would_hold_it(self):
        light = physics.settled_state(FAN, conditions(0))
        flat = physics.settled_state(H100_SXM, conditions(0))
        assert light.sink_temperature_c > flat.sink_temperature_c + 1.0
        sink_rise = light.sink_temperature_c - 25.0
        power_w = physics.operating_point(FAN, light, conditions(0)).power_w
        # the steady state solves rise = R_sa(rise) * P
        resistance = physics.sink_resistance_c_per_w(FAN, conditions(0), light.sink_temperature_c)
        assert sink_rise == pytest.approx(resistance * power_w, rel=1e-9)

    def test_at_full_load_the_fan_is_at_full_speed(self):
        assert physics.settled_state(FAN, conditions(4)).temperature_c == pytest.approx(
            physics.settled_state(H100_SXM, conditions(4)).temperature_c
        )

    def test_a_failed_fan_is_flat(self):
        failed = conditions(1, cooling=3.0)
        for sink_c in (25.0, 35.0, 60.0):
            assert physics.sink_resistance_c_per_w(FAN, failed, sink_c) == pytest.approx(3.0 * 0.03)

    def test_steps_follow_the_equations_with_the_fan_read_each_step(self):
        start = physics.settled_state(FAN, conditions(0))
        power_w = physics.operating_point(FAN, start, conditions(3)).power_w
        _, _, sink, _ = euler(FAN, start, power_w, 120.0, dt=1e-2)
        assert stepped(FAN, start, 3, 120.0, 0.5).sink_temperature_c == pytest.approx(sink, abs=0.05)


class TestDraws:
    """Each family's boards lie in its documented ranges; `wide` draws every family."""

    @pytest.mark.parametrize("family", ["wide-two-node", "lagged-sensor", "fan-curve"])
    def test_two_node_time_constants_and_die_share(self, family):
        rng = random.Random(11)
        for _ in range(200):
            model = draw_plant(H100_SXM, rng, family).thermal
            assert DIE_TAU_S[0] <= model.die_time_constant_s <= DIE_TAU_S[1]
            assert SINK_TAU_S[0] <= model.sink_time_constant_s <= SINK_TAU_S[1]
            assert DIE_SHARE[0] <= model.die_resistance_c_per_w / model.resistance_c_per_w <= DIE_SHARE[1]
            assert not model.three_node
            assert (model.sensor_lag_s > 0) == (family == "lagged-sensor")
            assert (model.fan_slow_ratio > 1) == (family == "fan-curve")

    def test_time_constants_span_the_decade_either_side(self):
        rng = random.Random(5)
        taus = [draw_plant(H100_SXM, rng, "wide-two-node").thermal.sink_time_constant_s for _ in range(400)]
        # log-uniform: as many boards below the geometric middle as above it, and both ends reached
        middle = math.sqrt(SINK_TAU_S[0] * SINK_TAU_S[1])
        assert 0.4 < sum(t < middle for t in taus) / len(taus) < 0.6
        assert min(taus) < 1.5 * SINK_TAU_S[0]
        assert max(taus) > SINK_TAU_S[1] / 1.5

    def test_three_node_boards_have_a_spreader(self):
        rng = random.Random(2)
        for _ in range(100):
            model = draw_plant(H100_SXM, rng, "three-node").thermal
            assert model.three_node
            assert CHAIN_SINK_TAU_S[0] <= model.sink_time_constant_s <= CHAIN_SINK_TAU_S[1]

    def test_wide_draws_every_family_and_keeps_the_limits(self):
        rng = random.Random(4)
        boards = [draw_plant(H100_SXM, rng, WIDE) for _ in range(200)]
        kinds = Counter(
            "three-node"
            if b.thermal.three_node
            else "first-order"
            if b.thermal.die_resistance_c_per_w == 0
            else "lagged-sensor"
            if b.thermal.sensor_lag_s
            else "fan-curve"
            if b.thermal.fan_slow_ratio != 1
            else "wide-two-node"
            for b in boards
        )
        assert set(kinds) == set(FAMILIES)
        assert {b.max_operating_temperature_c for b in boards} == {H100_SXM.max_operating_temperature_c}

    def test_an_unknown_family_is_named_with_the_valid_ones(self):
        with pytest.raises(ValueError, match=r"unknown plant family 'two-nodes'.*three-node"):
            draw_plant(H100_SXM, random.Random(1), "two-nodes")


class TestScenarioPlants:
    """`plant = "wide"` in a scenario draws each GPU's board from the family, seeded."""

    def test_a_wide_scenario_gives_each_gpu_its_own_family_the_same_each_time(self):
        text = 'plant = "wide"\nseed = 3\n[[gpus]]\nsku = "H100"\ncount = 8\n[load]\njobs = 2\n'
        scenario = parse_scenario(text)
        boards = [
            [gpu.profile.thermal for gpu in SimSource(scenario, ManualClock()).physics_now()]
            for _ in range(2)
        ]
        assert boards[0] == boards[1]
        assert len({(t.three_node, t.sensor_lag_s > 0, t.fan_slow_ratio != 1) for t in boards[0]}) >= 2

    def test_a_misspelt_plant_lists_the_families(self):
        with pytest.raises(ScenarioError, match="three-node"):
            parse_scenario('plant = "three-nodes"\n[[gpus]]\nsku = "H100"\n')

    def test_the_shipped_plants_are_unchanged(self):
        profile = (
            SimSource(Scenario(skus=("H100",), seed=1, spread=0.0), ManualClock()).physics_now()[0].profile
        )
        assert profile.thermal == H100_SXM.thermal
