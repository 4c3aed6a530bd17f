"""docs/simulation.md (Simulated surges) shows what `gpuwatch simulate surge` prints today."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from gpuwatch.simulate import report, runner
from gpuwatch.simulate.shipped import open_scenario

PAGE = Path(__file__).resolve().parents[2] / "docs" / "simulation.md"


@pytest.mark.slow
class TestReadme:
    """The surge table in the docs is the table the shipped scenario prints (same seed, same table)."""

    def test_surge_table_matches(self):
        text = PAGE.read_text(encoding="utf-8")
        shown = re.search(r"```\w*\n\$ gpuwatch simulate surge[^\n]*\n(.*?)```", text, re.DOTALL)
        assert shown, "docs/simulation.md: no `$ gpuwatch simulate surge` block"
        scenario = open_scenario("surge")
        printed = report.render(scenario, runner.run(scenario, workers=2))
        assert shown.group(1).rstrip("\n") == printed
