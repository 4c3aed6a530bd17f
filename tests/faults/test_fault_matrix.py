"""Issue 7's NVML fault matrix, run against `gpuwatch serve` on the fake libnvidia-ml.so.1.

Each fault runs one daemon on four fake H100s sampled every INTERVAL_S: steady OK, inject, hold,
clear, recover; /healthz is probed every 20 ms throughout. The figures go to a Markdown table
(printed with -s, written to $GPUWATCH_FAULT_TABLE if set) that docs/faults.md quotes.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from exposure.lease_helpers import Ended, ended, ended_by_how, lease_of, release, take
from fake_nvml.control import (
    DOUBLE,
    FIELD_ECC_CORRECTED_VOLATILE,
    FIELD_HW_THERMAL_SLOWDOWN_NS,
    FIELD_MEMORY_TEMP,
    FIELD_SW_THERMAL_SLOWDOWN_NS,
    UNSIGNED_LONG_LONG,
    FakeNvml,
)
from fake_nvml.profiles import H100_SXM
from fault_helpers import (
    GPU_COUNT,
    HEALTHZ_LIMIT_S,
    INTERVAL_S,
    RSS_GROWTH_LIMIT_BYTES,
    SLACK_S,
    FaultResult,
    HealthProbe,
    Resources,
    admit_status,
    all_ok,
    gpu_documents,
    gpu_states,
    metric_samples,
    serve_on_fake,
    settled_resources,
    wait_for_states,
    write_table,
)

from gpuwatch.sources.nvml.reader import SAMPLE_FIELDS
from gpuwatch.sources.nvml.xid import MAX_DISTINCT_XIDS

pytestmark = pytest.mark.slow

TWO_INTERVALS_S = 2 * INTERVAL_S
START_TIMEOUT_S = 15.0  # Python start, imports and the first samples on a loaded 2-core machine
WAIT_TIMEOUT_S = 10.0  # far beyond every bound: a wait that fails reports the last states it saw
XID_STORM_PER_S = 1000
XID_STORM_S = 3.0
XID_BATCH_S = 0.01  # the storm is injected in batches of 10 events every 10 ms
XID_CRITICAL = 79  # fallen off the bus: in DEFAULT_CRITICAL_XIDS
XID_JUNK_CODES = 200  # distinct codes no driver assigns, past the per-GPU cap of MAX_DISTINCT_XIDS
XID_JUNK_BASE = 10_000
XID_HOLD_S = 1.0  # failed_xid_hold_s in this row's --config: the storm's recovery is measurable

# Per-sample NVML functions of one GPU; identity calls (name, UUID, PCI) stay answered, as every
# driver answers them.
PER_SAMPLE_FUNCTIONS = (
    "nvmlDeviceGetMarginTemperature",
    "nvmlDeviceGetFieldValues",
    "nvmlDeviceGetPowerUsage",
    "nvmlDeviceGetEnforcedPowerLimit",
    "nvmlDeviceGetTotalEnergyConsumption",
    "nvmlDeviceGetUtilizationRates",
    "nvmlDeviceGetMemoryInfo",
    "nvmlDeviceGetClockInfo",
    "nvmlDeviceGetCurrentClocksEventReasons",
    "nvmlDeviceGetCurrentClocksThrottleReasons",
    "nvmlDeviceGetPerformanceState",
    "nvmlDeviceGetViolationStatus",
)

RESULTS: list[FaultResult] = []


@pytest.fixture(scope="module", autouse=True)
def fault_table() -> Iterator[None]:
    """Print (and write, if asked) the table of every fault this module ran."""
    yield
    if RESULTS:
        print("\n" + write_table(RESULTS))  # noqa: T201 - the table is this module's report


@dataclass(frozen=True)
class Fault:
    """One fault of the matrix: what it breaks, how it is injected and cleared, what must follow.

    `node_admits` says whether the node still admits `default` work on another GPU: admission is
    by each GPU's slots, and a FAILED or UNKNOWN GPU has none, so the others keep theirs.
    `clear_delay_s` is how long after `clear` the fault is over (a critical XID holds its GPU out
    for failed_xid_hold_s by design).
    """

    name: str
    affected: tuple[int, ...]
    state: str
    inject: Callable[[FakeNvml], None]
    clear: Callable[[FakeNvml], None]
    node_admits: bool
    detect_bound_s: float = TWO_INTERVALS_S + SLACK_S
    recover_bound_s: float = TWO_INTERVALS_S + SLACK_S
    hold_s: float = 4 * INTERVAL_S
    clear_delay_s: float = 0.0
    serve_args: tuple[str, ...] = ()
    note: str = ""
    # Checks of what this fault must (not) show on the daemon: while it holds, and once cleared;
    # each returns a phrase for the table.
    while_held: Callable[[int, FakeNvml], str] | None = None
    once_cleared: Callable[[int], str] | None = None


def _lose_gpu(fake: FakeNvml) -> None:
    fake.set_gpu_return(2, "GPU_IS_LOST")


def _find_gpu(fake: FakeNvml) -> None:
    fake.set_gpu_return(2, "SUCCESS")


def _unload_driver(fake: FakeNvml) -> None:
    fake.set_global_return("DRIVER_NOT_LOADED")


def _load_driver(fake: FakeNvml) -> None:
    fake.set_global_return("SUCCESS")


def _hang_power_call(fake: FakeNvml) -> None:
    fake.block(2, "nvmlDeviceGetPowerUsage")


def _release_power_call(fake: FakeNvml) -> None:
    fake.release(2, "nvmlDeviceGetPowerUsage")


def _only_temperature(fake: FakeNvml) -> None:
    for function in PER_SAMPLE_FUNCTIONS:
        fake.set_return(3, function, "NOT_SUPPORTED")
    for field_id in SAMPLE_FIELDS:
        fake.set_field_return(3, field_id, "NOT_SUPPORTED")


def _everything_again(fake: FakeNvml) -> None:
    for function in PER_SAMPLE_FUNCTIONS:
        fake.set_return(3, function, "SUCCESS")
    fake.configure_gpu(3, H100_SXM)


GARBAGE_GPU = 2


def _garbage(fake: FakeNvml) -> None:
    fake.set(GARBAGE_GPU, "temperature_c", 4000)
    fake.set(GARBAGE_GPU, "margin_c", -100_000)
    fake.set(GARBAGE_GPU, "power_mw", -5000)  # a negative power, as the unsigned NVML answer reads it
    fake.set(GARBAGE_GPU, "utilization_gpu_pct", 250)
    fake.set(GARBAGE_GPU, "energy_mj", -1)  # 2**64 - 1 mJ
    fake.set_field(GARBAGE_GPU, FIELD_MEMORY_TEMP, math.nan, DOUBLE)
    fake.set_field(GARBAGE_GPU, FIELD_SW_THERMAL_SLOWDOWN_NS, math.nan, DOUBLE)
    fake.set_field(GARBAGE_GPU, FIELD_ECC_CORRECTED_VOLATILE, math.inf, DOUBLE)  # no int can hold it
    fake.set_field(GARBAGE_GPU, FIELD_HW_THERMAL_SLOWDOWN_NS, 2**62, UNSIGNED_LONG_LONG)  # 146 years


# What the values above become in a reading: each must be counted as dropped.
GARBAGE_FIELDS = (
    "temperature_c",
    "margin_c",
    "power_w",
    "utilization_ratio",
    "energy_j",
    "memory_temperature_c",
    "sw_thermal_slowdown_s",
    "hw_thermal_slowdown_s",
    "ecc_corrected_volatile",
)


def _sane(fake: FakeNvml) -> None:
    fake.configure_gpu(GARBAGE_GPU, H100_SXM)


class XidStorm:
    """Injects XID_STORM_PER_S events a second on GPU 1 for XID_STORM_S on a thread.

    Each 10 ms batch is one critical XID 79 then junk codes cycling through XID_JUNK_CODES distinct
    values: the per-GPU cap must hold memory while the critical code still counts.
    """

    gpu = 1

    def __init__(self) -> None:
        self.injected = 0
        self._thread: threading.Thread | None = None

    def start(self, fake: FakeNvml) -> None:
        self.injected = 0  # each daemon counts its own storm
        self._thread = threading.Thread(target=self._run, args=(fake,), name="xid-storm", daemon=True)
        self._thread.start()

    def wait(self) -> None:
        assert self._thread is not None
        self._thread.join(XID_STORM_S + 10)

    def _run(self, fake: FakeNvml) -> None:
        per_batch = round(XID_STORM_PER_S * XID_BATCH_S)
        batches = round(XID_STORM_S / XID_BATCH_S)
        started = time.monotonic()
        for batch in range(batches):
            time.sleep(max(0.0, started + batch * XID_BATCH_S - time.monotonic()))
            fake.inject_xid(self.gpu, XID_CRITICAL)
            fake.inject_xid(self.gpu, XID_JUNK_BASE + batch % XID_JUNK_CODES, per_batch - 1)
            self.injected += per_batch


STORM = XidStorm()


def _start_storm(fake: FakeNvml) -> None:
    STORM.start(fake)


def _end_storm(_fake: FakeNvml) -> None:
    STORM.wait()


def _metrics_caught_up(check: Callable[[], str], timeout_s: float = 1.0) -> str:
    """`check()` once /metrics shows what /v1/state shows: a decision is published before its
    metrics render (so admission clients see it first), which lags by a few milliseconds."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return check()
        except AssertionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def _temperature_only_served(port: int, fake: FakeNvml) -> str:
    """GPU 3 reports its temperature and nothing else: absent values, not zeros, and no error."""
    temperature = metric_samples(port, "gpuwatch_gpu_temperature_celsius")
    power = metric_samples(port, "gpuwatch_gpu_power_watts")
    errors = metric_samples(port, "gpuwatch_sample_errors_total")
    assert any('gpu="3"' in labels for labels in temperature), temperature
    assert not any('gpu="3"' in labels for labels in power), power
    assert not any("NOT_SUPPORTED" in labels for labels in errors), errors
    assert gpu_documents(port)[3]["margin_c"] is None
    assert fake.calls(3, "nvmlDeviceGetTemperature") > 0
    return ""


