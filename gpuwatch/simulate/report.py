"""The results as text: a header, one table row per controller, and gpuwatch's targets against the oracle."""

from __future__ import annotations

from collections.abc import Sequence

from gpuwatch.simulate.metrics import ControllerResult
from gpuwatch.simulate.scenario import Scenario

# The targets for the gpuwatch row, measured against the oracle's.
TARGET_COMPLETED_SHARE = 0.95
TARGET_P95_RATIO = 1.2

_COLUMNS = (
    ("controller", "<"),
    ("completed", ">"),
    ("rejected", ">"),
    ("timed out", ">"),
    ("p50 s", ">"),
    ("p95 s", ">"),
    ("slowdown GPU·s", ">"),
    ("of which HW", ">"),
    ("max °C", ">"),
    ("energy kWh", ">"),
)


def header(scenario: Scenario, arrived: int) -> str:
    """What was simulated, in one or two lines."""
    gpus = {f"{len(node.skus)}x{'/'.join(sorted(set(node.skus)))}" for node in scenario.nodes}
    fleet = f"{len(scenario.nodes)} nodes of {', '.join(sorted(gpus))}"
    first = f"{scenario.name}: {scenario.title}" if scenario.title else scenario.name
    return (
        f"{first}\n{fleet}; {arrived} jobs over {scenario.duration_s:g} s (seed {scenario.seed}); "
        f"at most {scenario.jobs.per_gpu} jobs per GPU; deadline {scenario.jobs.deadline_s:g} s"
    )


def table(results: Sequence[ControllerResult]) -> str:
    """One aligned row per controller."""
    rows = [[name for name, _ in _COLUMNS]] + [_cells(result) for result in results]
    widths = [max(len(row[i]) for row in rows) for i in range(len(_COLUMNS))]
    lines = []
    for row in rows:
        cells = [
            f"{cell:{align}{width}}" for cell, (_, align), width in zip(row, _COLUMNS, widths, strict=True)
        ]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def _cells(result: ControllerResult) -> list[str]:
    return [
        result.controller,
        str(result.completed),
        str(result.rejected),
        str(result.timed_out),
        _seconds(result.p50_latency_s),
        _seconds(result.p95_latency_s),
        f"{result.slowdown_gpu_s:.0f}",
        f"{result.hw_slowdown_gpu_s:.0f}",
        f"{result.max_temperature_c:.1f}",
        f"{result.energy_kwh:.2f}",
    ]


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def targets(results: Sequence[ControllerResult]) -> list[str]:
    """The three targets of the gpuwatch row against the oracle's, one line each; empty unless both ran."""
    by_name = {result.controller: result for result in results}
    ours, oracle = by_name.get("gpuwatch"), by_name.get("oracle")
    if ours is None or oracle is None:
        return []
    share = ours.completed / oracle.completed if oracle.completed else 1.0
    wanted = f"target >= {TARGET_COMPLETED_SHARE:.0%}"
    lines = [
        _verdict(f"thermal slowdown {ours.slowdown_gpu_s:.0f} GPU·s (target 0)", ours.slowdown_gpu_s == 0),
        _verdict(
            f"completed {share:.1%} of the oracle's {oracle.completed} ({wanted})",
            share >= TARGET_COMPLETED_SHARE,
        ),
    ]
    if ours.p95_latency_s is not None and oracle.p95_latency_s:
        ratio = ours.p95_latency_s / oracle.p95_latency_s
        lines.append(
            _verdict(
                f"p95 latency {ratio:.2f}x the oracle's (target <= {TARGET_P95_RATIO:g}x)",
                ratio <= TARGET_P95_RATIO,
            )
        )
    return lines


def _verdict(text: str, met: bool) -> str:  # noqa: FBT001 - a plain predicate reads best here
    return f"gpuwatch {text}: {'met' if met else 'MISSED'}"


def unfinished_note(results: Sequence[ControllerResult]) -> str | None:
    """A line on jobs still waiting or running at the end, if any controller left some."""
    left = [f"{r.controller} {r.unfinished}" for r in results if r.unfinished]
    return f"still waiting or running at the end: {', '.join(left)}" if left else None


def render(scenario: Scenario, results: Sequence[ControllerResult]) -> str:
    """The whole report."""
    arrived = results[0].arrived if results else 0
    parts = [header(scenario, arrived), "", table(results)]
    note = unfinished_note(results)
    if note:
        parts.append(note)
    checks = targets(results)
    if checks:
        parts += ["", *checks]
    return "\n".join(parts)
