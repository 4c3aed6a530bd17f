"""Renders the running daemon's `/v1/state` as the screen `gpuwatch status` prints: its decision, per GPU."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import click

from gpuwatch.cli.table import MISSING, CellStyle, format_table

_GIB = 1024**3
CLASS_LETTERS = (("critical", "C"), ("default", "D"), ("sheddable", "S"))
HEADERS = (
    "GPU",
    "NAME",
    "STATE",
    "SLOTS C/D/S",
    "LEASES C/D/S",
    "MARGIN",
    "PREDICTED",
    "TO SLOWDOWN",
    "POWER / LIMIT",
    "UTIL",
    "MEMORY",
)
STATE_COLOURS: Mapping[str, dict[str, Any]] = {
    "ok": {"fg": "green"},
    "elevated": {"fg": "yellow"},
    "hot": {"fg": "red"},
    "critical": {"fg": "red", "bold": True, "reverse": True},
    "failed": {"fg": "red", "bold": True},
    "unknown": {"fg": "magenta"},
    # `gpuwatch fleet`: a node that did not answer.
    "unreachable": {"fg": "magenta", "bold": True},
}
# Margin bands, °C: within the last two degrees a GPU is one job from its guard; within five it
# is warm enough that an operator watches it.
RED_BELOW_C = 2.0
YELLOW_BELOW_C = 5.0
# Job durations from 10 s on show in whole seconds: a tenth is under 1 % of them, noise beside the
# spread of real job lengths; shorter ones keep their tenths.
WHOLE_SECONDS_FROM_S = 10.0
_STATE_COLUMN = HEADERS.index("STATE")
_MARGIN_COLUMN = HEADERS.index("MARGIN")


def _number(value: object, template: str) -> str:
    return MISSING if value is None else template.format(value)


def _by_class(counts: Mapping[str, int] | None) -> str:
    """Counts by class as critical/default/sheddable; '-' when the daemon gave none."""
    if not counts:
        return MISSING
    return "/".join(str(counts.get(name, 0)) for name, _ in CLASS_LETTERS)


def _power(gpu: Mapping[str, Any]) -> str:
    used, limit = gpu.get("power_w"), gpu.get("power_limit_w")
    if used is None and limit is None:
        return MISSING
    return f"{_number(used, '{:.0f}')} / {_number(limit, '{:.0f}')} W"


def _memory(gpu: Mapping[str, Any]) -> str:
    used, total = gpu.get("memory_used_bytes"), gpu.get("memory_total_bytes")
    if used is None:
        return MISSING
    return f"{used / _GIB:.1f} / {_number(None if total is None else total / _GIB, '{:.1f}')} GiB"


def gpu_row(gpu: Mapping[str, Any]) -> tuple[str, ...]:
    """One GPU's row; what the daemon does not know shows as '-'."""
    return (
        str(gpu["index"]),
        str(gpu.get("name") or MISSING),
        str(gpu["state"]),
        _by_class(gpu.get("slots")),
        _by_class(gpu.get("leases")),
        _number(gpu.get("margin_c"), "{:.1f}C"),
        _number(gpu.get("predicted_margin_c"), "{:.1f}C"),
        _number(gpu.get("time_to_slowdown_s"), "{:.0f} s"),
        _power(gpu),
        _number(gpu.get("utilization_ratio"), "{:.0%}"),
        _memory(gpu),
    )


def _margin_style(text: str, margin_c: float | None) -> str:
    if margin_c is None or margin_c >= YELLOW_BELOW_C:
        return text
    return click.style(text, fg="red" if margin_c < RED_BELOW_C else "yellow")


def _gpu_style(gpus: Sequence[Mapping[str, Any]]) -> CellStyle:
    """Colours each GPU line's state and margin cells."""

    def style(row: int, column: int, text: str) -> str:
        gpu = gpus[row]
        if column == _STATE_COLUMN:
            return click.style(text, **STATE_COLOURS.get(str(gpu["state"]), {}))
        if column == _MARGIN_COLUMN:
            return _margin_style(text, gpu.get("margin_c"))
        return text

    return style


def node_line(document: Mapping[str, Any]) -> str:
    """The node's state, pressure, free slots by class, sample age and source."""
    slots = document.get("slots") or {}
    free = ", ".join(f"{name} {slots.get(name, 0)}" for name, _ in CLASS_LETTERS)
    age = document.get("sample_age_s")
    sample = "never sampled" if age is None else f"sample {float(age):.1f} s old"
    return (
        f"node {document['state']} | pressure {float(document['pressure']):.2f} | free slots {free} | "
        f"{sample} | source {document.get('source', MISSING)}"
    )


def _seconds(seconds: float) -> str:
    """A job duration: tenths of a second for short jobs, whole seconds from WHOLE_SECONDS_FROM_S."""
    return f"{seconds:.1f} s" if seconds < WHOLE_SECONDS_FROM_S else f"{seconds:.0f} s"


def plans_line(document: Mapping[str, Any]) -> str | None:
    """The duration each class's jobs are planned with and its basis; None if the daemon does not say."""
    plans = document.get("expected_job_s")
    if not isinstance(plans, Mapping):
        return None
    parts = []
    for name, _ in CLASS_LETTERS:
        plan = plans.get(name) or {}
        seconds = plan.get("seconds")
        # Unknown: the job is planned as lasting the whole horizon.
        duration = "?" if seconds is None else _seconds(float(seconds))
        parts.append(f"{name} {duration} ({plan.get('basis') or 'unknown'})")
    return "jobs planned " + ", ".join(parts)


def render_daemon_state(document: Mapping[str, Any], *, colour: bool) -> str:
    """The node line, the planned job durations, a row per GPU, and why every GPU not OK is held back."""
    gpus: list[Mapping[str, Any]] = list(document["gpus"])
    head = node_line(document)
    lines = [click.style(head, **STATE_COLOURS.get(str(document["state"]), {})) if colour else head]
    plans = plans_line(document)
    if plans is not None:
        lines.append(plans)
    if gpus:
        rows = [HEADERS, *(gpu_row(gpu) for gpu in gpus)]
        lines.extend(format_table(rows, _gpu_style(gpus) if colour else None))
    lines.extend(
        f"GPU {gpu['index']}: {gpu.get('sentence') or ', '.join(gpu.get('reasons') or ())}"
        for gpu in gpus
        if gpu["state"] != "ok"
    )
    return "\n".join(lines)
