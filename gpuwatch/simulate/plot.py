"""`--plot FILE.png`: per controller, temperature and margin against the thresholds, admitted rate, state.

matplotlib is the optional `plot` extra; it is imported only here, only when a plot is asked for.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from gpuwatch.policy.decision import PriorityClass
from gpuwatch.simulate.metrics import ControllerResult, Timeline
from gpuwatch.simulate.scenario import Scenario

RATE_WINDOW_S = 30.0  # admitted and offered rates are averaged over this many seconds
# Colours of the controllers' hold levels (`levels()`: 0 admitting ... 3 holding everything back).
LEVEL_COLOURS = ("#66bb6a", "#ffee58", "#ffa726", "#e53935")
LEVEL_WORDS = {
    "gpuwatch": "green OK, yellow ELEVATED, orange HOT, red CRITICAL",
    "static": "green running, orange some GPUs paused, red all paused",
    "oracle": "green admitting, orange some GPUs refuse, red all refuse",
    "none": "green: it never holds work back",
}
SLOWDOWN_COLOUR = "#b71c1c"
THRESHOLD_COLOUR = "#ef6c00"
STATIC_COLOUR = "#1565c0"
DPI = 80

# matplotlib ships no types this package can depend on: its objects are Any here.
Axes = Any


class PlotUnavailableError(RuntimeError):
    """matplotlib is not installed."""


def _pyplot() -> Any:  # noqa: ANN401 - see Axes
    try:
        matplotlib = importlib.import_module("matplotlib")
    except ImportError:
        raise PlotUnavailableError(
            "--plot needs matplotlib, the optional `plot` extra: pip install 'gpuwatch[plot]'"
        ) from None
    matplotlib.use("Agg")  # files only: never a window, never a display
    return importlib.import_module("matplotlib.pyplot")


def plot(scenario: Scenario, results: Sequence[ControllerResult], path: str | Path) -> None:
    """Write the figure to `path` (PNG), a column per controller; PlotUnavailableError without matplotlib."""
    plt = _pyplot()
    figure, axes = plt.subplots(
        3,
        len(results),
        figsize=(4.0 * len(results), 7.4),
        sharex=True,
        squeeze=False,
        gridspec_kw={"height_ratios": (3.2, 1.8, 1.0)},
    )
    for column, result in enumerate(results):
        first = column == 0
        _temperatures(axes[0][column], scenario, result, first=first)
        _rates(axes[1][column], scenario, result.timeline, first=first)
        _states(axes[2][column], scenario, result, first=first)
    title = f"{scenario.name}: {scenario.title}" if scenario.title else scenario.name
    figure.suptitle(title, fontsize=11)
    figure.tight_layout(rect=(0, 0, 1, 0.97))
    figure.savefig(path, dpi=DPI)
    plt.close(figure)


def _temperatures(ax: Axes, scenario: Scenario, result: ControllerResult, *, first: bool) -> None:
    """Coolest-to-hottest band and the hottest GPU, against max operating; margin on the right."""
    line = result.timeline
    minutes = [t / 60 for t in line.times_s]
    hottest = [max(row) for row in line.temperatures_c]
    coolest = [min(row) for row in line.temperatures_c]
    ax.fill_between(minutes, coolest, hottest, color="#b0bec5", linewidth=0, label="coolest to hottest GPU")
    ax.plot(minutes, hottest, color="#37474f", linewidth=0.7, label="hottest GPU")
    limit = min(line.max_operating_c)
    ax.axhline(limit, color=SLOWDOWN_COLOUR, linewidth=1.2, label=f"max operating {limit:g} °C: slowdown")
    if result.controller == "gpuwatch":
        # The guards are margins the forecast keeps over the horizon, drawn below the limit; one
        # label for the three, as they lie a fraction of a degree apart.
        guards = [scenario.policy.guard_c(cls) for cls in PriorityClass]
        for guard in guards:
            ax.axhline(limit - guard, color=THRESHOLD_COLOUR, linewidth=0.6, linestyle="--")
        figures = " / ".join(f"{guard:g}" for guard in guards)
        words = f"guards {figures} °C (critical / default / sheddable)"
        ax.annotate(
            words,
            (0.01, limit - max(guards)),
            xycoords=("axes fraction", "data"),
            fontsize=7,
            va="top",
            color=THRESHOLD_COLOUR,
        )
    if result.controller == "static":
        _threshold(ax, scenario.static.pause_c, f"pause {scenario.static.pause_c:g} °C", STATIC_COLOUR)
        _threshold(ax, scenario.static.resume_c, f"resume {scenario.static.resume_c:g} °C", STATIC_COLOUR)
    ax.set_ylim(min(coolest) - 3, max(limit + 5, result.max_temperature_c + 2))
    ax.set_title(
        f"{result.controller}: {result.completed} done, {result.slowdown_gpu_s:.0f} GPU·s slowed", fontsize=10
    )
    margin = ax.secondary_yaxis("right", functions=(lambda t: limit - t, lambda m: limit - m))
    margin.tick_params(labelsize=8)
    if first:
        ax.set_ylabel("GPU temperature °C (right: margin °C)")
        ax.legend(fontsize=7, loc="lower right")


def _threshold(ax: Axes, value: float, words: str, colour: str) -> None:
    ax.axhline(value, color=colour, linewidth=0.8, linestyle="--")
    ax.annotate(
        words, (0.01, value), xycoords=("axes fraction", "data"), fontsize=7, va="bottom", color=colour
    )


def _rates(ax: Axes, scenario: Scenario, line: Timeline, *, first: bool) -> None:
    """Jobs admitted per second against the arrival rate the scenario offers."""
    offered_s = [float(t) for t in range(0, int(scenario.duration_s) + 1, 10)]
    ax.plot(
        [t / 60 for t in offered_s],
        [scenario.arrivals.rate_at(t) for t in offered_s],
        color="#757575",
        linewidth=1.0,
        linestyle="--",
        label="offered (arrivals)",
    )
    minutes = [t / 60 for t in line.times_s]
    ax.plot(
        minutes, moving_rate(line.times_s, line.started), color=STATIC_COLOUR, linewidth=0.9, label="admitted"
    )
    ax.set_ylim(bottom=0)
    if first:
        ax.set_ylabel(f"jobs/s ({RATE_WINDOW_S:g} s mean)")
        ax.legend(fontsize=7, loc="upper left")


def moving_rate(times_s: Sequence[float], counts: Sequence[int]) -> list[float]:
    """Events per second over the trailing RATE_WINDOW_S (or what there is of it at the start)."""
    rates: list[float] = []
    total, start = 0, 0
    step_s = times_s[1] - times_s[0] if len(times_s) > 1 else 1.0
    for i, t in enumerate(times_s):
        total += counts[i]
        while times_s[start] <= t - RATE_WINDOW_S:
            total -= counts[start]
            start += 1
        rates.append(total / max(min(RATE_WINDOW_S, t), step_s))
    return rates


def _states(ax: Axes, scenario: Scenario, result: ControllerResult, *, first: bool) -> None:
    """One strip per node with the controller's hold level, and one with the GPUs in slowdown."""
    colours = importlib.import_module("matplotlib.colors")
    line = result.timeline
    rows = [
        [colours.to_rgb(LEVEL_COLOURS[levels[node]]) for levels in line.levels]
        for node in range(len(scenario.nodes))
    ]
    rows.append([colours.to_rgb(SLOWDOWN_COLOUR if slowed else "#ffffff") for slowed in line.slowed])
    ax.imshow(rows, aspect="auto", interpolation="nearest", extent=(0, line.times_s[-1] / 60, len(rows), 0))
    ax.set_yticks([i + 0.5 for i in range(len(rows))], [*(node.name for node in scenario.nodes), "slowdown"])
    ax.tick_params(axis="y", labelsize=7)
    ax.set_xlabel("minutes")
    ax.set_title(LEVEL_WORDS.get(result.controller, ""), fontsize=7)
    if first:
        ax.set_ylabel("state")
