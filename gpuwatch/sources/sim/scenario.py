"""Simulation scenarios: which GPUs, what load, and timed events, read from a TOML file.

A scenario describes one simulated node. Every key is optional except `gpus`:

    seed = 7                 # random load and uuids; default: the seed the caller passes
    inlet_c = 25.0           # air temperature at every GPU's inlet, °C (-10 to 60; default 25)
    cooling_factor = 1.0     # every GPU's R_sa times this from the start, settled there: a dense
                             #   chassis (0.1-20; default 1); events may change it later
    spread = 0.03            # each GPU's R, C and power per job drawn within ±this of its
                             #   SKU profile (0 to 0.9; default 0.03, a fleet's board-to-board spread)
    plant = "two-node"       # "two-node" (die and heat sink, the default) or "first-order", each
                             #   with `spread`; or a board unlike the profiles (plants.py, which
                             #   ignores `spread`): "wide" (each GPU from one of these at random),
                             #   "wide-two-node", "three-node", "lagged-sensor" or "fan-curve"

    [[gpus]]                 # one table per group of identical GPUs, in index order
    sku = "H100"             # H100, H200 or A100, any case
    count = 8                # 1 to 64 (default 1); at most 64 GPUs in all

    [load]                   # background load on every GPU; without this table, a seeded
    jobs = 1                 #   demo load. `jobs`: jobs held on each GPU (0-64)
    arrival_per_s = 0.02     # random job arrivals per GPU per second (Poisson, 0-100)
    mean_job_s = 60.0        # mean job duration, s (exponential, 0.1-86400; default 45)

    [[events]]               # timed changes, in seconds after the source opens
    at_s = 120               # required (0 or more)
    gpus = [3]               # GPU indexes it applies to; default all
    cooling_factor = 3.0     # R_sa, sink to air (°C/W), times this: 1 healthy, ~2-4 a failed fan (0.1-20)
    # and/or: inlet_c, jobs, arrival_per_s, mean_job_s as in [load] (at least one per event)

Unknown keys are errors, so a typo never passes silently. Every error is a `ScenarioError` naming
the file, the line, the key (`events[1].cooling_factor`, indexes from 0) and the bad value
(lines found by gpuwatch.sources.tomlkeys).
See scenarios/cooling-fault.toml for a commented example.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gpuwatch.sources.base import SourceError
from gpuwatch.sources.sim.plants import FAMILIES, WIDE
from gpuwatch.sources.sim.profiles import PROFILES, find_profile
from gpuwatch.sources.tomlcheck import TomlChecker
from gpuwatch.sources.tomlkeys import KeyPath, decode_error_line

MAX_GPUS = 64
DEFAULT_INLET_C = 25.0
DEFAULT_MEAN_JOB_S = 45.0
DEFAULT_SPREAD = 0.03
# The profiles' own plants, each drawn with the scenario's `spread`; then the wide family's.
LEGACY_PLANTS = ("two-node", "first-order")
PLANTS = (*LEGACY_PLANTS, WIDE, *(family for family in FAMILIES if family not in LEGACY_PLANTS))

_LOAD_KEYS = ("jobs", "arrival_per_s", "mean_job_s")
_EVENT_KEYS = ("at_s", "gpus", "inlet_c", "cooling_factor", *_LOAD_KEYS)
_RANGES: dict[str, tuple[float, float]] = {
    "inlet_c": (-10.0, 60.0),
    "cooling_factor": (0.1, 20.0),
    "arrival_per_s": (0.0, 100.0),
    "mean_job_s": (0.1, 86_400.0),
    "at_s": (0.0, 1e7),
    "jobs": (0, 64),
    "count": (1, MAX_GPUS),
    "seed": (0, 2**63 - 1),
    "spread": (0.0, 0.9),
}


class ScenarioError(SourceError):
    """A scenario file cannot be used; the message names file, line, key and value."""

    def __init__(self, message: str, *, key: str | None = None, line: int | None = None) -> None:
        super().__init__(message)
        self.key = key
        self.line = line


@dataclass(frozen=True, slots=True)
class LoadSettings:
    """A change to the load of a GPU; None leaves that part as it was."""

    jobs: int | None = None  # jobs held steadily
    arrival_per_s: float | None = None  # random arrivals per second
    mean_job_s: float | None = None  # mean duration of a random job, s


@dataclass(frozen=True, slots=True)
class ScenarioEvent:
    """Something that happens `at_s` seconds after the source opens, to some GPUs or all."""

    at_s: float
    gpus: tuple[int, ...] | None = None  # None = every GPU
    inlet_c: float | None = None
    cooling_factor: float | None = None
    load: LoadSettings = LoadSettings()


@dataclass(frozen=True, slots=True)
class Scenario:
    """A simulated node: one SKU name per GPU index, its environment, load and events."""

    skus: tuple[str, ...]
    seed: int | None = None  # None: the caller's seed
    inlet_c: float = DEFAULT_INLET_C
    cooling_factor: float = 1.0  # R_sa times this from the start (a dense chassis)
    load: LoadSettings | None = None  # None: the seeded demo load
    events: tuple[ScenarioEvent, ...] = ()  # sorted by time
    spread: float = DEFAULT_SPREAD  # each GPU's R, C and job power within ±this of its profile
    plant: str = "two-node"  # or "first-order": one RC node, for tests; or a plants.py family, or "wide"


def load_scenario(path: str | Path) -> Scenario:
    """Read and check a scenario file."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ScenarioError(f"{path}: cannot read the scenario file: {exc}") from exc
    return parse_scenario(text, str(path))


