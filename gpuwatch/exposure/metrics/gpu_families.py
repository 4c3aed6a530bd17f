"""The per-GPU gpuwatch_gpu_* families: identity, readings, clock events, XIDs and the policy's verdict."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from gpuwatch.exposure.metrics.names import (
    GPU_LABELS,
    SAMPLED,
    counter,
    decided_help,
    gauge,
    non_empty,
    sampled_help,
)
from gpuwatch.policy.decision import GpuDecision, ThermalState
from gpuwatch.sources.model import (
    REASON_WORDS,
    GpuHealth,
    GpuIdentity,
    GpuReading,
    GpuSample,
    SlowdownCounters,
)

CELSIUS = "degrees Celsius"
RATIO = "ratio 0-1"
_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class Field(Generic[_T]):
    """One per-GPU value: the family name after `gpuwatch_gpu_`, its HELP, and how to read it."""

    name: str
    documentation: str
    read: Callable[[_T], float | None]


def _reading(
    name: str, what: str, unit: str, read: Callable[[GpuReading], float | None]
) -> Field[GpuReading]:
    return Field(name, sampled_help(what, unit), read)


def _identity(
    name: str, what: str, unit: str, read: Callable[[GpuIdentity], float | None]
) -> Field[GpuIdentity]:
    return Field(name, f"{what}, in {unit}; as the driver reports it for this GPU.", read)


def _decided(
    name: str, what: str, unit: str, read: Callable[[GpuDecision], float | None]
) -> Field[GpuDecision]:
    return Field(name, decided_help(what, unit), read)


READING_GAUGES = (
    _reading("temperature_celsius", "GPU core temperature", CELSIUS, lambda r: r.temperature_c),
    _reading(
        "memory_temperature_celsius", "Memory (HBM) temperature", CELSIUS, lambda r: r.memory_temperature_c
    ),
    _reading(
        "thermal_margin_celsius",
        "Margin below the max-operating temperature limit (T.Limit); 0 is at the limit",
        CELSIUS,
        lambda r: r.margin_c,
    ),
    _reading(
        "slowdown_margin_celsius",
        "Margin below the temperature at which the GPU slows its clocks down (HW slowdown)",
        CELSIUS,
        lambda r: r.slowdown_margin_c,
    ),
    _reading(
        "shutdown_margin_celsius",
        "Margin below the shutdown temperature",
        CELSIUS,
        lambda r: r.shutdown_margin_c,
    ),
    _reading(
        "memory_margin_celsius",
        "Margin of the memory temperature below its max-operating limit",
        CELSIUS,
        lambda r: r.memory_margin_c,
    ),
    _reading("power_watts", "Power draw", "watts", lambda r: r.power_w),
    _reading("power_limit_watts", "Enforced power limit", "watts", lambda r: r.power_limit_w),
    _reading("utilization_ratio", "Share of time a kernel was running", RATIO, lambda r: r.utilization_ratio),
    _reading(
        "memory_utilization_ratio",
        "Share of time device memory was read or written",
        RATIO,
        lambda r: r.memory_utilization_ratio,
    ),
    _reading("memory_used_bytes", "Device memory in use", "bytes", lambda r: r.memory_used_bytes),
    _reading("memory_free_bytes", "Device memory free", "bytes", lambda r: r.memory_free_bytes),
    _reading("sm_clock_hertz", "SM clock", "hertz", lambda r: r.sm_clock_hz),
    _reading("memory_clock_hertz", "Memory clock", "hertz", lambda r: r.memory_clock_hz),
    _reading("pstate", "Performance state (0 fastest, 15 slowest)", "P-state number", lambda r: r.pstate),
    _reading(
        "recovery_action",
        "Recovery the driver asks for (0 none, 1 GPU reset, 2 node reboot, 3 drain P2P, "
        "4 drain and reset, 5 recover IMEX domain, 6 bus reset, 7 system reboot, -1 unknown)",
        "NVML recovery-action code",
        lambda r: None if r.recovery_action is None else int(r.recovery_action),
    ),
)
READING_COUNTERS = (
    _reading("energy_joules", "Energy used since the driver was loaded", "joules", lambda r: r.energy_j),
    _reading(
        "pcie_replays",
        "PCIe replays (link-level retries) since the driver was loaded",
        "replays",
        lambda r: r.pcie_replay_count,
    ),
)
IDENTITY_GAUGES = (
    _identity("memory_total_bytes", "Device memory", "bytes", lambda i: i.memory_total_bytes),
    _identity("sm_clock_max_hertz", "Highest SM clock", "hertz", lambda i: i.sm_clock_max_hz),
    _identity("memory_clock_max_hertz", "Highest memory clock", "hertz", lambda i: i.memory_clock_max_hz),
    _identity("power_default_limit_watts", "Default power limit", "watts", lambda i: i.power_default_limit_w),
)
DECISION_GAUGES = (
    _decided(
        "predicted_margin_celsius",
        "Thermal margin predicted after the policy's horizon if one more job starts now",
        CELSIUS,
        lambda g: g.predicted_margin_c,
    ),
    _decided(
        "time_to_slowdown_seconds",
        "Predicted time until the thermal margin reaches 0; absent while not heading there",
        "seconds",
        lambda g: g.time_to_slowdown_s,
    ),
    _decided(
        "sustainable_power_watts",
        "Highest steady power that keeps the GPU out of HOT",
        "watts",
        lambda g: g.sustainable_power_w,
    ),
    _decided("pressure_ratio", "Thermal pressure, 0 cool to 1 at the limit", RATIO, lambda g: g.pressure),
)
# Each SlowdownCounters field with the clock-event reason word it counts, so that
# clock_event_seconds_total and clock_event_active share their `reason` values.
COUNTED_REASONS = tuple(
    (field.name, field.name.removesuffix("_s")) for field in dataclasses.fields(SlowdownCounters)
)
_READ_OK = GpuHealth.OK


def _labels(index: int, uuid: str) -> list[str]:
    return [str(index), uuid]


def _fill(
    fields: Sequence[Field[_T]],
    make: Callable[[str, str, Sequence[str]], GaugeMetricFamily | CounterMetricFamily],
    rows: Sequence[tuple[list[str], _T]],
) -> Iterator[Metric]:
    """One family per field, with a sample for each row whose value is known."""
    for field in fields:
        family = make("gpu_" + field.name, field.documentation, GPU_LABELS)
        for labels, source in rows:
            value = field.read(source)
            if value is not None:
                family.add_metric(labels, float(value))
        yield family


def sample_families(samples: Sequence[GpuSample], driver_version: str | None) -> Iterator[Metric]:
    """Identity, health, readings, clock events and XIDs of every GPU in a snapshot.

    A GPU that could not be read this round shows only its identity, `gpu_up 0` and its XID
    counts: its last values are not repeated as if they were current.
    """
    identities = [(_labels(s.identity.index, s.identity.uuid), s.identity) for s in samples]
    readings = [
        (_labels(s.identity.index, s.identity.uuid), s.reading)
        for s in samples
        if s.reading is not None and s.health is _READ_OK
    ]
    yield from non_empty(
        (
            _info(samples, driver_version),
            _up(samples),
            *_fill(IDENTITY_GAUGES, gauge, identities),
            *_fill(READING_GAUGES, gauge, readings),
            *_fill(READING_COUNTERS, counter, readings),
            *_clock_events(readings),
            *_xids(samples),
        )
    )


def decision_families(gpus: Sequence[GpuDecision]) -> Iterator[Metric]:
    """The policy's per-GPU verdict: state (a state set), pressure and predictions."""
    rows = [(_labels(g.index, g.uuid), g) for g in gpus]
    state = gauge(
        "gpu_state",
        "1 for the GPU's current thermal state, 0 for the others; "
        "the policy's decision on the latest sample (every --interval seconds).",
        (*GPU_LABELS, "state"),
    )
    for labels, decided in rows:
        for candidate in ThermalState:
            state.add_metric([*labels, candidate.value], float(decided.state is candidate))
    yield from non_empty((state, *_fill(DECISION_GAUGES, gauge, rows), _forecast_errors(rows)))


