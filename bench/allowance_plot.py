"""One GPU's allowance for its forecast's errors through a surprise: wider when a fan fails, narrow after.

Run: .venv/bin/python bench/allowance_plot.py [--scenario video-fan] [--seed 1] [--node 0] [--gpu 0]
     [--out docs/allowance.png]
Runs the scenario under the gpuwatch controller (the daemon's code) and draws, for one GPU, its
margin, the allowance its slots keep for the forecast's own errors 5 and 60 s ahead
(`forecast_error_c` in /v1/state), its `default` slots, and the scenario's events. Prints the
allowance's range in each stretch between events. Needs the plot extra (`pip install 'gpuwatch[plot]'`).
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
from pathlib import Path

from gpuwatch.simulate.controllers.base import Controller
from gpuwatch.simulate.controllers.gpuwatch import GpuwatchController
from gpuwatch.simulate.engine import run_one
from gpuwatch.simulate.metrics import ControllerResult
from gpuwatch.simulate.scenario import Scenario
from gpuwatch.simulate.shipped import open_scenario
from gpuwatch.simulate.workload import draw_jobs

REPO_ROOT = Path(__file__).resolve().parents[1]


@dataclasses.dataclass
class Trace:
    """What the GPU's decisions said at each sample."""

    at_s: list[float] = dataclasses.field(default_factory=list)
    margin_c: list[float] = dataclasses.field(default_factory=list)
    near_c: list[float] = dataclasses.field(default_factory=list)  # allowance 5 s ahead
    far_c: list[float] = dataclasses.field(default_factory=list)  # allowance 60 s ahead
    slots: list[int] = dataclasses.field(default_factory=list)


def traced(scenario: Scenario, node: int, gpu: int) -> tuple[Trace, ControllerResult]:
    """The scenario's run under gpuwatch, with the chosen GPU's decisions at every sample."""
    jobs = draw_jobs(scenario.arrivals, scenario.duration_s, scenario.jobs, scenario.seed)
    trace = Trace()

    def watch(now_s: float, controller: Controller) -> None:
        if not isinstance(controller, GpuwatchController) or not controller.decisions:
            return
        decided = controller.decisions[node].gpus[gpu]
        allowance = dict(decided.forecast_error_c)
        if decided.margin_c is None or not allowance:
            return
        trace.at_s.append(now_s)
        trace.margin_c.append(decided.margin_c)
        trace.near_c.append(min(allowance.values()))
        trace.far_c.append(max(allowance.values()))
        trace.slots.append(decided.slots.default)

    result = run_one(scenario, "gpuwatch", jobs, watch=watch)
    return trace, result


def main() -> None:
    """Run, print the allowance per stretch, and draw the plot."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--scenario", default="video-fan")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--node", type=int, default=0)
    parser.add_argument("--gpu", type=int, default=0)
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "docs" / "allowance.png")
    args = parser.parse_args()
    scenario = dataclasses.replace(open_scenario(args.scenario), seed=args.seed)
    trace, result = traced(scenario, args.node, args.gpu)
    events = sorted({event.at_s for event in scenario.events})
    edges = [0.0, *events, trace.at_s[-1] + 1]
    print(
        f"{args.scenario} seed {args.seed}, node {args.node} GPU {args.gpu}: {result.completed} jobs, "
        f"{result.slowdown_gpu_s:.0f} GPU·s of slowdown"
    )
    print(f"{'from s':>8}{'to s':>8}{'5 s ahead °C':>22}{'60 s ahead °C':>22}{'lowest margin °C':>18}")
    for start, end in itertools.pairwise(edges):
        picked = [i for i, at in enumerate(trace.at_s) if start <= at < end]
        if not picked:
            continue
        near = [trace.near_c[i] for i in picked]
        far = [trace.far_c[i] for i in picked]
        lowest = min(trace.margin_c[i] for i in picked)
        near_range = f"{min(near):>10.2f} to {max(near):<8.2f}"
        far_range = f"{min(far):>10.2f} to {max(far):<8.2f}"
        print(f"{start:>8.0f}{end:>8.0f}{near_range}{far_range}{lowest:>18.1f}")
    _draw(trace, events, args)


def _draw(trace: Trace, events: list[float], args: argparse.Namespace) -> None:
    import matplotlib as mpl  # noqa: PLC0415 - the optional plot extra, only when drawing

    mpl.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415 - after choosing the backend

    minutes = [at / 60 for at in trace.at_s]
    figure, (top, bottom) = plt.subplots(2, 1, sharex=True, figsize=(10, 6), height_ratios=(2, 1))
    top.plot(minutes, trace.margin_c, color="tab:red", linewidth=0.8, label="margin, °C")
    top.set_ylabel("margin below the limit, °C")
    top.axhline(0, color="black", linewidth=0.5)
    bottom.plot(minutes, trace.far_c, color="tab:blue", linewidth=1.0, label="allowance 60 s ahead")
    bottom.plot(minutes, trace.near_c, color="tab:cyan", linewidth=1.0, label="allowance 5 s ahead")
    bottom.set_ylabel("allowance, °C")
    bottom.set_xlabel("minutes")
    for axis in (top, bottom):
        for at in events:
            axis.axvline(at / 60, color="grey", linestyle="--", linewidth=0.8)
    slots = top.twinx()
    slots.step(minutes, trace.slots, where="post", color="tab:green", linewidth=0.6, label="default slots")
    slots.set_ylabel("default slots")
    top.legend(loc="upper right")
    bottom.legend(loc="upper right")
    figure.suptitle(
        f"{args.scenario} seed {args.seed}, node {args.node} GPU {args.gpu}: "
        "the allowance for the forecast's own errors (dashed: events)"
    )
    figure.tight_layout()
    figure.savefig(args.out, dpi=100)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
