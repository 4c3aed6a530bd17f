"""Reads a `gpuwatch simulate` scenario from TOML; every error names the file, the line and the key.

Every key but `duration_s`, `[[nodes]]` and `[arrivals]` is optional (defaults in scenario.py):

    title = "..."               # one line shown above the table and the plot
    seed = 1                    # arrivals, job lengths, Retry-After jitter (same seed, same table)
    duration_s = 2700           # virtual seconds simulated (arrivals stop, the run ends)
    interval_s = 1.0            # gpuwatch's sampling interval, s
    spread = 0.03               # each GPU's R, C and power per job within ±this of its profile
    plants = "profiles"         # or "wide": each GPU's plant drawn from sources/sim/plants.py's
                                #   families, a decade either side of the profiles (spread unused)

    [[nodes]]                   # a group of identical nodes, in index order
    count = 2                   # nodes in the group (default 1); names get -0, -1, ...
    name = "rack-a"             # default node<index>
    gpus = "4xH100"             # GPUs per node, as `--source sim:SPEC`: H100, H200, A100
    inlet_c = 30.0              # inlet air, °C (default 25)
    cooling_factor = 2.0        # heat sink to air resistance x this (1: the SKU's well-cooled board)

    [arrivals]                  # Poisson arrivals over the whole cluster
    per_s = 0.3                 # jobs per second at multiplier 1
    profile = [[0, 1], [600, 1], [900, 10]]   # [seconds, multiplier], linear in between

    [jobs]
    work_s = 20.0               # mean run time at full clocks, s (lognormal)
    work_cv = 0.5               # its coefficient of variation (0: all equal)
    per_gpu = 3                 # concurrency limit: jobs one GPU runs at once
    deadline_s = 120.0          # a job not started by then gives up; or by class:
                                #   deadline_s = {critical = 60, default = 120, sheddable = 300}
    class = "default"           # priority class asked of gpuwatch; or a mix of them:
                                #   mix = {critical = 0.15, default = 0.35, sheddable = 0.5}

    [[events]]                  # changes to the air or cooling
    at_s = 900                  # required
    nodes = [0]                 # node indexes (default: all); gpus = [..] within them
    inlet_c = 45.0              # and/or cooling_factor

    [static]                    # pause_c = 83.0, resume_c = 75.0, poll_s = 1.0
    [oracle]                    # horizon_s = 600.0, guard_c = 0.5
    [policy]                    # gpuwatch's policy, as in `gpuwatch serve --config`
"""

from __future__ import annotations

import math
import tomllib
from pathlib import Path
from typing import Any

from gpuwatch.policy.config import PolicyConfig, PolicyConfigError
from gpuwatch.policy.decision import PriorityClass
from gpuwatch.simulate.scenario import (
    PLANT_CHOICES,
    ArrivalProfile,
    ClassShares,
    JobSpec,
    NodeSpec,
    OracleSettings,
    Scenario,
    ScenarioError,
    ScenarioEvent,
    StaticSettings,
)
from gpuwatch.simulate.toml_checks import ScenarioChecker
from gpuwatch.sources.base import SourceError
from gpuwatch.sources.sim.source import scenario_from_spec
from gpuwatch.sources.tomlcheck import where
from gpuwatch.sources.tomlkeys import KeyPath, decode_error_line