def _garbage_dropped(port: int, _fake: FakeNvml) -> str:
    """Every implausible value is counted as dropped, and none is served."""
    dropped = metric_samples(port, "gpuwatch_sample_dropped_values_total")
    for name in GARBAGE_FIELDS:
        assert dropped.get(f'field="{name}"', 0) > 0, (name, dropped)
    document = gpu_documents(port)[GARBAGE_GPU]
    assert (document["margin_c"], document["power_w"]) == (None, None)
    label = f'gpu="{GARBAGE_GPU}"'
    assert not [k for k in metric_samples(port, "gpuwatch_gpu_temperature_celsius") if label in k]
    counters = metric_samples(port, "gpuwatch_gpu_clock_event_seconds_total")
    assert all(math.isfinite(v) and v < 1e9 for k, v in counters.items() if label in k), counters
    return "dropped: " + ", ".join(sorted(k.split('"')[1] for k in dropped))


def _storm_counted(port: int) -> str:
    """Every storm event was counted on GPU 1 alone, with its distinct codes capped; how long it lagged."""
    started = time.monotonic()
    counted: dict[str, float] = {}
    while time.monotonic() - started < WAIT_TIMEOUT_S:
        samples = metric_samples(port, "gpuwatch_gpu_xid_errors_total")
        counted = {k: v for k, v in samples.items() if 'gpu="1"' in k}
        if sum(counted.values()) >= STORM.injected:
            break
        time.sleep(0.02)
    lag_s = time.monotonic() - started
    assert sum(counted.values()) == STORM.injected, (sum(counted.values()), STORM.injected)
    # XID 79 keeps its own count (a catalogue code); the junk codes are capped.
    assert len(counted) <= MAX_DISTINCT_XIDS + 2, len(counted)
    assert any(f'xid="{XID_CRITICAL}"' in k for k in counted), counted
    samples = metric_samples(port, "gpuwatch_gpu_xid_errors_total")
    assert not [k for k in samples if 'gpu="1"' not in k], samples
    return f"{STORM.injected:,} events counted {lag_s:.2f} s after the storm ended, in {len(counted)} codes"


