"""Tests of scenario files: what they describe, and errors that name file, line, key and value."""

from __future__ import annotations

from pathlib import Path

import pytest

from gpuwatch.sources.base import SourceError
from gpuwatch.sources.sim.scenario import (
    LoadSettings,
    Scenario,
    ScenarioError,
    ScenarioEvent,
    load_scenario,
    parse_scenario,
)
from gpuwatch.sources.tomlkeys import locate

SHIPPED = Path(__file__).parent.parent.parent / "gpuwatch" / "sources" / "sim" / "scenarios"

GOOD = """\
seed = 3
inlet_c = 30

[[gpus]]
sku = "h100"
count = 2

[[gpus]]
sku = "A100"

[load]
jobs = 1
arrival_per_s = 0.5
mean_job_s = 20

[[events]]
at_s = 90
inlet_c = 35

[[events]]
at_s = 30
gpus = [2]
cooling_factor = 2.5
jobs = 3
"""


class TestScenarioFile:
    """A scenario file becomes GPUs by index, environment, load and time-sorted events."""

    def test_full_example(self):
        scenario = parse_scenario(GOOD, "good.toml")
        assert scenario == Scenario(
            skus=("H100", "H100", "A100"),
            seed=3,
            inlet_c=30.0,
            load=LoadSettings(jobs=1, arrival_per_s=0.5, mean_job_s=20.0),
            events=(
                ScenarioEvent(at_s=30.0, gpus=(2,), cooling_factor=2.5, load=LoadSettings(jobs=3)),
                ScenarioEvent(at_s=90.0, inlet_c=35.0),
            ),
        )

    def test_defaults(self):
        scenario = parse_scenario('[[gpus]]\nsku = "H200"\n')
        assert scenario == Scenario(skus=("H200",), seed=None, inlet_c=25.0, load=None, events=())

    @pytest.mark.parametrize("name", ["cooling-fault.toml", "hot-aisle.toml"])
    def test_shipped_examples_load(self, name):
        scenario = load_scenario(SHIPPED / name)
        assert len(scenario.skus) == 8
        assert scenario.events


def error_for(text: str) -> ScenarioError:
    with pytest.raises(ScenarioError) as caught:
        parse_scenario(text, "node.toml")
    return caught.value


class TestScenarioErrors:
    """Each bad input raises ScenarioError naming the file, the line, the key and the bad value."""

    @pytest.mark.parametrize(
        ("text", "key", "line", "fragment"),
        [
            ('[[gpus]]\nsku = "B200"\n', "gpus[0].sku", 2, 'must be one of A100, H100, H200 (got "B200")'),
            ('[[gpus]]\nsku = "H100"\ncount = 0\n', "gpus[0].count", 3, "from 1 to 64 (got 0)"),
            ('inlet_c = true\n[[gpus]]\nsku = "H100"\n', "inlet_c", 1, "(got true)"),
            ('inlet_c = 95\n[[gpus]]\nsku = "H100"\n', "inlet_c", 1, "from -10 to 60 (got 95)"),
            ('[[gpus]]\nsku = "H100"\ncolor = "red"\n', "gpus[0].color", 3, "unknown key"),
            ("seed = 1\n", "gpus", None, "missing"),
            (
                (
                    '[[gpus]]\nsku = "H100"\n\n[[events]]\nat_s = 5\ninlet_c = 30\n\n[[events]]\nat_s = 9\n'
                    "cooling_factor = -2\n"
                ),
                "events[1].cooling_factor",
                10,
                "from 0.1 to 20 (got -2)",
            ),
            (
                '[[gpus]]\nsku = "H100"\n[[events]]\nat_s = 5\ncoling_factor = 2\n',
                "events[0].coling_factor",
                5,
                "",
            ),
            ('[[gpus]]\nsku = "H100"\n[[events]]\ninlet_c = 30\n', "events[0]", 3, "missing at_s"),
            ('[[gpus]]\nsku = "H100"\n[[events]]\nat_s = 5\n', "events[0]", 3, "changes nothing"),
            (
                '[[gpus]]\nsku = "H100"\ncount = 2\n[[events]]\nat_s = 5\ngpus = [0, 2]\njobs = 1\n',
                "events[0].gpus",
                6,
                "from 0 to 1 (got [0, 2])",
            ),
            ('[[gpus]]\nsku = "H100"\n[load]\njobs = 1.5\n', "load.jobs", 4, "whole number"),
            ('[[gpus]]\nsku = "H100"\n[load]\nmean_job_s = 0\n', "load.mean_job_s", 4, "(got 0)"),
            ('gpus = "H100"\n', "gpus", 1, 'array of tables ([[gpus]]) (got "H100")'),
        ],
    )
    def test_message_names_file_line_key_value(self, text, key, line, fragment):
        error = error_for(text)
        assert error.key == key
        assert error.line == line
        where = "node.toml" if line is None else f"node.toml:{line}"
        assert str(error).startswith(f"{where}: {key}: ")
        assert fragment in str(error)

    @pytest.mark.parametrize("comment", ["", "# big\n"])
    def test_too_many_gpus_points_at_the_first_gpus_table(self, comment):
        error = error_for(
            f'{comment}[[gpus]]\nsku = "H100"\ncount = 40\n[[gpus]]\nsku = "A100"\ncount = 40\n'
        )
        assert (error.key, error.line) == ("gpus", 1 + comment.count("\n"))
        assert "80 GPUs in all; at most 64" in str(error)

    def test_invalid_toml_names_the_decoder_line(self):
        error = error_for('[[gpus]]\nsku = "H100"\ninlet_c = = 3\n')
        assert error.line == 3
        assert str(error).startswith("node.toml:3: not valid TOML: ")

    def test_missing_file_names_the_path(self, tmp_path):
        with pytest.raises(ScenarioError, match=r"nowhere\.toml: cannot read"):
            load_scenario(tmp_path / "nowhere.toml")

    def test_is_a_source_error(self):
        assert issubclass(ScenarioError, SourceError)


class TestLocate:
    """Keys are found in their own table even when other tables use the same key name."""

    TEXT = """\
[[gpus]]
sku = "H100"

[load]
jobs = 1

[[events]]
at_s = 1
jobs = 2

[[events]]
at_s = 2
"""

    @pytest.mark.parametrize(
        ("path", "line"),
        [
            (("gpus", 0, "sku"), 2),
            (("load", "jobs"), 5),
            (("events", 0, "jobs"), 9),
            (("events", 1, "at_s"), 12),
            (("events", 1, "jobs"), 11),  # absent: the table's header
            (("events", 5, "jobs"), None),
        ],
    )
    def test_lines(self, path, line):
        assert locate(self.TEXT, path) == line

    def test_inline_tables_point_at_the_array(self):
        text = 'seed = 1\ngpus = [{ sku = "B200" }]\n'
        assert locate(text, ("gpus", 0, "sku")) == 2

    def test_dotted_keys_point_at_their_line(self):
        assert locate('[[gpus]]\nsku = "H100"\n', ("load", "jobs")) is None
        assert locate('seed = 1\nload.jobs = 1.5\n[[gpus]]\nsku = "H100"\n', ("load", "jobs")) == 2
