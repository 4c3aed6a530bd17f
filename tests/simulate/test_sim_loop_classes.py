"""Classes in `gpuwatch simulate`: mix, per-class deadlines, critical asked first, per-class rows, targets."""

from __future__ import annotations

import dataclasses
import json

import pytest
from sim_loop_helpers import HOT_TOML, one_gpu
from test_sim_loop_cli import invoke
from test_sim_loop_gateway import gateway

from gpuwatch.policy.decision import PriorityClass
from gpuwatch.simulate import report
from gpuwatch.simulate.cluster import Cluster
from gpuwatch.simulate.controllers import make_controller
from gpuwatch.simulate.controllers.base import Start
from gpuwatch.simulate.metrics import ClassResult, ControllerResult
from gpuwatch.simulate.scenario import ArrivalProfile, JobSpec
from gpuwatch.simulate.scenario_file import ScenarioError, parse_scenario
from gpuwatch.simulate.shipped import open_scenario, shipped_text
from gpuwatch.simulate.workload import Job, draw_jobs

CRITICAL, DEFAULT, SHEDDABLE = PriorityClass.CRITICAL, PriorityClass.DEFAULT, PriorityClass.SHEDDABLE
MIXED_JOBS = """[jobs]
work_s = 20.0
mix = { critical = 0.2, default = 0.3, sheddable = 0.5 }
deadline_s = { critical = 30, default = 60, sheddable = 300 }
"""


def mixed(jobs_table: str = MIXED_JOBS) -> str:
    """HOT_TOML with its [jobs] table replaced."""
    return HOT_TOML.split("[jobs]")[0] + jobs_table


class TestMixFile:
    """`mix` and per-class `deadline_s` in a scenario file, and what is refused."""

    def test_shares_and_deadlines_by_class(self):
        spec = parse_scenario(mixed(), "hot.toml").jobs
        assert spec.mix == ((CRITICAL, 0.2), (DEFAULT, 0.3), (SHEDDABLE, 0.5))
        assert [spec.deadline_for(cls) for cls in PriorityClass] == [30.0, 60.0, 300.0]
        assert spec.classes == (CRITICAL, DEFAULT, SHEDDABLE)

    @pytest.mark.parametrize(
        ("table", "expected"),
        [
            (
                "[jobs]\nmix = { critical = 0.2, default = 0.3 }\n",
                r"jobs\.mix: shares must sum to 1, got 0\.5",
            ),
            (
                "[jobs]\nmix = { paid = 1.0 }\n",
                r"jobs\.mix\.paid: must be one of critical, default, sheddable",
            ),
            (
                '[jobs]\nclass = "default"\nmix = { default = 1.0 }\n',
                r"jobs\.mix: give either class \(every job alike\) or mix",
            ),
            (
                "[jobs]\nmix = { critical = 0.5, default = 0.5 }\ndeadline_s = { critical = 30 }\n",
                r"jobs\.deadline_s: missing for default",
            ),
            (
                "[jobs]\nmix = { critical = -0.5, default = 1.5 }\n",
                r"jobs\.mix\.critical: must be a number from 0",
            ),
        ],
    )
    def test_bad_mix_is_refused_by_name(self, table, expected):
        with pytest.raises(ScenarioError, match=expected):
            parse_scenario(mixed(table), "hot.toml")


