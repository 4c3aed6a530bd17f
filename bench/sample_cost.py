"""Cost of one sample of 8 GPUs: NvmlSource.read() against the fake NVML (beside bare pynvml), and the policy.

Run: .venv/bin/python bench/sample_cost.py [--samples N]
It builds the fake libnvidia-ml.so.1, sets up 8 GPUs (H100 x4, A100 x2, H200 x2) in a shared state
file, and measures in a child process that loads the library through LD_LIBRARY_PATH, as the
daemon does. The difference between the first two rows is gpuwatch's own Python cost of reading.
The policy rows replay 20 minutes of the shipped cooling-fault sim scenario (8 H100s, one fan
failing, random jobs: power steps, crossings, trajectory fits) once a virtual second: the model
stage alone (MarginModel.observe: screening, dequantising, the RC fit, the trajectory) and the
whole Policy.update. Target: read() plus the model stage <= 100 µs per GPU per sample (median).

--beside CHECKOUT times the whole Policy.update of another checkout (a git worktree of an earlier
commit: `git worktree add /tmp/before COMMIT`) in turns with this one's, each in a fresh process
on the same replay, and prints the medians and their ratio (a budget such as "within 1.2x").
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
GPUS = 8
WARMUP = 200
TARGET_US_PER_GPU = 100.0
POLICY_SECONDS = 1200  # virtual seconds of the cooling-fault scenario replayed through the policy


def percentile(values: list[float], fraction: float) -> float:
    """The value below which `fraction` of `values` lie (nearest rank)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def timed(action: Callable[[], object], samples: int) -> list[float]:
    """Microseconds per call of `action`, after WARMUP untimed calls."""
    for _ in range(WARMUP):
        action()
    durations = []
    for _ in range(samples):
        started = time.perf_counter_ns()
        action()
        durations.append((time.perf_counter_ns() - started) / 1000)
    return durations


def bare_pynvml_sample() -> Callable[[], object]:
    """The NVML calls NvmlSource makes per sample, made directly through pynvml.

    Like NvmlSource, it leaves out what a GPU answered NOT_SUPPORTED once (the A100's T.Limit margin
    and recovery-action field), so both rows make the same calls.
    """
    import pynvml  # noqa: PLC0415 - only the child process loads NVML

    from gpuwatch.sources.nvml.reader import SAMPLE_FIELDS  # noqa: PLC0415 - after NVML is chosen

    pynvml.nvmlInit()
    calls: list[tuple[Callable[..., object], tuple[object, ...]]] = []
    for index in range(pynvml.nvmlDeviceGetCount()):
        handle = pynvml.nvmlDeviceGetHandleByIndex(index)
        answers = pynvml.nvmlDeviceGetFieldValues(handle, list(SAMPLE_FIELDS))
        fields = [answer.fieldId for answer in answers if answer.nvmlReturn == pynvml.NVML_SUCCESS]
        candidates = [
            (pynvml.nvmlDeviceGetFieldValues, (handle, fields)),
            (pynvml.nvmlDeviceGetTemperature, (handle, pynvml.NVML_TEMPERATURE_GPU)),
            (pynvml.nvmlDeviceGetMarginTemperature, (handle,)),
            (pynvml.nvmlDeviceGetPowerUsage, (handle,)),
            (pynvml.nvmlDeviceGetEnforcedPowerLimit, (handle,)),
            (pynvml.nvmlDeviceGetTotalEnergyConsumption, (handle,)),
            (pynvml.nvmlDeviceGetUtilizationRates, (handle,)),
            (pynvml.nvmlDeviceGetMemoryInfo, (handle,)),
            (pynvml.nvmlDeviceGetClockInfo, (handle, pynvml.NVML_CLOCK_SM)),
            (pynvml.nvmlDeviceGetClockInfo, (handle, pynvml.NVML_CLOCK_MEM)),
            (pynvml.nvmlDeviceGetCurrentClocksEventReasons, (handle,)),
            (pynvml.nvmlDeviceGetPerformanceState, (handle,)),
        ]
        for call, arguments in candidates:
            try:
                call(*arguments)
            except pynvml.NVMLError_NotSupported:
                continue
            calls.append((call, arguments))

    def sample() -> None:
        for call, arguments in calls:
            call(*arguments)

    return sample


