"""DESIGN §2's quality bar in every shipped scenario, for several seeds, spreads and gateways.

Run: .venv/bin/python bench/targets.py [--seeds 1,2,3] [--spreads 0.03,0.3] [--modes release,never,told]
                                       [--scenarios a,b] [--plants wide] [--config FILE] [--workers N]

For each shipped scenario, seed and spread (each GPU's R, C and power per job drawn within ±that
of its SKU profile: 0.03 is a fleet's board-to-board spread, 0.3 physics the policy's priors
were not set for), none, static and the oracle run once on the same jobs, and gpuwatch once per
gateway mode:
- `release`: gateways release each lease when its job ends (the quality bar: 0 GPU·s of
  slowdown, >= 97 % of the oracle's jobs at spread 0.03 and >= 95 % wider, p95 <= 1.2x the
  oracle's, no fewer jobs than static where static kept out of slowdown, and where jobs come in
  classes >= 99 % of the oracle's `critical` and >= 95 % of its `default`);
- `never`: a proxy that never releases and says no job length (0 GPU·s of slowdown);
- `told`: a proxy that never releases, with the typical job length (the scenario's mean) in
  policy.job_seconds (0 GPU·s of slowdown, and no fewer jobs than static where static kept out of
  slowdown).
Where a scenario has scheduled events (a fan failing), `floor` is the slowdown of an oracle
told of each event only when it comes: what the jobs already running then cause, which no
controller that cannot see a fault coming avoids (the target stays 0).
`--plants wide` draws each GPU's plant from the wide family instead (sources/sim/plants.py, a
decade either side of the profiles; spreads do not apply, the column reads `wide`), held to the
targets of the wider spread.
One row per run and mode; `--config` tries a [policy] file, as `gpuwatch serve --config` reads it.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor

from gpuwatch.policy.decision import PriorityClass
from gpuwatch.service.config_file import load_config
from gpuwatch.simulate import report
from gpuwatch.simulate.controllers import CAUSAL_ORACLE
from gpuwatch.simulate.engine import run_one
from gpuwatch.simulate.metrics import ControllerResult
from gpuwatch.simulate.scenario import Scenario
from gpuwatch.simulate.shipped import SHIPPED, open_scenario
from gpuwatch.simulate.workload import draw_jobs

MODES = ("release", "never", "told")
BASELINES = ("none", "static", "oracle")


def _share(ours: int, theirs: int) -> str:
    return f"{ours / theirs:6.1%}" if theirs else "     -"


def _class_share(ours: ControllerResult, oracle: ControllerResult, priority: PriorityClass) -> str:
    mine, theirs = ours.of_class(priority), oracle.of_class(priority)
    if mine is None or theirs is None or len(ours.by_class) < 2:
        return "     -"
    return _share(mine.completed, theirs.completed)


def in_mode(scenario: Scenario, mode: str) -> Scenario:
    """The scenario as a gateway of `mode` meets gpuwatch."""
    if mode == "release":
        return scenario
    scenario = dataclasses.replace(scenario, releases=False)
    if mode == "told":
        typical = tuple((cls, scenario.jobs.work_s) for cls in PriorityClass)
        scenario = dataclasses.replace(
            scenario, policy=dataclasses.replace(scenario.policy, job_seconds=typical)
        )
    return scenario


def _run(task: tuple[Scenario, str]) -> ControllerResult:
    scenario, controller = task
    jobs = draw_jobs(scenario.arrivals, scenario.duration_s, scenario.jobs, scenario.seed)
    return run_one(scenario, controller, jobs)


def _row(  # noqa: PLR0913 - one run: its scenario, mode and every controller's result
    scenario: Scenario,
    mode: str,
    ours: ControllerResult,
    *,
    none: ControllerResult,
    static: ControllerResult,
    oracle: ControllerResult,
    floor: ControllerResult | None,
) -> bool:
    """Print one run's row; whether it met every target."""
    lines = report.targets([ours, static, oracle], in_mode(scenario, mode))
    failed = [
        line.removeprefix("gpuwatch ").removesuffix(": MISSED") for line in lines if line.endswith("MISSED")
    ]
    p95 = (ours.p95_latency_s or 0.0) / (oracle.p95_latency_s or 1.0)
    print(
        f"{_boards(scenario):>6} {scenario.name:15} {scenario.seed:4} {none.completed:5} "
        f"{none.slowdown_gpu_s:5.0f} {static.completed:6} {static.slowdown_gpu_s:5.0f} "
        f"{oracle.completed:6} {mode:8} {ours.completed:6} "
        f"{_share(ours.completed, oracle.completed)} {ours.slowdown_gpu_s:6.0f} "
        f"{p95:6.2f} {_class_share(ours, oracle, PriorityClass.CRITICAL)} "
        f"{_class_share(ours, oracle, PriorityClass.DEFAULT)} "
        f"{'-' if floor is None else f'{floor.slowdown_gpu_s:.0f}':>5}  "
        + ("met" if not failed else "MISSED: " + "; ".join(failed)),
        flush=True,
    )
    return not failed