def _forecast_errors(rows: Sequence[tuple[list[str], GpuDecision]]) -> Metric:
    """The allowance each GPU's slots keep for its forecast's own errors, by seconds ahead."""
    family = gauge(
        "gpu_forecast_error_celsius",
        decided_help(
            "Margin the slots keep for the forecast's own errors this many seconds ahead (horizon): "
            "its recent error quantile, or the prior on a board not yet checked",
            CELSIUS,
        ),
        (*GPU_LABELS, "horizon"),
    )
    for labels, decided in rows:
        for ahead_s, error_c in decided.forecast_error_c:
            family.add_metric([*labels, f"{ahead_s:g}"], error_c)
    return family


def _info(samples: Sequence[GpuSample], driver_version: str | None) -> Metric:
    info = gauge(
        "gpu_info",
        "Always 1; the GPU's identity, which no other family repeats.",
        (*GPU_LABELS, "name", "pci_bus_id", "driver"),
    )
    for sample in samples:
        identity = sample.identity
        driver = identity.driver_version or driver_version or ""
        labels = [*_labels(identity.index, identity.uuid), identity.name, identity.pci_bus_id or "", driver]
        info.add_metric(labels, 1.0)
    return info


def _up(samples: Sequence[GpuSample]) -> Metric:
    up = gauge(
        "gpu_up",
        "1 when the GPU was read in the latest sample; 0 when it is lost, needs a reset or did not answer.",
        GPU_LABELS,
    )
    for sample in samples:
        read = sample.reading is not None and sample.health is _READ_OK
        up.add_metric(_labels(sample.identity.index, sample.identity.uuid), float(read))
    return up