def measure(samples: int) -> None:
    """In the child: time both, print the table."""
    from gpuwatch.sources.nvml import NvmlSource  # noqa: PLC0415 - loads NVML via LD_LIBRARY_PATH

    source = NvmlSource()
    first = source.read()
    if first.error or len(first.gpus) != GPUS:
        sys.exit(f"the fake node did not come up: {first.error!r}, {len(first.gpus)} GPUs")
    rows = {
        "gpuwatch NvmlSource.read()": timed(source.read, samples),
        "bare pynvml, same calls": timed(bare_pynvml_sample(), samples),
    }
    source.close()
    print(f"sample cost, {GPUS} GPUs, {samples} samples after {WARMUP} warm-up, fake libnvidia-ml.so.1")
    header = f"{'':30} {'median µs':>10} {'p99 µs':>10} {'median µs/GPU':>14} {'p99 µs/GPU':>11}"
    print(header)
    print("-" * len(header))
    stats = {name: (statistics.median(d), percentile(d, 0.99)) for name, d in rows.items()}
    for name, (median, p99) in stats.items():
        print(f"{name:30} {median:10.1f} {p99:10.1f} {median / GPUS:14.1f} {p99 / GPUS:11.1f}")
    (ours_median, ours_p99), (bare_median, bare_p99) = stats.values()
    overhead_median, overhead_p99 = ours_median - bare_median, ours_p99 - bare_p99
    print(
        f"{'gpuwatch overhead':30} {overhead_median:10.1f} {overhead_p99:10.1f} "
        f"{overhead_median / GPUS:14.1f} {overhead_p99 / GPUS:11.1f}"
    )
    model, policy = policy_costs()
    for name, durations in (("policy model stage", model), ("whole Policy.update", policy)):
        median, p99 = statistics.median(durations), percentile(durations, 0.99)
        print(f"{name:30} {median:10.1f} {p99:10.1f} {median / GPUS:14.1f} {p99 / GPUS:11.1f}")
    sample_us = (ours_median + statistics.median(model)) / GPUS
    verdict = "met" if sample_us <= TARGET_US_PER_GPU else "MISSED"
    print(
        f"target: read() + model stage <= {TARGET_US_PER_GPU:.0f} µs per GPU per sample (median): "
        f"{sample_us:.1f} µs, {verdict}"
    )


def policy_costs() -> tuple[list[float], list[float]]:
    """µs per sample of 8 GPUs: the model stage alone, and the whole Policy.update, on a replayed sim."""
    from gpuwatch.policy.config import PolicyConfig  # noqa: PLC0415
    from gpuwatch.policy.engine import Policy  # noqa: PLC0415

    try:
        from gpuwatch.policy.model.learning import MarginModel  # noqa: PLC0415
    except ModuleNotFoundError:  # a checkout from before the model had a package (b8d8d61), for --beside
        from gpuwatch.policy.learning import MarginModel  # noqa: PLC0415
    from gpuwatch.sources.clock import ManualClock  # noqa: PLC0415 - the child's own imports, after NVML
    from gpuwatch.sources.model import SampleHealth, Snapshot  # noqa: PLC0415
    from gpuwatch.sources.sim import SimSource  # noqa: PLC0415
    from gpuwatch.sources.sim.scenario import load_scenario  # noqa: PLC0415

    clock = ManualClock()
    scenario = load_scenario(REPO_ROOT / "gpuwatch" / "sources" / "sim" / "scenarios" / "cooling-fault.toml")
    source = SimSource(scenario, clock)
    snapshots = []
    for sequence in range(1, POLICY_SECONDS + 1):
        clock.advance(1.0)
        now = clock.monotonic()
        health = SampleHealth(attempts=sequence, last_success=now, last_success_monotonic=now)
        gpus = source.read().gpus
        snapshots.append(Snapshot(sequence, now, now, source.spec, gpus, health))
    config = PolicyConfig()
    models = [MarginModel() for _ in snapshots[0].gpus]
    model_us = []
    for snapshot in snapshots:
        started = time.perf_counter_ns()
        for index, sample in enumerate(snapshot.gpus):
            reading = sample.reading
            if reading is not None and reading.margin_c is not None:
                models[index], _ = models[index].observe(reading, reading.margin_c, 1.0, config)
        model_us.append((time.perf_counter_ns() - started) / 1000)
    policy = Policy(config, interval_s=1.0)
    policy_us = []
    for snapshot in snapshots:
        started = time.perf_counter_ns()
        policy.update(snapshot)
        policy_us.append((time.perf_counter_ns() - started) / 1000)
    return model_us, policy_us