_TOP = (
    "title",
    "seed",
    "duration_s",
    "interval_s",
    "spread",
    "plants",
    "nodes",
    "arrivals",
    "jobs",
    "events",
)
_TABLES = ("static", "oracle", "policy")
_NODE_KEYS = ("count", "name", "gpus", "inlet_c", "cooling_factor")
_EVENT_KEYS = ("at_s", "nodes", "gpus", "inlet_c", "cooling_factor")
_JOB_KEYS = ("work_s", "work_cv", "per_gpu", "deadline_s", "class", "mix")
MAX_NODES = 64
# (low, high) of every number; integers are checked as whole numbers within the same range.
_RANGES: dict[str, tuple[float, float]] = {
    "seed": (0, 2**63 - 1),
    "duration_s": (1.0, 7 * 86_400.0),
    "interval_s": (0.1, 60.0),
    "count": (1, MAX_NODES),
    "inlet_c": (-10.0, 60.0),
    "cooling_factor": (0.1, 20.0),
    "per_s": (0.0, 10_000.0),
    "work_s": (0.1, 86_400.0),
    "work_cv": (0.0, 5.0),
    "per_gpu": (1, 64),
    "deadline_s": (0.0, 86_400.0),
    "at_s": (0.0, 7 * 86_400.0),
    "pause_c": (0.0, 150.0),
    "resume_c": (0.0, 150.0),
    "poll_s": (0.1, 600.0),
    "horizon_s": (1.0, 86_400.0),
    "guard_c": (0.0, 20.0),
    "share": (0.0, 1.0),
    "spread": (0.0, 0.9),
}


def load_scenario(path: str | Path) -> Scenario:
    """Read and check a scenario file; its name is the file's stem."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ScenarioError(f"{path}: cannot read the scenario file: {exc}") from exc
    return parse_scenario(text, str(path), Path(path).stem)


def parse_scenario(text: str, source: str = "<scenario>", name: str = "scenario") -> Scenario:
    """Check scenario TOML text; `source` names it in error messages."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        line = decode_error_line(exc)
        raise ScenarioError(f"{where(source, line)}: not valid TOML: {exc}", line=line) from exc
    return _Checker(text, source).scenario(data, name)