FAULTS = [
    Fault(
        "GPU 2 lost mid-run (every call on it: GPU_IS_LOST)",
        affected=(2,),
        state="failed",
        inject=_lose_gpu,
        clear=_find_gpu,
        node_admits=True,
    ),
    Fault(
        "driver unloaded: every NVML call DRIVER_NOT_LOADED for 1.5 s, then back",
        affected=(0, 1, 2, 3),
        state="unknown",
        inject=_unload_driver,
        clear=_load_driver,
        node_admits=False,
        hold_s=1.5,
        # serve retries NVML at the next sample, then at every second one: back within two intervals.
        recover_bound_s=TWO_INTERVALS_S + SLACK_S,
        note=(
            "serve re-initialises NVML at the next sample, then at every second sample while it "
            "fails, so the driver's return is seen within two intervals."
        ),
    ),
    Fault(
        "one call blocks forever (nvmlDeviceGetPowerUsage on GPU 2), then returns",
        affected=(0, 1, 2, 3),
        state="unknown",
        inject=_hang_power_call,
        clear=_release_power_call,
        node_admits=False,
        # The sampler gives up on a stuck read after one interval and marks the GPUs unavailable;
        # the policy makes a GPU the source could not read UNKNOWN at once.
        detect_bound_s=TWO_INTERVALS_S + SLACK_S,
        hold_s=8 * INTERVAL_S,
        note=(
            "GPUs are read in turn on one thread, so one hung call strands the whole read: every GPU "
            "goes UNKNOWN (source_unavailable) once the sampler gives up on the read, one interval in."
        ),
    ),
    Fault(
        "NOT_SUPPORTED on every per-sample call and field of GPU 3 but temperature",
        affected=(3,),
        state="unknown",
        inject=_only_temperature,
        clear=_everything_again,
        node_admits=True,
        while_held=_temperature_only_served,
        note=(
            "GPU 3 keeps reporting its temperature; margin, power and the rest are absent (no "
            "sample), not 0, and NOT_SUPPORTED is counted as no error."
        ),
    ),
    Fault(
        "garbage values on GPU 2: 4000 °C, margin -100000 °C, power -5 W, 250 % util, NaN",
        affected=(GARBAGE_GPU,),
        state="unknown",
        inject=_garbage,
        clear=_sane,
        node_admits=True,
        while_held=_garbage_dropped,
        note="every implausible value is dropped and counted in gpuwatch_sample_dropped_values_total.",
    ),
    Fault(
        f"XID storm: {XID_STORM_PER_S:,} XIDs/s for {XID_STORM_S:g} s on GPU 1 (79 and "
        f"{XID_JUNK_CODES} junk codes)",
        affected=(XidStorm.gpu,),
        state="failed",
        inject=_start_storm,
        clear=_end_storm,
        node_admits=True,
        once_cleared=_storm_counted,
        hold_s=XID_STORM_S - 0.5,  # watched while the storm goes on; `clear` waits for its end
        clear_delay_s=XID_HOLD_S,
        serve_args=("--config", "xid-hold.toml"),
        note=(
            f"run with failed_xid_hold_s = {XID_HOLD_S:g} s; recovery counts from the end of that hold. "
            "Every event is counted; distinct codes stay capped per GPU."
        ),
    ),
]