def parse_scenario(text: str, source: str = "<scenario>") -> Scenario:
    """Check scenario TOML text; `source` names it in error messages."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        line = decode_error_line(exc)
        where = source if line is None else f"{source}:{line}"
        raise ScenarioError(f"{where}: not valid TOML: {exc}", line=line) from exc
    return _Checker(text, source).scenario(data)


class _Checker(TomlChecker):
    """Turns parsed TOML into a Scenario, raising ScenarioError at the first bad key."""

    def __init__(self, text: str, source: str) -> None:
        super().__init__(text, source, _RANGES, ScenarioError)

    def scenario(self, data: dict[str, Any]) -> Scenario:
        """The whole document."""
        self.table(
            data, (), ("seed", "inlet_c", "cooling_factor", "spread", "plant", "gpus", "load", "events")
        )
        plant = self.string(data, (), "plant", "two-node")
        if plant not in PLANTS:
            raise self.fail(("plant",), f"must be one of {', '.join(PLANTS)}", plant)
        skus = self.gpus(data.get("gpus"))
        events = [
            self.event(raw, ("events", i), len(skus)) for i, raw in enumerate(self.array(data, "events"))
        ]
        return Scenario(
            skus=skus,
            seed=self.integer(data, (), "seed", None),
            inlet_c=self.number(data, (), "inlet_c", DEFAULT_INLET_C),
            cooling_factor=self.number(data, (), "cooling_factor", 1.0),
            load=self.load(data["load"], ("load",), _LOAD_KEYS) if "load" in data else None,
            events=tuple(sorted(events, key=lambda event: event.at_s)),
            spread=self.number(data, (), "spread", DEFAULT_SPREAD),
            plant=plant,
        )

    def gpus(self, value: object) -> tuple[str, ...]:
        """One SKU name per GPU index, from the [[gpus]] groups."""
        if value is None:
            raise self.fail(("gpus",), 'missing: add a [[gpus]] table with sku = "H100" and a count')
        skus: list[str] = []
        for i, raw in enumerate(self.array({"gpus": value}, "gpus")):
            group = self.table(raw, ("gpus", i), ("sku", "count"))
            name = group.get("sku")
            profile = find_profile(name) if isinstance(name, str) else None
            if profile is None:
                valid = ", ".join(sorted(PROFILES))
                raise self.fail(("gpus", i, "sku"), f"must be one of {valid}", name)
            skus.extend([profile.sku] * self.integer(group, ("gpus", i), "count", 1))
        if not skus:
            raise self.fail(("gpus",), "must list at least one GPU group", value)
        if len(skus) > MAX_GPUS:
            raise self.fail(("gpus",), f"{len(skus)} GPUs in all; at most {MAX_GPUS}")
        return tuple(skus)

    def load(self, value: object, path: KeyPath, allowed: tuple[str, ...]) -> LoadSettings:
        """The load keys of a [load] table or an event."""
        table = self.table(value, path, allowed)
        return LoadSettings(
            jobs=self.integer(table, path, "jobs", None),
            arrival_per_s=self.number(table, path, "arrival_per_s", None),
            mean_job_s=self.number(table, path, "mean_job_s", None),
        )

    def event(self, value: object, path: KeyPath, gpu_count: int) -> ScenarioEvent:
        """One [[events]] table."""
        table = self.table(value, path, _EVENT_KEYS)
        at_s = self.number(table, path, "at_s", None)
        if at_s is None:
            raise self.fail(path, "missing at_s (seconds after the start)")
        if not any(key in table for key in _EVENT_KEYS if key not in {"at_s", "gpus"}):
            raise self.fail(path, "changes nothing: add inlet_c, cooling_factor, jobs or arrival_per_s")
        return ScenarioEvent(
            at_s=at_s,
            gpus=self.indexes(table, path, gpu_count),
            inlet_c=self.number(table, path, "inlet_c", None),
            cooling_factor=self.number(table, path, "cooling_factor", None),
            load=self.load(table, path, _EVENT_KEYS),
        )

    def indexes(self, table: dict[str, Any], path: KeyPath, gpu_count: int) -> tuple[int, ...] | None:
        """The `gpus` list of an event: distinct GPU indexes, or None for all."""
        value = table.get("gpus")
        if value is None:
            return None
        ok = isinstance(value, list) and bool(value) and len(set(map(repr, value))) == len(value)
        if not ok or not all(type(i) is int and 0 <= i < gpu_count for i in value):
            problem = f"must be a non-empty list of distinct GPU indexes from 0 to {gpu_count - 1}"
            raise self.fail((*path, "gpus"), problem, value)
        return tuple(value)