def _clock_events(readings: Sequence[tuple[list[str], GpuReading]]) -> Iterator[Metric]:
    active = gauge(
        "gpu_clock_event_active",
        f"1 while the clock-event reason holds the clocks below their maximum, else 0; {SAMPLED}.",
        (*GPU_LABELS, "reason"),
    )
    seconds = counter(
        "gpu_clock_event_seconds",
        f"Time the reason has held the clocks down since the driver was loaded, in seconds; {SAMPLED}.",
        (*GPU_LABELS, "reason"),
    )
    for labels, reading in readings:
        mask = reading.clock_event_reasons
        if mask is not None:
            for reason, word in REASON_WORDS.items():
                active.add_metric([*labels, word], float(bool(mask & reason)))
        for field_name, word in COUNTED_REASONS:
            value = getattr(reading.slowdown_counters, field_name)
            if value is not None:
                seconds.add_metric([*labels, word], float(value))
    return iter((active, seconds))


def _xids(samples: Sequence[GpuSample]) -> Iterator[Metric]:
    errors = counter(
        "gpu_xid_errors",
        f"XID errors the driver reported for the GPU since gpuwatch started, by XID code; {SAMPLED}.",
        (*GPU_LABELS, "xid"),
    )
    last = gauge(
        "gpu_last_xid",
        f"Code of the latest XID error the driver reported since gpuwatch started; {SAMPLED}.",
        GPU_LABELS,
    )
    for sample in samples:
        labels = _labels(sample.identity.index, sample.identity.uuid)
        for xid, count in sorted(sample.xid_errors.items(), key=lambda item: _xid_order(item[0])):
            errors.add_metric([*labels, xid], float(count))
        if sample.last_xid is not None:
            last.add_metric(labels, float(sample.last_xid))
    return iter((errors, last))


def _xid_order(xid: str) -> tuple[int, str]:
    """Numeric XIDs in numeric order, anything else after them."""
    return (int(xid), "") if xid.isdigit() else (1 << 31, xid)