def _hold(port: int, fault: Fault, steady: dict[int, str], seconds: float) -> list[str]:
    """Watch the states for `seconds`: the affected GPUs stay out, the others where they were."""
    problems: list[str] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        _, states = gpu_states(port)
        problems += [
            f"GPU {i} left {fault.state}: {states[i]}" for i in fault.affected if states[i] != fault.state
        ]
        problems += [f"GPU {i} moved to {states[i]}" for i, state in steady.items() if states[i] != state]
        time.sleep(0.02)
    return problems


def _resources_text(before: Resources, after: Resources) -> str:
    growth_mib = (after.rss_bytes - before.rss_bytes) / 2**20
    return f"{after.threads} vs {before.threads}, {after.fds} vs {before.fds}, {growth_mib:+.1f} MiB"


def _assert_no_leak(before: Resources, after: Resources, *, extra_threads: int = 0) -> None:
    assert after.threads == before.threads + extra_threads, (before, after)
    assert after.fds == before.fds, (before, after)
    assert after.rss_bytes - before.rss_bytes < RSS_GROWTH_LIMIT_BYTES, (before, after)


@dataclass(frozen=True)
class LeaseEnd:
    """A lease on a GPU the fault took out: the answer to releasing it, and the ends counted since.

    `grown` is None where gpuwatch_leases_ended_total is not served.
    """

    release: tuple[int, str]
    grown: dict[str, float] | None


