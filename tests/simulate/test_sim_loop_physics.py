"""The sim's physics as the simulate loop drives it: steady state, heat-up path, slowed jobs, look-ahead."""

from __future__ import annotations

import dataclasses
import random

import pytest
from sim_loop_helpers import one_gpu

from gpuwatch.simulate.cluster import Cluster
from gpuwatch.simulate.controllers.foresight import Change, peak_temperature_c
from gpuwatch.simulate.engine import DRAIN_LIMIT_S, run_one
from gpuwatch.simulate.scenario import NodeSpec
from gpuwatch.simulate.workload import Job
from gpuwatch.sources.sim import physics
from gpuwatch.sources.sim.plants import draw_plant
from gpuwatch.sources.sim.profiles import H100_SXM, SkuProfile

IDLE_W, JOB_W = H100_SXM.power_idle_w, H100_SXM.job.power_w


def held_jobs(count: int, at_s: float = 0.0) -> tuple[Job, ...]:
    """`count` jobs arriving at `at_s`, long enough to run through any test."""
    return tuple(Job(i, at_s, 1e6, at_s + 1e6) for i in range(count))


def board(scenario) -> SkuProfile:
    """The simulated GPU's own profile, its per-GPU spread drawn as the run draws it."""
    return Cluster(scenario).nodes[0].source.physics_now()[0].profile


class TestWidePlants:
    """`plants = "wide"`: each GPU's board from the wide family, the same for every controller and run."""

    def test_each_gpu_gets_a_board_of_its_own_family_and_the_run_repeats(self):
        scenario = dataclasses.replace(one_gpu(), plants="wide", nodes=(NodeSpec("n", ("H100",) * 8, 25.0),))
        boards = [gpu.profile.thermal for gpu in Cluster(scenario).nodes[0].source.physics_now()]
        again = [gpu.profile.thermal for gpu in Cluster(scenario).nodes[0].source.physics_now()]
        assert boards == again
        assert H100_SXM.thermal not in boards
        taus = {round(t.sink_time_constant_s) for t in boards}
        assert max(taus) / min(taus) > 3  # not one board's spread: a decade of sinks

    def test_profiles_keep_the_shipped_plants(self):
        assert board(dataclasses.replace(one_gpu(), spread=0.0)).thermal == H100_SXM.thermal


class TestSteadyState:
    """Run through the engine, a GPU drawing constant power settles at T_inlet + (R_ds + factor*R_sa)*P."""

    @pytest.mark.parametrize(("jobs", "inlet_c", "cooling"), [(1, 25.0, 1.0), (2, 30.0, 1.0), (3, 22.0, 1.5)])
    def test_settles_at_inlet_plus_r_times_p(self, jobs, inlet_c, cooling):
        scenario = one_gpu(inlet_c=inlet_c, cooling_factor=cooling, duration_s=3600.0 * cooling)
        thermal = board(scenario).thermal
        result = run_one(scenario, "none", held_jobs(jobs))
        power_w = IDLE_W + jobs * board(scenario).job.power_w
        resistance = thermal.die_resistance_c_per_w + cooling * thermal.sink_resistance_c_per_w
        assert result.timeline.temperatures_c[-1][0] == pytest.approx(
            inlet_c + resistance * power_w, abs=0.01
        )

    def test_energy_is_power_times_time(self):
        scenario = one_gpu(duration_s=600.0)
        result = run_one(scenario, "none", held_jobs(2))
        power_w = IDLE_W + 2 * board(scenario).job.power_w
        # Jobs still running at the end keep the run going, for at most the drain limit.
        run_s = result.timeline.times_s[-1]
        assert (run_s, result.unfinished) == (600.0 + DRAIN_LIMIT_S, 2)
        assert result.energy_kwh == pytest.approx(power_w * run_s / 3.6e6, rel=1e-3)


class TestHeatUp:
    """After a power step the engine's die follows the two-node physics' exact path, second by second."""

    @pytest.mark.parametrize("cooling", [1.0, 2.0])
    def test_path_after_a_step_is_the_exact_response(self, cooling):
        scenario = one_gpu(cooling_factor=cooling, duration_s=700.0)
        profile = board(scenario)
        result = run_one(scenario, "none", held_jobs(3, at_s=400.0))
        line = result.timeline
        conditions = physics.Conditions(jobs=3, inlet_c=25.0, power_limit_w=700.0, cooling_factor=cooling)
        idle = physics.settled_state(profile, dataclasses.replace(conditions, jobs=0))
        path = physics.response(
            profile, conditions, idle.temperature_c, idle.sink_temperature_c, IDLE_W + 3 * profile.job.power_w
        )
        for after_s in (1.0, 10.0, 60.0, 240.0):
            shown = line.temperatures_c[line.times_s.index(400.0 + after_s)][0]
            assert shown == pytest.approx(path.at(after_s)[0], abs=0.006)  # the timeline keeps 0.01 °C
        # The die's own part of the rise shows within the first second.
        first_s = line.temperatures_c[line.times_s.index(401.0)][0] - idle.temperature_c
        assert first_s == pytest.approx(
            profile.thermal.die_resistance_c_per_w * 3 * profile.job.power_w, rel=0.1
        )


