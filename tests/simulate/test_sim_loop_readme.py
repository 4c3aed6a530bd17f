"""docs/simulation.md shows what `gpuwatch simulate surge` and `viral-launch` print today."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from gpuwatch.simulate import report, runner
from gpuwatch.simulate.shipped import open_scenario

PAGE = Path(__file__).resolve().parents[2] / "docs" / "simulation.md"


@pytest.mark.slow
class TestReadme:
    """The tables in the docs are the tables the shipped scenarios print (same seed, same table)."""

    @pytest.mark.parametrize("name", ["surge", "viral-launch"])
    def test_table_matches(self, name):
        text = PAGE.read_text(encoding="utf-8")
        shown = re.search(rf"```\w*\n\$ gpuwatch simulate {re.escape(name)}[^\n]*\n(.*?)```", text, re.DOTALL)
        assert shown, f"docs/simulation.md: no `$ gpuwatch simulate {name}` block"
        scenario = open_scenario(name)
        printed = report.render(scenario, runner.run(scenario, workers=2))
        assert shown.group(1).rstrip("\n") == printed