def _boards(scenario: Scenario) -> str:
    """The spread column: the boards' spread, or `wide` for the wide family."""
    return "wide" if scenario.plants == "wide" else f"{scenario.spread:.2f}"


def main() -> int:
    """Run the matrix, print a row per run and mode and a verdict; exit 0 when every target is met."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="1,2,3", help="comma-separated seeds")
    parser.add_argument("--spreads", default="0.03,0.3", help="comma-separated board spreads")
    parser.add_argument("--scenarios", default=",".join(SHIPPED), help="comma-separated shipped scenarios")
    parser.add_argument("--modes", default=",".join(MODES), help=f"comma-separated of {', '.join(MODES)}")
    parser.add_argument(
        "--plants", choices=("profiles", "wide"), default="profiles", help="the boards' plants"
    )
    parser.add_argument("--config", help="a [policy] TOML file for the gpuwatch controller")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="processes")
    args = parser.parse_args()
    policy = load_config(args.config) if args.config else None
    modes = args.modes.split(",")
    runs = []
    spreads = [float(s) for s in args.spreads.split(",")] if args.plants == "profiles" else [0.03]
    for spread in spreads:
        for name in args.scenarios.split(","):
            for seed in (int(s) for s in args.seeds.split(",")):
                scenario = dataclasses.replace(
                    open_scenario(name), seed=seed, spread=spread, plants=args.plants
                )
                if policy is not None:
                    scenario = dataclasses.replace(scenario, policy=policy)
                runs.append(scenario)
    faulted = [s for s in runs if s.events]
    tasks = (
        [(s, c) for s in runs for c in BASELINES]
        + [(s, CAUSAL_ORACLE) for s in faulted]
        + [(in_mode(s, m), "gpuwatch") for s in runs for m in modes]
    )
    started = time.monotonic()
    with ProcessPoolExecutor(args.workers) as pool:
        results = list(pool.map(_run, tasks))
    ahead = len(runs) * len(BASELINES) + len(faulted)
    baselines = {(id(s), c): r for (s, c), r in zip(tasks[:ahead], results, strict=False)}
    ours_by = iter(results[ahead:])
    print(
        f"{'spread':>6} {'scenario':15} {'seed':>4} {'none':>5} {'slow':>5} {'static':>6} {'slow':>5} "
        f"{'oracle':>6} {'mode':8} {'done':>6} {'vs or':>6} {'slow s':>6} {'p95 x':>6} {'crit':>6} "
        f"{'dflt':>6} {'floor':>5}  verdict"
    )
    missed = []
    for scenario in runs:
        none, static, oracle = (baselines[id(scenario), c] for c in BASELINES)
        floor = baselines.get((id(scenario), CAUSAL_ORACLE))
        met = [
            _row(scenario, mode, next(ours_by), none=none, static=static, oracle=oracle, floor=floor)
            for mode in modes
        ]
        missed += [
            ("wide" if scenario.plants == "wide" else f"{scenario.spread:g}", scenario.name, scenario.seed, m)
            for m, ok in zip(modes, met, strict=True)
            if not ok
        ]
    wall_s = time.monotonic() - started
    print(f"\n{'PASS' if not missed else 'FAIL'}: {len(missed)} runs missed a target ({wall_s:.0f} s)")
    for spread, name, seed, mode in missed:
        print(f"  spread {spread} {name} seed {seed} {mode}")
    return 0 if not missed else 1


if __name__ == "__main__":
    sys.exit(main())
