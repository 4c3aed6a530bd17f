"""The same scenario and seed give the same table, in one process or several."""

from __future__ import annotations

import dataclasses

from sim_loop_helpers import HOT_TOML

from gpuwatch.simulate import report, runner
from gpuwatch.simulate.scenario_file import parse_scenario

SHORT = HOT_TOML.replace("duration_s = 600", "duration_s = 240")


class TestDeterminism:
    """Two runs of one seed print byte-identical reports; another seed prints another."""

    def test_same_seed_same_table(self):
        scenario = parse_scenario(SHORT)
        first = report.render(scenario, runner.run(scenario))
        second = report.render(scenario, runner.run(scenario))
        assert first == second

    def test_worker_processes_give_the_same_table(self):
        scenario = parse_scenario(SHORT)
        controllers = ("none", "gpuwatch")
        alone = report.render(scenario, runner.run(scenario, controllers))
        side_by_side = report.render(scenario, runner.run(scenario, controllers, workers=2))
        assert alone == side_by_side

    def test_another_seed_another_table(self):
        scenario = parse_scenario(SHORT)
        other = dataclasses.replace(scenario, seed=scenario.seed + 1)
        controllers = ("none",)
        assert report.table(runner.run(scenario, controllers)) != report.table(runner.run(other, controllers))
