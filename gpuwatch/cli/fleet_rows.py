"""One row per node for `gpuwatch fleet`: what each node decided, hottest first, as a table or JSON."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import click

from gpuwatch.cli.check import EXIT_OK, EXIT_PROBLEM, EXIT_UNKNOWN, judge
from gpuwatch.cli.daemon_view import CLASS_LETTERS, STATE_COLOURS
from gpuwatch.cli.table import MISSING, format_table
from gpuwatch.policy.decision import ThermalState

CLASSES = tuple(name for name, _ in CLASS_LETTERS)
UNREACHABLE = "unreachable"
HEADERS = (
    "NODE",
    "STATE",
    "PRESSURE",
    "FREE C/D/S",
    "GPUS",
    "WORST GPU",
    "MARGIN",
    "TO SLOWDOWN",
    "SAMPLE AGE",
)
_STATE_COLUMN = HEADERS.index("STATE")


@dataclass(frozen=True, slots=True)
class WorstGpu:
    """The node's GPU with the highest pressure (the lowest margin among equals)."""

    index: int
    pressure: float | None
    margin_c: float | None
    time_to_slowdown_s: float | None


@dataclass(frozen=True, slots=True)
class NodeRow:
    """What one node said, or why it said nothing (`error`)."""

    node: str
    state: str = UNREACHABLE
    pressure: float | None = None
    slots: Mapping[str, int] = field(default_factory=dict)
    admits: tuple[str, ...] = ()
    gpus: int | None = None
    worst: WorstGpu | None = None
    sample_age_s: float | None = None
    # Exit status `gpuwatch check` would give for this node alone.
    status: int = EXIT_UNKNOWN
    error: str | None = None

    @property
    def reachable(self) -> bool:
        """False for a node that gave no readable answer."""
        return self.error is None

    def to_json(self) -> dict[str, Any]:
        """The row in `gpuwatch fleet --json`."""
        worst = self.worst
        return {
            "node": self.node,
            "reachable": self.reachable,
            "error": self.error,
            "state": self.state,
            "pressure": self.pressure,
            "slots": dict(self.slots) if self.reachable else None,
            "admits": list(self.admits),
            "gpus": self.gpus,
            "worst_gpu": None
            if worst is None
            else {
                "index": worst.index,
                "pressure": worst.pressure,
                "margin_c": worst.margin_c,
                "time_to_slowdown_s": worst.time_to_slowdown_s,
            },
            "sample_age_s": self.sample_age_s,
        }


def unreachable(node: str, error: str) -> NodeRow:
    """The row of a node that gave no answer: it says why, and counts as unknown."""
    return NodeRow(node=node, error=error)


def worst_gpu(gpus: Sequence[WorstGpu]) -> WorstGpu | None:
    """The hottest GPU: highest pressure, then lowest margin; unknown values count as cool."""
    if not gpus:
        return None
    return max(
        gpus,
        key=lambda gpu: (
            -1.0 if gpu.pressure is None else gpu.pressure,
            -math.inf if gpu.margin_c is None else -gpu.margin_c,
            -gpu.index,
        ),
    )


def finite_or_none(value: object) -> float | None:
    """A number from a JSON answer; None for null, NaN and infinities (they would break the order)."""
    if value is None:
        return None
    number = float(value)  # type: ignore[arg-type]
    return number if math.isfinite(number) else None