class TestJobProgress:
    """Work progresses at the clock ratio: a job takes twice as long while its GPU runs at half clocks."""

    def test_half_clocks_double_the_duration(self):
        cluster = Cluster(one_gpu())
        node = cluster.nodes[0]
        node.start(Job(0, 0.0, 10.0, 100.0), 0, 0.0)
        node.refresh()
        node.views = (dataclasses.replace(node.views[0], clock_ratio=0.5),)
        ended = []
        for step in range(1, 41):
            cluster.clock.advance(0.5)
            ended += node.progress(0.5, step * 0.5)
        assert [done.ended_s for done in ended] == [pytest.approx(20.0)]

    def test_full_clocks_keep_the_duration(self):
        cluster = Cluster(one_gpu())
        node = cluster.nodes[0]
        node.start(Job(0, 0.0, 10.0, 100.0), 0, 0.0)
        node.refresh()
        ended = [done for step in range(1, 41) for done in node.progress(0.5, step * 0.5)]
        assert [done.ended_s for done in ended] == [pytest.approx(10.0)]


class TestForesight:
    """The oracle's closed-form look-ahead equals stepping the sim's physics tick by tick."""

    @pytest.mark.parametrize(
        ("works", "changes"),
        [
            ((30.0, 12.5, 7.25), ()),
            ((40.0,), (Change(10.0, inlet_c=40.0),)),
            ((25.0, 25.0), (Change(5.0, cooling_factor=2.0),)),
        ],
    )
    def test_peak_matches_stepping(self, works, changes):
        start = physics.GpuState(temperature_c=55.0, sink_temperature_c=45.0)
        conditions = physics.Conditions(
            jobs=len(works), inlet_c=25.0, power_limit_w=700.0, cooling_factor=1.5
        )
        gpu = _physics(start, conditions)
        expected = _stepped_peak(start, conditions, list(works), list(changes))
        assert peak_temperature_c(gpu, works, changes, 0.5, 600.0) == pytest.approx(expected, abs=1e-9)

    @pytest.mark.parametrize(
        ("family", "seed", "tolerance_c"),
        [("three-node", 1, 1e-6), ("three-node", 2, 1e-6), ("fan-curve", 1, 0.01), ("fan-curve", 3, 0.01)],
    )
    def test_peak_matches_stepping_on_the_wide_plants(self, family, seed, tolerance_c):
        profile = draw_plant(H100_SXM, random.Random(seed), family)
        cool = physics.Conditions(jobs=1, inlet_c=25.0, power_limit_w=700.0)
        start = physics.settled_state(profile, cool)
        conditions = dataclasses.replace(cool, jobs=3)
        works = (30.0, 20.0, 45.0)
        expected = _stepped_peak(start, conditions, list(works), [], profile=profile)
        found = peak_temperature_c(_physics(start, conditions, profile), works, (), 0.5, 600.0)
        assert found == pytest.approx(expected, abs=tolerance_c)
        assert found - start.temperature_c > 3.0  # a real climb, not a flat line


def _physics(state, conditions, profile=H100_SXM):
    from gpuwatch.sources.sim.source import GpuPhysics  # noqa: PLC0415

    return GpuPhysics(profile, state, conditions)


def _stepped_peak(state, conditions, works, changes, *, profile=H100_SXM):
    """The peak, stepping the sim's physics one tick at a time as the engine does."""
    tick_s = 0.5  # the engine's tick, s
    peak, t_s = state.temperature_c, 0.0
    while works:
        while changes and changes[0].after_s <= t_s + 1e-9:
            change = changes.pop(0)
            conditions = dataclasses.replace(
                conditions,
                inlet_c=change.inlet_c or conditions.inlet_c,
                cooling_factor=change.cooling_factor or conditions.cooling_factor,
            )
        conditions = dataclasses.replace(conditions, jobs=len(works))
        ratio = physics.operating_point(profile, state, conditions).sm_clock_mhz / profile.sm_clock_max_mhz
        state = physics.step(profile, state, conditions, tick_s)
        t_s += tick_s
        peak = max(peak, state.temperature_c)
        works = [w - ratio * tick_s for w in works if w > ratio * tick_s + 1e-9]
    return peak