class _Checker(ScenarioChecker):
    """Turns parsed TOML into a Scenario, raising ScenarioError at the first bad key."""

    def __init__(self, text: str, source: str) -> None:
        super().__init__(text, source, _RANGES)

    def scenario(self, data: dict[str, Any], name: str) -> Scenario:
        """The whole document."""
        self.table(data, (), _TOP + _TABLES)
        if "duration_s" not in data:
            raise self.fail((), "missing duration_s: the virtual seconds to simulate")
        nodes = self.nodes(data)
        return Scenario(
            name=name,
            title=self.text(data, (), "title", ""),
            seed=self.integer(data, (), "seed", 1),
            duration_s=self.number(data, (), "duration_s", 0.0),
            interval_s=self.number(data, (), "interval_s", 1.0),
            spread=self.number(data, (), "spread", 0.03),
            plants=self.plants(data),
            nodes=nodes,
            arrivals=self.arrivals(data.get("arrivals")),
            jobs=self.jobs(data.get("jobs", {})),
            events=self.events(data, nodes),
            static=self.static(data.get("static", {})),
            oracle=self.oracle(data.get("oracle", {})),
            policy=self.policy(data.get("policy", {})),
        )

    def nodes(self, data: dict[str, Any]) -> tuple[NodeSpec, ...]:
        """Every node, groups expanded in order."""
        groups = self.array(data, "nodes")
        if not groups:
            raise self.fail(("nodes",), 'missing: add a [[nodes]] table with gpus = "4xH100"')
        nodes: list[NodeSpec] = []
        for i, raw in enumerate(groups):
            path: KeyPath = ("nodes", i)
            group = self.table(raw, path, _NODE_KEYS)
            count = self.integer(group, path, "count", 1)
            skus = self.skus(group, path)
            inlet_c = self.number(group, path, "inlet_c", 25.0)
            cooling = self.number(group, path, "cooling_factor", 1.0)
            base = self.text(group, path, "name", "")
            for k in range(count):
                name = (f"{base}-{k}" if count > 1 else base) if base else f"node{len(nodes)}"
                nodes.append(NodeSpec(name, skus, inlet_c, cooling))
        if len(nodes) > MAX_NODES:
            raise self.fail(("nodes",), f"{len(nodes)} nodes in all; at most {MAX_NODES}")
        return tuple(nodes)

    def skus(self, group: dict[str, Any], path: KeyPath) -> tuple[str, ...]:
        """The GPUs of one node, from a sim SPEC such as "4xH100" or "2xH100,2xA100"."""
        spec = group.get("gpus")
        if not isinstance(spec, str) or spec.lower().endswith(".toml") or "/" in spec:
            raise self.fail((*path, "gpus"), 'must be a GPU list such as "4xH100" or "2xH100,2xA100"', spec)
        try:
            return scenario_from_spec(spec).skus
        except SourceError as exc:
            raise self.fail((*path, "gpus"), str(exc)) from exc

    def arrivals(self, value: object) -> ArrivalProfile:
        """The [arrivals] table."""
        if value is None:
            raise self.fail(("arrivals",), "missing: add an [arrivals] table with per_s")
        table = self.table(value, ("arrivals",), ("per_s", "profile"))
        if "per_s" not in table:
            raise self.fail(("arrivals",), "missing per_s: jobs per second at multiplier 1")
        per_s = self.number(table, ("arrivals",), "per_s", 0.0)
        return ArrivalProfile(per_s, self.profile(table.get("profile", [[0, 1]])))

    def profile(self, value: object) -> tuple[tuple[float, float], ...]:
        """[[seconds, multiplier], ...], starting at 0, times strictly increasing, multipliers >= 0."""
        path: KeyPath = ("arrivals", "profile")
        problem = "must be a list of [seconds, multiplier] pairs, the first at 0, times increasing"
        if not isinstance(value, list) or not value:
            raise self.fail(path, problem, value)
        points: list[tuple[float, float]] = []
        for pair in value:
            numbers = isinstance(pair, list) and len(pair) == 2
            if not numbers or not all(_is_number(item) and item >= 0 for item in pair):
                raise self.fail(path, problem, pair)
            if (not points and pair[0] != 0) or (points and pair[0] <= points[-1][0]):
                raise self.fail(path, problem, pair)
            points.append((float(pair[0]), float(pair[1])))
        return tuple(points)

    def jobs(self, value: object) -> JobSpec:
        """The [jobs] table."""
        path: KeyPath = ("jobs",)
        table = self.table(value, path, _JOB_KEYS)
        defaults = JobSpec()
        if "class" in table and "mix" in table:
            raise self.fail((*path, "mix"), "give either class (every job alike) or mix (shares by class)")
        mix = defaults.mix
        if "class" in table:
            mix = ((self.priority(table.get("class"), (*path, "class")), 1.0),)
        elif "mix" in table:
            mix = self.shares(table["mix"], (*path, "mix"))
        deadline_s, by_class = defaults.deadline_s, defaults.class_deadlines_s
        raw_deadline = table.get("deadline_s")
        if isinstance(raw_deadline, dict):
            by_class = self.by_class(raw_deadline, (*path, "deadline_s"), "deadline_s")
            missing = [cls.value for cls, share in mix if share > 0 and cls not in dict(by_class)]
            if missing:
                raise self.fail((*path, "deadline_s"), f"missing for {', '.join(missing)}")
        else:
            deadline_s = self.number(table, path, "deadline_s", defaults.deadline_s)
        return JobSpec(
            work_s=self.number(table, path, "work_s", defaults.work_s),
            work_cv=self.number(table, path, "work_cv", defaults.work_cv),
            per_gpu=self.integer(table, path, "per_gpu", defaults.per_gpu),
            deadline_s=deadline_s,
            mix=mix,
            class_deadlines_s=by_class,
        )

    def priority(self, name: object, path: KeyPath) -> PriorityClass:
        """A class name."""
        try:
            return PriorityClass(str(name))
        except ValueError:
            valid = ", ".join(cls.value for cls in PriorityClass)
            raise self.fail(path, f"must be one of {valid}", name) from None

    def by_class(self, value: dict[str, Any], path: KeyPath, range_key: str) -> ClassShares:
        """A {class = number} table, each number within `range_key`'s range, in class order."""
        low, high = _RANGES[range_key]
        found = {}
        for name, number in value.items():
            priority = self.priority(name, (*path, name))
            if not _is_number(number) or not low <= number <= high:
                raise self.fail((*path, name), f"must be a number from {low:g} to {high:g}", number)
            found[priority] = float(number)
        return tuple((cls, found[cls]) for cls in PriorityClass if cls in found)

    def shares(self, value: object, path: KeyPath) -> ClassShares:
        """The [jobs] mix: {class = share}, shares >= 0 summing to 1 (within 0.001)."""
        if not isinstance(value, dict) or not value:
            example = "{critical = 0.2, default = 0.8}"
            raise self.fail(path, f"must be a table of shares by class, e.g. {example}", value)
        shares = self.by_class(value, path, "share")
        total = sum(share for _, share in shares)
        if abs(total - 1.0) > 1e-3:
            raise self.fail(path, f"shares must sum to 1, got {total:g}", value)
        return shares

    def events(self, data: dict[str, Any], nodes: tuple[NodeSpec, ...]) -> tuple[ScenarioEvent, ...]:
        """The [[events]], sorted by time."""
        events = [self.event(raw, ("events", i), nodes) for i, raw in enumerate(self.array(data, "events"))]
        return tuple(sorted(events, key=lambda event: event.at_s))

    def event(self, value: object, path: KeyPath, nodes: tuple[NodeSpec, ...]) -> ScenarioEvent:
        """One [[events]] table."""
        table = self.table(value, path, _EVENT_KEYS)
        if "at_s" not in table:
            raise self.fail(path, "missing at_s (seconds after the start)")
        if "inlet_c" not in table and "cooling_factor" not in table:
            raise self.fail(path, "changes nothing: add inlet_c or cooling_factor")
        chosen = self.indexes(table, path, "nodes", len(nodes))
        within = min(len(nodes[i].skus) for i in (chosen or range(len(nodes))))
        return ScenarioEvent(
            at_s=self.number(table, path, "at_s", 0.0),
            nodes=chosen,
            gpus=self.indexes(table, path, "gpus", within),
            inlet_c=self.number(table, path, "inlet_c", math.nan) if "inlet_c" in table else None,
            cooling_factor=(
                self.number(table, path, "cooling_factor", math.nan) if "cooling_factor" in table else None
            ),
        )

    def plants(self, data: dict[str, Any]) -> str:
        """`plants`: "profiles" or "wide"."""
        plants = self.string(data, (), "plants", "profiles")
        if plants not in PLANT_CHOICES:
            raise self.fail(("plants",), f"must be one of {', '.join(PLANT_CHOICES)}", plants)
        return plants

    def static(self, value: object) -> StaticSettings:
        """The [static] table."""
        table = self.table(value, ("static",), ("pause_c", "resume_c", "poll_s"))
        d = StaticSettings()
        pause_c = self.number(table, ("static",), "pause_c", d.pause_c)
        resume_c = self.number(table, ("static",), "resume_c", d.resume_c)
        if resume_c > pause_c:
            raise self.fail(("static", "resume_c"), f"must be at most pause_c ({pause_c:g})", resume_c)
        return StaticSettings(pause_c, resume_c, self.number(table, ("static",), "poll_s", d.poll_s))

    def oracle(self, value: object) -> OracleSettings:
        """The [oracle] table."""
        table = self.table(value, ("oracle",), ("horizon_s", "guard_c"))
        d = OracleSettings()
        return OracleSettings(
            horizon_s=self.number(table, ("oracle",), "horizon_s", d.horizon_s),
            guard_c=self.number(table, ("oracle",), "guard_c", d.guard_c),
        )

    def policy(self, value: object) -> PolicyConfig:
        """The [policy] table: gpuwatch's own settings and checks."""
        if not isinstance(value, dict):
            raise self.fail(("policy",), "must be a table [policy]", value)
        try:
            return PolicyConfig.from_mapping(value)
        except PolicyConfigError as exc:
            raise self.fail(("policy", exc.key), str(exc).removeprefix(f"policy.{exc.key}: ")) from exc


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
