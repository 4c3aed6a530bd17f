"""The controllers on a small hot scenario: their ordering, and gpuwatch running the code `serve` runs."""

from __future__ import annotations

import dataclasses
import threading

import pytest
from sim_loop_helpers import HOT_TOML

from gpuwatch.policy.decision import NodeDecision, PriorityClass, ThermalState
from gpuwatch.sampler.loop import EXCEPTION, Sampler
from gpuwatch.simulate import engine, runner
from gpuwatch.simulate.cluster import Cluster
from gpuwatch.simulate.controllers import make_controller
from gpuwatch.simulate.controllers.base import Hold, Start
from gpuwatch.simulate.controllers.gpuwatch import GpuwatchController
from gpuwatch.simulate.scenario_file import parse_scenario
from gpuwatch.simulate.workload import Job, draw_jobs
from gpuwatch.sources.clock import ManualClock


@pytest.fixture(scope="module")
def results():
    """All four controllers on two hot H100s for ten virtual minutes, by name."""
    return {result.controller: result for result in runner.run(parse_scenario(HOT_TOML))}


class TestOrdering:
    """On a fleet that overheats at full load, each guard trades slowdown for work as designed."""

    def test_none_slows_down(self, results):
        assert results["none"].slowdown_gpu_s > 60
        assert results["none"].max_temperature_c >= 87.0

    def test_gpuwatch_never_slows_down(self, results):
        assert results["gpuwatch"].slowdown_gpu_s == 0
        assert results["gpuwatch"].max_temperature_c < 87.0

    def test_oracle_never_slows_down_and_completes_at_least_as_much_as_gpuwatch(self, results):
        assert results["oracle"].slowdown_gpu_s == 0
        assert results["oracle"].completed >= results["gpuwatch"].completed

    def test_static_slows_down_less_than_none(self, results):
        assert results["static"].slowdown_gpu_s < results["none"].slowdown_gpu_s

    def test_every_controller_sees_the_same_jobs(self, results):
        assert len({result.arrived for result in results.values()}) == 1
        for result in results.values():
            assert result.completed + result.timed_out + result.unfinished == result.arrived

    def test_none_never_holds_a_job_back(self, results):
        assert results["none"].rejected == 0
        assert results["gpuwatch"].rejected > 0


class TestGpuwatchController:
    """The gpuwatch controller samples through a real Sampler and decides with the real Policy."""

    def test_decisions_come_from_the_policy_once_per_sample(self):
        scenario = parse_scenario(HOT_TOML)
        cluster = Cluster(scenario)
        controller = make_controller("gpuwatch", scenario, cluster, tick_s=0.5)
        try:
            for second in range(3):
                cluster.clock.advance(1.0 if second else 0.0)
                cluster.refresh()
                controller.observe(cluster.now_s)
            (decision,) = controller.decisions
            assert isinstance(decision, NodeDecision)
            assert decision.sequence == 3
            assert decision.state is ThermalState.OK
            assert isinstance(controller.decide(Job(0, 2.0, 20.0, 60.0), 2.0), Start)
        finally:
            controller.close()

    def test_a_hot_node_holds_jobs_back_with_its_retry_after(self):
        # 60 °C air and a heat sink 9.33x worse at shedding heat (die to inlet 0.3 °C/W): idle,
        # the GPUs settle at 85.5 °C (HBM hotter).
        hot = HOT_TOML.replace("inlet_c = 35.0", "inlet_c = 60.0").replace(
            "cooling_factor = 2.33", "cooling_factor = 9.33"
        )
        scenario = parse_scenario(hot)
        cluster = Cluster(scenario)
        controller = make_controller("gpuwatch", scenario, cluster, tick_s=0.5)
        try:
            for second in range(300):
                cluster.clock.advance(1.0 if second else 0.0)
                cluster.refresh()
                controller.observe(cluster.now_s)
            assert controller.decisions[0].state.severity >= ThermalState.HOT.severity
            decision = controller.decide(Job(0, 299.0, 20.0, 360.0), 299.0)
            assert isinstance(decision, Hold)
            assert 1 <= decision.retry_after_s <= scenario.policy.retry_after_max_s
        finally:
            controller.close()


