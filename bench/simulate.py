"""Every shipped scenario under every controller, timed: `.venv/bin/python bench/simulate.py`.

Prints each scenario's table with its virtual duration, wall time and speed-up, then a summary.
Target: each scenario (all four controllers) runs at least 100x faster than real time.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from gpuwatch.simulate import report, runner
from gpuwatch.simulate.shipped import SHIPPED, open_scenario

TARGET_SPEEDUP = 100.0


def main() -> int:
    """Run, print, and exit 0 when every scenario met the speed target."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plot-dir", type=Path, help="also write DIR/<scenario>.png")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="processes per scenario")
    args = parser.parse_args()
    timings: list[tuple[str, float, float]] = []
    for name in SHIPPED:
        scenario = open_scenario(name)
        started = time.monotonic()
        results = runner.run(scenario, workers=args.workers)
        wall_s = time.monotonic() - started
        timings.append((name, scenario.duration_s, wall_s))
        print(report.render(scenario, results))
        speedup = scenario.duration_s / wall_s
        print(f"{scenario.duration_s:g} virtual s in {wall_s:.1f} s: {speedup:.0f}x real time\n")
        if args.plot_dir is not None:
            from gpuwatch.simulate.plot import plot  # noqa: PLC0415 - matplotlib only when asked for

            plot(scenario, results, args.plot_dir / f"{name}.png")
    print(f"{'scenario':16} {'virtual s':>9} {'wall s':>7} {'speed-up':>9}")
    for name, virtual_s, wall_s in timings:
        print(f"{name:16} {virtual_s:9.0f} {wall_s:7.1f} {virtual_s / wall_s:8.0f}x")
    slowest = min(virtual_s / wall_s for _, virtual_s, wall_s in timings)
    verdict = "PASS" if slowest >= TARGET_SPEEDUP else "FAIL"
    target = f"target >= {TARGET_SPEEDUP:.0f}x, {args.workers} workers"
    print(f"\n{verdict}: slowest {slowest:.0f}x real time ({target})")
    return 0 if slowest >= TARGET_SPEEDUP else 1


if __name__ == "__main__":
    raise SystemExit(main())
