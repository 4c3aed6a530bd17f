"""The `replay:FILE[?key=value&...]` spec: which file to play, and how.

Query parameters (joined with `&`; they override the keyword arguments of `open_replay`):

    columns=a,b,c   column list of an nvidia-smi CSV written with --format=csv,noheader
                    (the names given to --query-gpu, in order), e.g.
                    columns=timestamp,index,temperature.gpu,power.draw
    gpus=N          GPUs per poll, for an nvidia-smi CSV without an index, uuid or pci.bus_id
                    column (otherwise worked out from the timestamps)
    speed=X         play X times faster than recorded (0.5 = half speed); default 1
    loop=1          start over at the end instead of ending (1/0, true/false, yes/no)
    interval=S      seconds between polls of a CSV without a timestamp column; default 1
                    (nvidia-smi -l 1)

A path that exists as given is used whole, so a file name may itself contain `?`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path
from urllib.parse import parse_qsl

from gpuwatch.sources.base import SourceError

_TRUE_WORDS = frozenset({"1", "true", "yes", "on"})
_FALSE_WORDS = frozenset({"0", "false", "no", "off"})
KNOWN_PARAMETERS = ("columns", "gpus", "speed", "loop", "interval")


@dataclass(frozen=True, slots=True)
class ReplayOptions:
    """What a replay spec asks for, checked."""

    path: Path
    columns: tuple[str, ...] | None = None
    gpus: int | None = None
    speed: float = 1.0
    loop: bool = False
    interval_s: float = 1.0


def parse_spec(spec_path: str, *, speed: float = 1.0, loop: bool = False) -> ReplayOptions:
    """Options from what follows `replay:`; SourceError naming the bad parameter."""
    path_text, _, query = spec_path.partition("?")
    if query and Path(spec_path).exists():
        path_text, query = spec_path, ""
    if not path_text:
        raise SourceError("replay: no file given; use --source replay:FILE")
    try:
        pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=True) if query else []
    except ValueError:
        raise SourceError(f"replay:{spec_path}: bad query {query!r}; use ?key=value&key=value") from None
    options = ReplayOptions(path=Path(path_text), speed=_positive("speed", speed), loop=loop)
    for key, value in pairs:
        options = _apply(options, key, value, spec_path)
    return options


def _apply(options: ReplayOptions, key: str, value: str, spec_path: str) -> ReplayOptions:
    where = f"replay:{spec_path}: {key}={value!r}"
    if key == "columns":
        columns = tuple(name.strip() for name in value.split(",") if name.strip())
        if not columns:
            raise SourceError(f"{where}: give the column names, separated by commas")
        return replace(options, columns=columns)
    if key == "gpus":
        if not value.isdigit() or int(value) < 1:
            raise SourceError(f"{where}: expected a whole number of GPUs >= 1")
        return replace(options, gpus=int(value))
    if key == "speed":
        return replace(options, speed=_positive(where, _float(value, where)))
    if key == "interval":
        return replace(options, interval_s=_positive(where, _float(value, where)))
    if key == "loop":
        if value.lower() not in _TRUE_WORDS | _FALSE_WORDS:
            raise SourceError(f"{where}: expected 1 or 0 (true/false, yes/no)")
        return replace(options, loop=value.lower() in _TRUE_WORDS)
    raise SourceError(f"replay:{spec_path}: unknown parameter {key!r}; known: {', '.join(KNOWN_PARAMETERS)}")


def _float(value: str, where: str) -> float:
    try:
        return float(value)
    except ValueError:
        raise SourceError(f"{where}: expected a number") from None


def _positive(where: str, number: float) -> float:
    if not math.isfinite(number) or number <= 0:
        raise SourceError(f"{where}: expected a number > 0, got {number}")
    return number