def beside(other: Path, rounds: int) -> None:
    """Whole Policy.update of `other` and of this checkout, in turns: medians over `rounds`, and the ratio."""
    roots = (other, REPO_ROOT)
    turns: tuple[list[float], list[float]] = ([], [])
    for _ in range(rounds):
        for root, medians in zip(roots, turns, strict=True):
            env = {**os.environ, "PYTHONPATH": str(root)}
            command = [sys.executable, __file__, "--policy-only"]
            answer = subprocess.run(command, env=env, check=True, capture_output=True, text=True)
            medians.append(float(answer.stdout.split()[-1]))
    before, ours = (statistics.median(medians) for medians in turns)
    print(f"whole Policy.update, median µs of {rounds} turns each (a turn: the median of {POLICY_SECONDS})")
    for name, median, medians in ((str(other), before, turns[0]), ("this checkout", ours, turns[1])):
        print(f"{name:40} {median:10.1f}   turns: {', '.join(f'{value:.0f}' for value in medians)}")
    print(f"this checkout / {other}: {ours / before:.2f}x")


def main() -> None:
    """Build the fake, set up the node, and run the measurement in a child process."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--samples", type=int, default=3000, help="timed samples per row (>= 2000)")
    parser.add_argument("--beside", type=Path, help="another checkout whose Policy.update to time in turns")
    parser.add_argument("--rounds", type=int, default=5, help="turns each with --beside")
    parser.add_argument("--measure", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--policy-only", action="store_true", help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.measure:
        measure(options.samples)
        return
    if options.policy_only:
        # The gpuwatch imported is the one first on PYTHONPATH (beside()'s choice of checkout).
        print(statistics.median(policy_costs()[1]))
        return
    if options.beside is not None:
        beside(options.beside.resolve(), options.rounds)
        return
    sys.path.insert(0, str(REPO_ROOT / "tests"))
    from fake_nvml.build import build_all  # noqa: PLC0415 - tests/ is put on the path just above
    from fake_nvml.control import FakeNvml  # noqa: PLC0415
    from fake_nvml.profiles import A100_SXM4_80GB, H100_SXM, H200  # noqa: PLC0415

    libraries = build_all()
    with tempfile.TemporaryDirectory(prefix="gpuwatch-bench-") as scratch:
        fake = FakeNvml(libraries["full"], libraries, Path(scratch) / "fake-nvml.state")
        fake.install([H100_SXM] * 4 + [A100_SXM4_80GB] * 2 + [H200] * 2)
        env = fake.env("full")
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))
        command = [sys.executable, __file__, "--measure", "--samples", str(max(options.samples, 2000))]
        sys.exit(subprocess.run(command, env=env, check=False).returncode)


if __name__ == "__main__":
    main()
