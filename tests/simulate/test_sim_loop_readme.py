"""README.md's `## Simulated surges` shows what `gpuwatch simulate surge` prints today."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from gpuwatch.simulate import report, runner
from gpuwatch.simulate.shipped import open_scenario

README = Path(__file__).resolve().parents[2] / "README.md"


@pytest.mark.slow
class TestReadme:
    """The surge table in the README is the table the shipped scenario prints (same seed, same table)."""

    def test_surge_table_matches(self):
        text = README.read_text(encoding="utf-8")
        section = text.split("\n## Simulated surges\n", 1)[1].split("\n## ", 1)[0]
        shown = re.search(r"```\n\$ gpuwatch simulate surge[^\n]*\n(.*?)```", section, re.DOTALL)
        assert shown, "README: no `$ gpuwatch simulate surge` block under ## Simulated surges"
        scenario = open_scenario("surge")
        printed = report.render(scenario, runner.run(scenario, workers=2))
        assert shown.group(1).rstrip("\n") == printed
