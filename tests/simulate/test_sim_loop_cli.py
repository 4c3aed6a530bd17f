"""`gpuwatch simulate`: the table, the plot, the progress bar, and errors that name the key and line."""

from __future__ import annotations

import io
import json
import struct

import pytest
from click.testing import CliRunner
from sim_loop_helpers import HOT_TOML

from gpuwatch.cli import main
from gpuwatch.simulate import plot
from gpuwatch.simulate.progress import ProgressBar

SHORT = HOT_TOML.replace("duration_s = 600", "duration_s = 120")


@pytest.fixture
def scenario_file(tmp_path):
    path = tmp_path / "hot.toml"
    path.write_text(SHORT)
    return path


def invoke(*args):
    return CliRunner().invoke(main, ["simulate", *args])


class TestSimulateCommand:
    """It prints one row per controller and the targets; --plot writes a PNG."""

    def test_prints_the_table(self, scenario_file):
        result = invoke(str(scenario_file), "--workers", "1")
        assert result.exit_code == 0, result.output
        lines = result.stdout.splitlines()
        assert lines[0] == "hot: two hot H100s"
        header = next(line for line in lines if line.startswith("controller"))
        assert "slowdown GPU·s" in header
        assert "p95 s" in header
        rows = [line.split()[0] for line in lines[lines.index(header) + 1 :][:4]]
        assert rows == ["none", "static", "gpuwatch", "oracle"]
        assert any(line.startswith("gpuwatch thermal slowdown 0 GPU·s (target 0): met") for line in lines)
        assert "x real time" in result.stderr

    def test_plot_writes_a_png(self, scenario_file, tmp_path):
        out = tmp_path / "run.png"
        only = ("--controller", "none", "--controller", "gpuwatch")
        result = invoke(str(scenario_file), "--workers", "1", *only, "--plot", str(out))
        assert result.exit_code == 0, result.output
        header = out.read_bytes()[:24]
        assert header[:8] == b"\x89PNG\r\n\x1a\n"
        width, height = struct.unpack(">II", header[16:24])
        assert width > height > 300

    def test_plot_without_matplotlib_says_which_extra(self, scenario_file, tmp_path, monkeypatch):
        def no_matplotlib(name):
            raise ImportError(name)

        monkeypatch.setattr(plot.importlib, "import_module", no_matplotlib)
        result = invoke(
            str(scenario_file), "--workers", "1", "--controller", "none", "--plot", str(tmp_path / "x.png")
        )
        assert result.exit_code == 2
        assert "pip install 'gpuwatch[plot]'" in result.stderr
        assert not (tmp_path / "x.png").exists()

    def test_seed_replaces_the_scenarios(self, scenario_file):
        first = invoke(str(scenario_file), "--workers", "1", "--controller", "none")
        second = invoke(str(scenario_file), "--workers", "1", "--controller", "none", "--seed", "99")
        assert "(seed 5)" in first.stdout
        assert "(seed 99)" in second.stdout

    def test_oracle_guard_keeps_the_oracle_that_far_below_max_operating(self, tmp_path):
        # The whole ten minutes: the heat sinks take minutes to bring the GPUs near their limit.
        scenario_file = tmp_path / "hot.toml"
        scenario_file.write_text(HOT_TOML)

        def hottest(*extra):
            result = invoke(str(scenario_file), "--workers", "1", "--controller", "oracle", *extra)
            assert result.exit_code == 0, result.output
            row = next(line for line in result.stdout.splitlines() if line.startswith("oracle"))
            return float(row.split()[-2])  # max °C, before energy

        # The sim's H100 reaches max operating at 87 °C: by default the oracle runs up to it.
        assert hottest() > 85.0
        assert hottest("--oracle-guard", "8") <= 87.0 - 8.0 + 0.05

    def test_plants_wide_draws_other_boards_and_says_so(self, scenario_file):
        shipped = invoke(str(scenario_file), "--workers", "1", "--controller", "none", "--json")
        wide = invoke(
            str(scenario_file), "--workers", "1", "--controller", "none", "--json", "--plants", "wide"
        )
        assert (json.loads(shipped.stdout)["plants"], json.loads(wide.stdout)["plants"]) == (
            "profiles",
            "wide",
        )
        hottest = [json.loads(r.stdout)["controllers"][0]["max_temperature_c"] for r in (shipped, wide)]
        assert hottest[0] != hottest[1]  # the same jobs on other boards heat otherwise
        table = invoke(str(scenario_file), "--workers", "1", "--controller", "none", "--plants", "wide")
        assert "each board's plant drawn from the wide family" in table.stdout

    def test_config_sets_gpuwatchs_policy(self, scenario_file, tmp_path):
        config = tmp_path / "policy.toml"
        config.write_text("[policy]\nhot_dwel_s = 5\n")
        result = invoke(str(scenario_file), "--config", str(config))
        assert result.exit_code == 2
        assert "policy.hot_dwel_s: unknown key" in result.stderr

    def test_gateway_options_say_how_leases_are_treated(self, scenario_file):
        released = invoke(str(scenario_file), "--controller", "gpuwatch", "--controller", "oracle")
        assert "gateways release each lease when its job ends" in released.stdout
        never = invoke(
            str(scenario_file), "--controller", "gpuwatch", "--controller", "oracle", "--no-release"
        )
        assert "gateways never release their leases (they end at their deadlines); no job length given" in (
            never.stdout
        )
        # A proxy that never releases is held to no slowdown alone (no share of the oracle's jobs).
        assert not any("of the oracle's" in line for line in never.stdout.splitlines())
        told = invoke(
            str(scenario_file), "--controller", "gpuwatch", "--no-release", "--job-seconds", "20", "--json"
        )
        document = json.loads(told.stdout)
        assert document["controllers"][0]["controller"] == "gpuwatch"
        delayed = invoke(str(scenario_file), "--controller", "gpuwatch", "--release-delay", "0.5")
        assert delayed.exit_code == 0, delayed.output

    def test_bad_scenario_names_file_line_and_key(self, tmp_path):
        path = tmp_path / "bad.toml"
        path.write_text(SHORT.replace("per_s = 0.4", "per_s = fast"))
        result = invoke(str(path))
        assert result.exit_code == 2
        assert f"gpuwatch: {path}:11: not valid TOML" in result.stderr

    def test_bad_value_names_file_line_and_key(self, tmp_path):
        path = tmp_path / "bad.toml"
        path.write_text(SHORT.replace("cooling_factor = 2.33", "cooling_factor = 0"))
        result = invoke(str(path))
        assert result.exit_code == 2
        assert (
            f"gpuwatch: {path}:8: nodes[0].cooling_factor: must be a number from 0.1 to 20 (got 0)"
            in result.stderr
        )

    def test_list_names_the_shipped_scenarios(self):
        result = invoke("--list")
        assert result.stdout.split() == [
            "surge",
            "cooling-failure",
            "hot-aisle",
            "steady",
            "viral-launch",
            "long-tail",
            "video-fan",
        ]

    def test_no_scenario_is_a_usage_error(self):
        result = invoke()
        assert result.exit_code == 2
        assert "give a SCENARIO" in result.stderr


class FakeTerminal(io.StringIO):
    """A stream that says it is a terminal."""

    def isatty(self) -> bool:
        return True


class TestProgressBar:
    """The bar shows on a terminal once a run has taken a second, and never elsewhere."""

    def test_draws_after_a_second_on_a_terminal(self):
        wall = iter([0.0, 0.5, 1.5, 1.55, 2.0])
        stream = FakeTerminal()
        bar = ProgressBar(stream, wall=lambda: next(wall))
        bar(0.1, "none")  # 0.5 s in: too early
        assert stream.getvalue() == ""
        bar(0.5, "gpuwatch")  # 1.5 s in: drawn
        bar(0.6, "gpuwatch")  # 0.05 s later: not redrawn yet
        assert stream.getvalue().count("\r") == 1
        assert " 50% gpuwatch" in stream.getvalue()
        bar(1.0, "oracle")
        bar.close()
        assert stream.getvalue().endswith("\r\033[K")

    def test_silent_when_not_a_terminal(self):
        stream = io.StringIO()
        bar = ProgressBar(stream, wall=iter([0.0, 5.0]).__next__)
        bar(0.5, "none")
        bar.close()
        assert stream.getvalue() == ""