def row_from_state(node: str, document: Mapping[str, Any]) -> NodeRow:
    """The row for a daemon's `/v1/state` document; one that does not read as one is unreachable."""
    try:
        gpus = [
            WorstGpu(
                index=int(gpu["index"]),
                pressure=finite_or_none(gpu.get("pressure")),
                margin_c=finite_or_none(gpu.get("margin_c")),
                time_to_slowdown_s=finite_or_none(gpu.get("time_to_slowdown_s")),
            )
            for gpu in document["gpus"]
        ]
        free = document.get("slots") or {}
        slots = {name: int(free.get(name, 0)) for name in CLASSES}
        return NodeRow(
            node=node,
            state=str(ThermalState(document["state"])),
            pressure=finite_or_none(document["pressure"]),
            slots=slots,
            admits=tuple(str(name) for name in document.get("admits") or ()),
            gpus=len(gpus),
            worst=worst_gpu(gpus),
            sample_age_s=finite_or_none(document.get("sample_age_s")),
            status=judge(document).status,
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        return unreachable(node, f"its /v1/state answer is not readable ({exc!r})")


def hottest_first(rows: Sequence[NodeRow]) -> list[NodeRow]:
    """Worst first; the nodes that did not answer after all the others.

    By state (as worst-of ranks them), then the hottest GPU's pressure and margin, then the node's
    mean pressure. That mean reads low for one critical GPU among eight cool ones, so the state and
    the worst GPU come first.
    """

    def key(row: NodeRow) -> tuple[bool, int, float, float, float, str]:
        if not row.reachable:
            return (True, 0, 0.0, 0.0, 0.0, row.node)
        worst = row.worst
        worst_pressure = worst.pressure if worst and worst.pressure is not None else -1.0
        margin = worst.margin_c if worst and worst.margin_c is not None else math.inf
        severity = ThermalState(row.state).severity
        return (False, -severity, -worst_pressure, margin, -(row.pressure or 0.0), row.node)

    return sorted(rows, key=key)


def fleet_status(rows: Sequence[NodeRow]) -> int:
    """1 when a node has a problem `check` would report, else 2 when one did not answer, else 0."""
    if any(row.status == EXIT_PROBLEM for row in rows if row.reachable):
        return EXIT_PROBLEM
    if not rows or any(not row.reachable or row.status == EXIT_UNKNOWN for row in rows):
        return EXIT_UNKNOWN
    return EXIT_OK


def summary(rows: Sequence[NodeRow]) -> dict[str, Any]:
    """Fleet totals: nodes, GPUs, nodes admitting each class, free slots by class."""
    answered = [row for row in rows if row.reachable]
    return {
        "nodes": len(rows),
        "unreachable": len(rows) - len(answered),
        "gpus": sum(row.gpus or 0 for row in answered),
        "nodes_admitting": {name: sum(name in row.admits for row in answered) for name in CLASSES},
        "free_slots": {name: sum(row.slots.get(name, 0) for row in answered) for name in CLASSES},
    }


def fleet_document(rows: Sequence[NodeRow], source: str) -> dict[str, Any]:
    """`gpuwatch fleet --json`: where the rows came from, the totals, and the rows hottest first."""
    ordered = hottest_first(rows)
    return {
        "source": source,
        "status": fleet_status(ordered),
        "summary": summary(ordered),
        "nodes": [row.to_json() for row in ordered],
    }


def _number(value: float | None, template: str) -> str:
    return MISSING if value is None else template.format(value)


def _cells(row: NodeRow) -> tuple[str, ...]:
    if not row.reachable:
        return (row.node, row.state, *([MISSING] * (len(HEADERS) - 2)))
    worst = row.worst
    return (
        row.node,
        row.state,
        _number(row.pressure, "{:.2f}"),
        "/".join(str(row.slots.get(name, 0)) for name in CLASSES),
        _number(row.gpus, "{}"),
        MISSING if worst is None else str(worst.index),
        _number(None if worst is None else worst.margin_c, "{:.1f}C"),
        _number(None if worst is None else worst.time_to_slowdown_s, "{:.0f} s"),
        _number(row.sample_age_s, "{:.1f} s"),
    )


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" + ("" if number == 1 else "s")


def _totals_line(rows: Sequence[NodeRow]) -> str:
    totals = summary(rows)
    answered = totals["nodes"] - totals["unreachable"]
    admitting = ", ".join(f"{name} {totals['nodes_admitting'][name]}/{answered}" for name in CLASSES)
    free = ", ".join(f"{name} {totals['free_slots'][name]}" for name in CLASSES)
    silent = f" ({totals['unreachable']} unreachable)" if totals["unreachable"] else ""
    return (
        f"{_count(totals['nodes'], 'node')}{silent}, {_count(totals['gpus'], 'GPU')} | "
        f"nodes admitting {admitting} | "
        f"free slots {free}"
    )


def render_fleet(rows: Sequence[NodeRow], source: str, *, colour: bool) -> str:
    """The totals line, one row per node hottest first, then why each silent node is silent."""
    ordered = hottest_first(rows)
    lines = [f"fleet from {source}", _totals_line(ordered)]
    if ordered:
        cells = [HEADERS, *(_cells(row) for row in ordered)]

        def state_style(row: int, column: int, text: str) -> str:
            if column != _STATE_COLUMN:
                return text
            return click.style(text, **STATE_COLOURS.get(ordered[row].state, {}))

        lines.extend(format_table(cells, state_style if colour else None))
    lines.extend(f"{row.node}: {row.error}" for row in ordered if not row.reachable)
    return "\n".join(lines)