class TestInlineSampler:
    """The sampler the simulation drives reads on the caller's thread and publishes as the daemon's does."""

    def test_publishes_snapshots_without_a_read_thread(self):
        scenario = parse_scenario(HOT_TOML)
        cluster = Cluster(scenario)
        before = threading.active_count()
        sampler = Sampler(cluster.nodes[0].source, clock=cluster.clock, read_inline=True)
        assert threading.active_count() == before
        first = sampler.sample_once()
        cluster.clock.advance(1.0)
        second = sampler.sample_once()
        assert (first.sequence, second.sequence) == (1, 2)
        assert second.monotonic == 1.0
        assert len(second.gpus) == 2
        assert second.health.attempts == 2
        sampler.stop()

    def test_a_failing_read_is_counted_as_from_the_thread(self):
        class Broken:
            spec = "broken"

            def read(self):
                raise RuntimeError("no")

            def close(self):
                pass

        sampler = Sampler(Broken(), clock=ManualClock(), read_inline=True)
        snapshot = sampler.sample_once()
        assert dict(snapshot.health.failures) == {EXCEPTION: 1}
        assert "broken source failed" in snapshot.health.source_error


class TestLeasesInTheLoop:
    """Gateways release each lease when its job ends; a proxy that never releases leaves them to expire."""

    @pytest.mark.parametrize("releases", [True, False])
    def test_the_books_balance(self, releases):
        scenario = dataclasses.replace(parse_scenario(HOT_TOML), releases=releases, duration_s=240.0)
        jobs = draw_jobs(scenario.arrivals, scenario.duration_s, scenario.jobs, scenario.seed)
        made: list[GpuwatchController] = []

        def keep(name, *args, **kwargs):
            controller = make_controller(name, *args, **kwargs)
            made.append(controller)
            return controller

        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(engine, "make_controller", keep)
            result = engine.run_one(scenario, "gpuwatch", jobs)
        (book,) = made[0]._books
        ended = book.ended_counts()
        released = sum(n for (_, how), n in ended.items() if how == "released")
        expired = sum(n for (_, how), n in ended.items() if how == "expired")
        assert result.completed > 20
        # Every job's lease ended once, and no lease is left open once the last job has ended
        # and the last deadline passed (a lease of unknown duration lasts the 60 s horizon).
        assert book.open == 0 or not releases
        if releases:
            # A job running past twice its plan (or, before durations are learned, the horizon)
            # is released after its lease's deadline: rare.
            assert released + expired == result.completed
            assert expired <= 0.05 * result.completed
            assert made[0].decisions[0].job_plan(PriorityClass.DEFAULT)[1] == "learned"
        else:
            assert released == 0
            assert expired + book.open == result.completed
            assert made[0].decisions[0].job_plan(PriorityClass.DEFAULT)[1] == "unknown"


class TestCausalOracle:
    """The oracle told of a fault only when it comes: the floor of slowdown for controllers blind to it."""

    @pytest.mark.parametrize(("name", "starts"), [("oracle", False), ("oracle-causal", True)])
    def test_only_the_oracle_sees_a_fan_failing_ahead(self, name, starts):
        # A hot H100 whose air goes from 35 to 60 °C in a minute as its fan fails (9x the sink's
        # resistance to the air): a ten-minute job started now crosses the limit before it ends.
        alone = HOT_TOML.replace('gpus = "2xH100"', 'gpus = "1xH100"')
        failing = alone + "\n[[events]]\nat_s = 60\ninlet_c = 60.0\ncooling_factor = 9.0\n"
        scenario = parse_scenario(failing)
        cluster = Cluster(scenario)
        controller = make_controller(name, scenario, cluster, tick_s=0.5)
        decision = controller.decide(Job(0, 0.0, 600.0, 900.0), 0.0)
        assert isinstance(decision, Start) is starts
        # With no fault to come, both start it.
        calm = parse_scenario(alone)
        calm_cluster = Cluster(calm)
        assert isinstance(
            make_controller(name, calm, calm_cluster, tick_s=0.5).decide(Job(0, 0.0, 600.0, 900.0), 0.0),
            Start,
        )
