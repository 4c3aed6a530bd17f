"""DESIGN §2's quality bar in every shipped scenario, for several seeds and board spreads: `bench/targets.py`.

Run: .venv/bin/python bench/targets.py [--seeds 1,2,3] [--spreads 0.03,0.3] [--config FILE] [--workers N]

For each shipped scenario, seed and spread (each GPU's R, C and power per job drawn within ±that
of its SKU profile: 0.03 is a fleet's board-to-board spread, 0.3 physics the policy's priors
were not set for), every controller runs on the same jobs. One row each: what `none` completes
and its GPU·s of thermal slowdown; gpuwatch's thermal slowdown, its completed jobs against the
oracle's and static's, its p95 latency against the oracle's, and in scenarios with classes its
`critical` and `default` completions against the oracle's. Targets (issue 13): 0 GPU·s of
slowdown, >= 95 % of the oracle's completed jobs, p95 <= 1.2x the oracle's, more than static
(as many where static already completes all the oracle does), and where jobs come in classes
>= 99 % of the oracle's `critical` and >= 95 % of its `default`. `--config` tries a [policy]
file, as `gpuwatch serve --config` reads it.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time

from gpuwatch.policy.decision import PriorityClass
from gpuwatch.service.config_file import load_config
from gpuwatch.simulate import report, runner
from gpuwatch.simulate.metrics import ControllerResult
from gpuwatch.simulate.shipped import SHIPPED, open_scenario


def _share(ours: int, theirs: int) -> str:
    return f"{ours / theirs:6.1%}" if theirs else "     -"


def _class_share(ours: ControllerResult, oracle: ControllerResult, priority: PriorityClass) -> str:
    mine, theirs = ours.of_class(priority), oracle.of_class(priority)
    if mine is None or theirs is None or len(ours.by_class) < 2:
        return "     -"
    return _share(mine.completed, theirs.completed)


def main() -> int:
    """Run the matrix, print a row per run and a verdict; exit 0 when every target is met."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="1,2,3", help="comma-separated seeds")
    parser.add_argument("--spreads", default="0.03,0.3", help="comma-separated board spreads")
    parser.add_argument("--scenarios", default=",".join(SHIPPED), help="comma-separated shipped scenarios")
    parser.add_argument("--config", help="a [policy] TOML file for the gpuwatch controller")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="processes per run")
    args = parser.parse_args()
    policy = load_config(args.config) if args.config else None
    print(
        f"{'spread':>6} {'scenario':14} {'seed':>4} {'none done':>9} {'none slow':>9} {'slow s':>7} "
        f"{'done':>6} {'oracle':>6} {'vs or':>6} {'static':>6} {'p95 x':>6} {'crit':>6} {'dflt':>6}  verdict"
    )
    missed = []
    started = time.monotonic()
    for spread in (float(s) for s in args.spreads.split(",")):
        for name in args.scenarios.split(","):
            for seed in (int(s) for s in args.seeds.split(",")):
                scenario = dataclasses.replace(open_scenario(name), seed=seed, spread=spread)
                if policy is not None:
                    scenario = dataclasses.replace(scenario, policy=policy)
                results = runner.run(scenario, workers=args.workers)
                by_name = {r.controller: r for r in results}
                ours, oracle, static = by_name["gpuwatch"], by_name["oracle"], by_name["static"]
                unguarded = by_name["none"]
                lines = report.targets(results)
                failed = [
                    line.removeprefix("gpuwatch ").removesuffix(": MISSED")
                    for line in lines
                    if line.endswith("MISSED")
                ]
                p95 = (ours.p95_latency_s or 0.0) / (oracle.p95_latency_s or 1.0)
                print(
                    f"{spread:6.2f} {name:14} {seed:4} {unguarded.completed:9} "
                    f"{unguarded.slowdown_gpu_s:9.0f} {ours.slowdown_gpu_s:7.0f} {ours.completed:6} "
                    f"{oracle.completed:6} {_share(ours.completed, oracle.completed)} {static.completed:6} "
                    f"{p95:6.2f} {_class_share(ours, oracle, PriorityClass.CRITICAL)} "
                    f"{_class_share(ours, oracle, PriorityClass.DEFAULT)}  "
                    + ("met" if not failed else "MISSED: " + "; ".join(failed)),
                    flush=True,
                )
                if failed:
                    missed.append((spread, name, seed))
    wall_s = time.monotonic() - started
    print(f"\n{'PASS' if not missed else 'FAIL'}: {len(missed)} runs missed a target ({wall_s:.0f} s)")
    for spread, name, seed in missed:
        print(f"  spread {spread:g} {name} seed {seed}")
    return 0 if not missed else 1


if __name__ == "__main__":
    sys.exit(main())
