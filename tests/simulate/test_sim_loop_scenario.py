"""Simulate scenario files: what they describe, the shipped ones, and errors naming file, line and key."""

from __future__ import annotations

import pytest
from sim_loop_helpers import HOT_TOML

from gpuwatch.policy.decision import PriorityClass
from gpuwatch.simulate.scenario import ArrivalProfile, ScenarioError
from gpuwatch.simulate.scenario_file import load_scenario, parse_scenario
from gpuwatch.simulate.shipped import SHIPPED, open_scenario, shipped_text

FULL = """\
title = "full"
seed = 9
duration_s = 300
interval_s = 2.0

[[nodes]]
count = 2
name = "rack"
gpus = "2xH100,1xA100"
inlet_c = 28
cooling_factor = 1.5

[[nodes]]
gpus = "H200"

[arrivals]
per_s = 0.5
profile = [[0, 1], [60, 4], [120, 4.0]]

[jobs]
work_s = 15
work_cv = 0
per_gpu = 2
deadline_s = 45
class = "sheddable"

[[events]]
at_s = 200
nodes = [1]
gpus = [0]
cooling_factor = 3.0

[[events]]
at_s = 100
inlet_c = 33

[static]
pause_c = 80
resume_c = 70

[oracle]
horizon_s = 120

[policy]
default_guard_c = 2.5
sheddable_guard_c = 4.0
"""


class TestScenarioFile:
    """A scenario file becomes nodes with their GPUs, a workload, events in time order and settings."""

    def test_full_example(self):
        scenario = parse_scenario(FULL, "full.toml", "full")
        assert [node.name for node in scenario.nodes] == ["rack-0", "rack-1", "node2"]
        assert scenario.nodes[0].skus == ("H100", "H100", "A100")
        assert (scenario.nodes[1].inlet_c, scenario.nodes[1].cooling_factor) == (28.0, 1.5)
        assert (scenario.nodes[2].skus, scenario.nodes[2].inlet_c) == (("H200",), 25.0)
        assert (scenario.seed, scenario.duration_s, scenario.interval_s) == (9, 300.0, 2.0)
        assert scenario.jobs.mix == ((PriorityClass.SHEDDABLE, 1.0),)
        assert (scenario.jobs.per_gpu, scenario.jobs.deadline_s, scenario.jobs.work_cv) == (2, 45.0, 0.0)
        assert [event.at_s for event in scenario.events] == [100.0, 200.0]
        assert (scenario.events[1].nodes, scenario.events[1].gpus) == ((1,), (0,))
        assert (scenario.static.pause_c, scenario.static.resume_c, scenario.oracle.horizon_s) == (80, 70, 120)
        assert (scenario.policy.default_guard_c, scenario.policy.sheddable_guard_c) == (2.5, 4.0)

    def test_arrival_profile_is_linear_between_points_and_held_after(self):
        profile = ArrivalProfile(0.5, ((0.0, 1.0), (60.0, 4.0), (120.0, 4.0)))
        assert [profile.rate_at(t) for t in (0.0, 30.0, 60.0, 90.0, 500.0)] == [0.5, 1.25, 2.0, 2.0, 2.0]
        assert profile.peak_per_s == 2.0

    @pytest.mark.parametrize("name", SHIPPED)
    def test_shipped_scenarios_load_and_explain_themselves(self, name):
        scenario = open_scenario(name)
        assert scenario.name == name
        assert scenario.title
        assert shipped_text(name).startswith("# ")
        assert 1800 <= scenario.duration_s <= 3600

    def test_a_file_by_path(self, tmp_path):
        path = tmp_path / "mine.toml"
        path.write_text(HOT_TOML)
        assert open_scenario(str(path)).name == "mine"

    def test_neither_a_file_nor_shipped(self):
        with pytest.raises(ScenarioError, match="not a shipped scenario"):
            open_scenario("no-such-scenario")


class TestErrors:
    """Every mistake is refused with the file, the line and the key."""

    @pytest.mark.parametrize(
        ("old", "new", "expected"),
        [
            ("seed = 5", "seed = 5\nsead = 6", r"^hot\.toml:3: sead: unknown key"),
            ('gpus = "2xH100"', 'gpus = "2xB200"', r"^hot\.toml:6: nodes\[0\]\.gpus: .*unknown SKU 'B200'"),
            (
                "inlet_c = 35.0",
                "inlet_c = 95.0",
                r"^hot\.toml:7: nodes\[0\]\.inlet_c: must be a number from -10 to 60 \(got 95\.0\)",
            ),
            ("per_s = 0.4", "per_s = -1", r"^hot\.toml:11: arrivals\.per_s: must be a number"),
            ("per_gpu = 3", "per_gpu = 2.5", r"^hot\.toml:16: jobs\.per_gpu: must be a whole number"),
            (
                "deadline_s = 90.0",
                'class = "vip"',
                r"^hot\.toml:17: jobs\.class: must be one of critical, default, sheddable",
            ),
            (
                "per_s = 0.4",
                "per_s = 0.4\nprofile = [[5, 1]]",
                r"^hot\.toml:12: arrivals\.profile: .*the first at 0",
            ),
            (
                "duration_s = 600",
                "duration_s = 600\n[policy]\nstate_hold = 3",
                r"^hot\.toml:5: policy\.state_hold: unknown key; did you mean 'state_hold_s'",
            ),
            (
                "duration_s = 600",
                "duration_s = 600\n[policy]\nhot_dwell_s = 3",
                r"^hot\.toml:5: policy\.hot_dwell_s: retired: no dwells now",
            ),
            (
                "duration_s = 600",
                "duration_s = 600\n[[events]]\nat_s = 5\nnodes = [3]\ninlet_c = 30",
                r"^hot\.toml:6: events\[0\]\.nodes: must be a non-empty list of distinct indexes from 0 to 0",
            ),
            (
                "duration_s = 600",
                "duration_s = 600\n[[events]]\nat_s = 5",
                r"^hot\.toml:4: events\[0\]: changes nothing",
            ),
            (
                "duration_s = 600",
                "duration_s = 600\n[static]\npause_c = 70\nresume_c = 80",
                r"^hot\.toml:6: static\.resume_c: must be at most pause_c",
            ),
            (
                "seed = 5",
                'seed = 5\nplants = "wild"',
                r'^hot\.toml:3: plants: must be one of profiles, wide \(got "wild"\)',
            ),
        ],
    )
    def test_bad_value_names_file_line_and_key(self, old, new, expected):
        assert old in HOT_TOML
        with pytest.raises(ScenarioError, match=expected) as caught:
            parse_scenario(HOT_TOML.replace(old, new, 1), "hot.toml")
        assert caught.value.line is not None
        assert caught.value.key

    def test_missing_nodes(self):
        with pytest.raises(ScenarioError, match=r"nodes: missing"):
            parse_scenario("duration_s = 60\n[arrivals]\nper_s = 1\n", "x.toml")

    def test_missing_duration(self):
        with pytest.raises(ScenarioError, match=r"missing duration_s"):
            parse_scenario('[[nodes]]\ngpus = "H100"\n[arrivals]\nper_s = 1\n', "x.toml")

    def test_not_toml_names_the_line(self):
        with pytest.raises(ScenarioError, match=r"^x\.toml:2: not valid TOML") as caught:
            parse_scenario("duration_s = 60\nnodes = ]\n", "x.toml")
        assert caught.value.line == 2

    def test_unreadable_file(self, tmp_path):
        with pytest.raises(ScenarioError, match="cannot read the scenario file"):
            load_scenario(tmp_path / "missing.toml")