class TestDrawnClasses:
    """Each job's class is drawn by the mix from the seed, and it gives up at its own class's deadline."""

    def test_classes_follow_the_shares(self):
        spec = JobSpec(mix=((CRITICAL, 0.15), (DEFAULT, 0.35), (SHEDDABLE, 0.5)))
        jobs = draw_jobs(ArrivalProfile(10.0), 1000.0, spec, seed=3)
        for priority, share in spec.mix:
            count = sum(1 for job in jobs if job.priority is priority)
            expected = share * len(jobs)
            # A binomial count stays within four standard deviations of its mean.
            assert abs(count - expected) < 4 * (expected * (1 - share)) ** 0.5, priority

    def test_deadline_is_the_classes_own(self):
        spec = JobSpec(
            mix=((CRITICAL, 0.5), (SHEDDABLE, 0.5)), class_deadlines_s=((CRITICAL, 30.0), (SHEDDABLE, 300.0))
        )
        jobs = draw_jobs(ArrivalProfile(1.0), 200.0, spec, seed=4)
        assert {round(job.gives_up_s - job.arrival_s, 6) for job in jobs if job.priority is CRITICAL} == {
            30.0
        }
        assert {round(job.gives_up_s - job.arrival_s, 6) for job in jobs if job.priority is SHEDDABLE} == {
            300.0
        }

    def test_a_new_mix_keeps_the_arrivals(self):
        one = draw_jobs(ArrivalProfile(1.0), 300.0, JobSpec(), seed=5)
        other = draw_jobs(ArrivalProfile(1.0), 300.0, JobSpec(mix=((CRITICAL, 0.5), (DEFAULT, 0.5))), seed=5)
        assert [job.arrival_s for job in one] == [job.arrival_s for job in other]


class TestGatewayOrder:
    """Jobs ready at once are asked critical first, then default, then sheddable, each oldest first."""

    def test_critical_is_asked_first(self):
        jobs = [
            Job(0, 0.0, 5.0, 100.0, SHEDDABLE),
            Job(1, 0.0, 5.0, 100.0, DEFAULT),
            Job(2, 0.0, 5.0, 100.0, CRITICAL),
            Job(3, 0.0, 5.0, 100.0, DEFAULT),
        ]
        gate, controller, _, _ = gateway(jobs, [])
        gate.step(0.0)
        assert [number for number, _ in controller.asked] == [2, 1, 3, 0]


class TestReservationsInTheLoop:
    """The gpuwatch controller takes a slot per start: between two samples a GPU starts at most its slots."""

    def test_starts_between_samples_never_exceed_the_slots_offered(self):
        scenario = dataclasses.replace(one_gpu(inlet_c=45.0, cooling_factor=2.0), jobs=JobSpec(per_gpu=64))
        cluster = Cluster(scenario)
        cluster.per_gpu = 64
        controller = make_controller("gpuwatch", scenario, cluster, tick_s=0.5)
        try:
            for second in range(30):
                cluster.clock.advance(1.0 if second else 0.0)
                cluster.refresh()
                controller.observe(cluster.now_s)
            (decision,) = controller.decisions
            offered = decision.gpus[0].slots.of(DEFAULT)
            assert 0 < offered < 40  # the heat, not the concurrency limit, decides
            started = 0
            for number in range(40):
                answer = controller.decide(Job(number, 30.0, 20.0, 200.0), 30.0)
                if not isinstance(answer, Start):
                    break
                cluster.nodes[0].start(Job(number, 30.0, 20.0, 200.0), answer.gpu, 30.0)
                started += 1
            assert started == offered
        finally:
            controller.close()


def _result(
    name: str, completed: int, classes: dict[PriorityClass, int] | None = None, *, slow_s: float = 0.0
) -> ControllerResult:
    rows = tuple(
        ClassResult(priority, arrived=100, completed=done, timed_out=100 - done, p95_latency_s=30.0)
        for priority, done in (classes or {}).items()
    )
    return ControllerResult(
        controller=name,
        arrived=300,
        completed=completed,
        rejected=0,
        timed_out=300 - completed,
        unfinished=0,
        p50_latency_s=20.0,
        p95_latency_s=30.0,
        slowdown_gpu_s=slow_s,
        hw_slowdown_gpu_s=0.0,
        max_temperature_c=80.0,
        energy_kwh=1.0,
        timeline=None,  # type: ignore[arg-type] - the targets never read it
        by_class=rows,
    )


RELEASING = one_gpu()


