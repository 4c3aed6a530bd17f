"""Tests of SPEC strings (`sim:8xH100`, `sim:2xH100,2xA100`, a scenario path) and their errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from gpuwatch.sources.base import SourceError
from gpuwatch.sources.clock import ManualClock
from gpuwatch.sources.sim import open_sim
from gpuwatch.sources.sim.scenario import ScenarioError
from gpuwatch.sources.sim.source import scenario_from_spec

SCENARIOS = Path(__file__).parent.parent.parent / "gpuwatch" / "sources" / "sim" / "scenarios"


class TestSpec:
    """SPEC strings name GPUs by COUNTxSKU in any case, default to 8xH100, and bad ones say what is valid."""

    @pytest.mark.parametrize(
        ("spec", "skus"),
        [
            ("", ("H100",) * 8),
            ("sim", ("H100",) * 8),
            ("8xH100", ("H100",) * 8),
            ("4xh200", ("H200",) * 4),
            (" 2 X H100 , 2xa100 ", ("H100", "H100", "A100", "A100")),
            ("A100", ("A100",)),
            ("sim:1xH200", ("H200",)),
        ],
    )
    def test_good(self, spec, skus):
        assert scenario_from_spec(spec).skus == skus

    @pytest.mark.parametrize(
        ("spec", "problem"),
        [
            ("8xB200", "unknown SKU 'B200'"),
            ("0xH100", "GPU count must be 1 to 64, got 0"),
            ("65xH100", "GPU count must be 1 to 64, got 65"),
            ("40xH100,40xA100", "80 GPUs in all; at most 64"),
            ("8xH100,", "cannot read ''"),
            ("8x", "cannot read '8x'"),
            ("-1xH100", "cannot read '-1xH100'"),
        ],
    )
    def test_bad_names_problem_and_valid_skus(self, spec, problem):
        with pytest.raises(SourceError) as caught:
            open_sim(spec, ManualClock())
        message = str(caught.value)
        assert message.startswith(f"sim spec {spec!r}: {problem}")
        assert "valid SKUs: A100, H100, H200" in message

    def test_toml_path_opens_a_scenario(self):
        source = open_sim(str(SCENARIOS / "cooling-fault.toml"), ManualClock())
        assert source.gpu_count == 8
        assert source.seed == 42

    def test_bad_scenario_path_is_a_scenario_error(self, tmp_path):
        bad = tmp_path / "bad.toml"
        bad.write_text('[[gpus]]\nsku = "H100"\ncount = "eight"\n', encoding="utf-8")
        with pytest.raises(ScenarioError, match=r"bad\.toml:3: gpus\[0\]\.count: .*\(got \"eight\"\)"):
            open_sim(str(bad), ManualClock())

    @pytest.mark.parametrize(
        ("spec", "name"),
        [("", "sim"), ("sim", "sim"), ("2xA100", "sim:2xA100"), ("sim:1xH200", "sim:1xH200")],
    )
    def test_spec_property(self, spec, name):
        assert open_sim(spec, ManualClock()).spec == name
