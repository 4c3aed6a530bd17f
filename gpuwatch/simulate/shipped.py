"""The scenarios shipped with gpuwatch (package data), found by name, and scenario arguments resolved."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from gpuwatch.simulate.scenario import Scenario, ScenarioError
from gpuwatch.simulate.scenario_file import load_scenario, parse_scenario

SHIPPED = ("surge", "cooling-failure", "hot-aisle", "steady", "viral-launch", "long-tail", "video-fan")


def shipped_text(name: str) -> str:
    """The TOML text of a shipped scenario."""
    return (
        resources.files("gpuwatch.simulate").joinpath("scenarios", f"{name}.toml").read_text(encoding="utf-8")
    )


def open_scenario(argument: str) -> Scenario:
    """A shipped scenario by name (`surge`), else a scenario file by path; ScenarioError if neither."""
    if argument in SHIPPED:
        return parse_scenario(shipped_text(argument), f"{argument}.toml (shipped)", argument)
    if not Path(argument).exists():
        raise ScenarioError(
            f"{argument}: no such scenario file, and not a shipped scenario ({', '.join(SHIPPED)})"
        )
    return load_scenario(argument)