class TestTargets:
    """The target lines: the oracle's share by spread, no fewer than static where it kept cool, classes."""

    def test_no_fewer_than_static_where_static_kept_out_of_slowdown(self):
        lines = report.targets(
            [_result("gpuwatch", 249), _result("static", 250), _result("oracle", 256)], RELEASING
        )
        assert "gpuwatch completed 249, no fewer than static's 250: MISSED" in lines
        lines = report.targets(
            [_result("gpuwatch", 250), _result("static", 250), _result("oracle", 256)], RELEASING
        )
        assert "gpuwatch completed 250, no fewer than static's 250: met" in lines

    def test_no_target_against_a_static_that_let_gpus_slow_down(self):
        static = _result("static", 260, slow_s=40.0)
        lines = report.targets([_result("gpuwatch", 255), static, _result("oracle", 260)], RELEASING)
        assert "gpuwatch completed 255, static 260 with 40 GPU·s of slowdown (no target): met" in lines

    def test_the_oracles_share_depends_on_the_spread(self):
        results = [_result("gpuwatch", 96), _result("oracle", 100)]
        assert "gpuwatch completed 96.0% of the oracle's 100 (target >= 97%): MISSED" in report.targets(
            results, RELEASING
        )
        wide = dataclasses.replace(RELEASING, spread=0.3)
        assert "gpuwatch completed 96.0% of the oracle's 100 (target >= 95%): met" in report.targets(
            results, wide
        )

    def test_a_proxy_that_never_releases_is_held_to_no_slowdown_only(self):
        never = dataclasses.replace(RELEASING, releases=False)
        results = [_result("gpuwatch", 200), _result("static", 250), _result("oracle", 260)]
        assert report.targets(results, never) == ["gpuwatch thermal slowdown 0 GPU·s (target 0): met"]
        told = dataclasses.replace(
            never, policy=dataclasses.replace(never.policy, job_seconds=((DEFAULT, 20.0),))
        )
        assert "gpuwatch completed 200, no fewer than static's 250: MISSED" in report.targets(results, told)

    def test_class_shares_against_the_oracle(self):
        ours = _result("gpuwatch", 254, {CRITICAL: 97, DEFAULT: 96, SHEDDABLE: 61})
        oracle = _result("oracle", 260, {CRITICAL: 99, DEFAULT: 100, SHEDDABLE: 61})
        lines = report.targets([ours, oracle], RELEASING)
        assert "gpuwatch completed 98.0% of the oracle's 99 critical jobs (target >= 99%): MISSED" in lines
        assert "gpuwatch completed 96.0% of the oracle's 100 default jobs (target >= 95%): met" in lines
        assert "gpuwatch completed 97.7% of the oracle's 260 (target >= 97%): met" in lines
        assert not report.met([ours, oracle], RELEASING)  # paid work short of the oracle's fails the run


@pytest.mark.slow
class TestViralLaunch:
    """The shipped viral-launch scenario prints per-class rows and JSON; gpuwatch serves paid work first."""

    def test_json_has_every_class_of_every_controller(self, tmp_path):
        # One node of the four, a quarter of the demand, through the first minutes of the surge.
        text = shipped_text("viral-launch")
        small = text.replace("count = 4", "count = 1").replace("per_s = 0.33", "per_s = 0.0825")
        path = tmp_path / "viral-launch.toml"
        path.write_text(small.replace("duration_s = 2700", "duration_s = 1200"), encoding="utf-8")
        result = invoke(str(path), "--json", "--controller=gpuwatch", "--controller=oracle", "--workers=2")
        document = json.loads(result.stdout)
        assert document["scenario"] == "viral-launch"
        for controller in document["controllers"]:
            classes = controller["classes"]
            assert set(classes) == {"critical", "default", "sheddable"}
            assert sum(row["completed"] for row in classes.values()) == controller["completed"]
        ours = next(c for c in document["controllers"] if c["controller"] == "gpuwatch")["classes"]
        done = {name: row["completed"] / row["arrived"] for name, row in ours.items()}
        assert done["critical"] >= done["default"] >= done["sheddable"]

    def test_the_shipped_file_is_a_tenfold_class_mix(self):
        scenario = open_scenario("viral-launch")
        assert scenario.jobs.classes == (CRITICAL, DEFAULT, SHEDDABLE)
        assert scenario.arrivals.peak_per_s >= 10 * scenario.arrivals.rate_at(0.0)