def _lease_on(port: int, gpu: int) -> tuple[str, Ended | None]:
    """A lease on `gpu`, as a job running there holds one (a long one), and the ends counted so far."""
    return lease_of(take(port, f"class=default&gpu={gpu}&expected_s=600")), ended(port)


def _lease_end(port: int, leased: tuple[str, Ended | None]) -> LeaseEnd:
    """What became of the lease `_lease_on` took, once its GPU is out."""
    lease, before = leased
    answer = release(port, lease)
    after = ended(port)
    grown = None
    if before is not None and after is not None:
        grown = {how: n - ended_by_how(before)[how] for how, n in ended_by_how(after).items()}
    return LeaseEnd((answer.status, answer.json().get("error", "")), grown)


@pytest.fixture
def four_gpus(fake_nvml: FakeNvml) -> FakeNvml:
    fake_nvml.install([H100_SXM] * GPU_COUNT)
    return fake_nvml


@pytest.mark.parametrize("fault", FAULTS, ids=lambda f: f.inject.__name__.strip("_"))
def test_fault(fault: Fault, four_gpus: FakeNvml, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = four_gpus
    monkeypatch.chdir(tmp_path)
    (tmp_path / "xid-hold.toml").write_text(f"[policy]\nfailed_xid_hold_s = {XID_HOLD_S}\n")
    serve = serve_on_fake(fake.env("full"), *fault.serve_args)
    try:
        port = serve.port("HTTP")
        with HealthProbe(port) as probe:
            wait_for_states(port, all_ok, timeout_s=START_TIMEOUT_S, what="four GPUs OK at start")
            before = settled_resources(serve.process.pid, probe)
            steady = {i: "ok" for i in range(GPU_COUNT) if i not in fault.affected}
            leased = _lease_on(port, fault.affected[0])

            fault.inject(fake)
            detected = wait_for_states(
                port,
                lambda states: all(states[i] == fault.state for i in fault.affected),
                steady=steady,
                timeout_s=WAIT_TIMEOUT_S,
                what=f"GPUs {fault.affected} {fault.state}",
            )
            lease_end = _lease_end(port, leased)
            pinned, _ = admit_status(port, f"class=default&gpu={fault.affected[0]}")
            node, node_gpu = admit_status(port, "class=default")
            special = _metrics_caught_up(lambda: fault.while_held(port, fake)) if fault.while_held else ""
            problems = _hold(port, fault, steady, fault.hold_s)

            fault.clear(fake)
            cleared_at = time.monotonic() + fault.clear_delay_s
            if fault.once_cleared:
                special = _metrics_caught_up(lambda: fault.once_cleared(port))
            wait_for_states(port, all_ok, timeout_s=WAIT_TIMEOUT_S, what="every GPU OK again")
            recovered_s = time.monotonic() - cleared_at
            time.sleep(2 * INTERVAL_S)  # a few more samples: anything a fault cycle leaks shows by now
            after = settled_resources(serve.process.pid, probe)
        RESULTS.append(
            FaultResult(
                fault=fault.name,
                affected=f"{', '.join(map(str, fault.affected))} → {fault.state.upper()}",
                detected_s=detected.elapsed_s,
                detect_bound_s=fault.detect_bound_s,
                others=("MOVED" if detected.others_moved else "kept OK") if steady else "none",
                admit=f"{pinned}, {node}" + (f" (GPU {node_gpu})" if node_gpu is not None else ""),
                recovered_s=recovered_s,
                recover_bound_s=fault.recover_bound_s,
                healthz_worst_s=probe.worst_s,
                resources=_resources_text(before, after),
                notes=" ".join(filter(None, [fault.note, special])),
            )
        )
        assert not probe.failures, probe.failures[:5]
        assert probe.worst_s < HEALTHZ_LIMIT_S, probe.worst_s
        assert len(probe.latencies_s) > 50
        assert detected.elapsed_s <= fault.detect_bound_s
        assert not detected.others_moved, detected.others_moved[:5]
        assert not problems, problems[:5]
        assert pinned == 503
        assert lease_end.release == (404, "unknown_lease")  # ended with its GPU: nothing to release
        assert lease_end.grown in (None, {"released": 0, "expired": 0, "gpu_out": 1}), lease_end
        if fault.node_admits:
            assert node == 200
            assert node_gpu not in fault.affected
        else:
            assert node == 503
        assert recovered_s <= fault.recover_bound_s
        assert recovered_s > -SLACK_S  # not back before the fault was over (the XID hold included)
        _assert_no_leak(before, after)
    finally:
        fake.release_all()
        fake.set_global_return("SUCCESS")
        serve.kill()


def test_library_missing_at_start(fake_nvml: FakeNvml, tmp_path: Path) -> None:
    fake_nvml.install([H100_SXM] * GPU_COUNT)
    library_dir = tmp_path / "driver"
    library_dir.mkdir()
    env = fake_nvml.env("full")
    env["LD_LIBRARY_PATH"] = str(library_dir)  # exists, but holds no libnvidia-ml.so.1 yet
    started = time.monotonic()
    serve = serve_on_fake(env)
    try:
        port = serve.port("HTTP")
        with HealthProbe(port) as probe:
            serve.wait_for_log(r"libnvidia-ml\.so\.1 was not found.*retrying in")
            first_attempt = time.monotonic()
            node_state, states = gpu_states(port)
            node, _ = admit_status(port, "class=default")
            before = settled_resources(serve.process.pid, probe)
            # Attempts come at every second sample while the library is missing.
            time.sleep(max(0.0, first_attempt + 1.5 - time.monotonic()))
            (library_dir / "libnvidia-ml.so.1").symlink_to(fake_nvml.libraries["full"])
            cleared_at = time.monotonic()
            wait_for_states(port, all_ok, timeout_s=WAIT_TIMEOUT_S, what="four GPUs OK once installed")
            recovered_s = time.monotonic() - cleared_at
            time.sleep(2 * INTERVAL_S)
            after = settled_resources(serve.process.pid, probe)
        recover_bound_s = TWO_INTERVALS_S + SLACK_S
        RESULTS.append(
            FaultResult(
                fault="libnvidia-ml.so.1 missing at start, installed 1.5 s after the first attempt",
                affected=f"all → node {node_state.upper()}, no GPU listed",
                detected_s=None,
                detect_bound_s=None,
                others="none",
                admit=f"n/a, {node}",
                recovered_s=recovered_s,
                recover_bound_s=recover_bound_s,
                healthz_worst_s=probe.worst_s,
                resources=_resources_text(before, after),
                notes=(
                    f"UNKNOWN from the first answer, {first_attempt - started:.1f} s after the process "
                    "started. Attempts come at every second sample: installing the library is noticed "
                    "within two intervals. After: one more thread, the XID event thread."
                ),
            )
        )
        assert not probe.failures, probe.failures[:5]
        assert probe.worst_s < HEALTHZ_LIMIT_S, probe.worst_s
        assert (node_state, states, node) == ("unknown", {}, 503)
        assert recovered_s <= recover_bound_s
        _assert_no_leak(before, after, extra_threads=1)
    finally:
        serve.kill()


def test_critical_xid_after_a_storm_of_junk_codes_still_fails_the_gpu(four_gpus: FakeNvml) -> None:
    serve = serve_on_fake(four_gpus.env("full"))
    try:
        port = serve.port("HTTP")
        wait_for_states(port, all_ok, timeout_s=START_TIMEOUT_S, what="four GPUs OK at start")
        for code in range(MAX_DISTINCT_XIDS):
            four_gpus.inject_xid(XidStorm.gpu, XID_JUNK_BASE + code, 10)
        wait_for_states(port, all_ok, timeout_s=WAIT_TIMEOUT_S, what="the junk storm counted")
        four_gpus.inject_xid(XidStorm.gpu, XID_CRITICAL)
        detected = wait_for_states(
            port, lambda states: states[XidStorm.gpu] == "failed", timeout_s=10 * INTERVAL_S, what="XID 79"
        )
        assert detected.elapsed_s <= TWO_INTERVALS_S + SLACK_S
    finally:
        serve.kill()
