"""`--metrics.dcgm-compat`: dcgm-exporter's default-counter names, types, units and labels.

For each field gpuwatch reads, the same family dcgm-exporter's etc/default-counters.csv exports,
with its HELP text, its unit (MHz, °C, W, mJ, %, MiB) and its labels, so that dashboards and
alerts written for dcgm-exporter work unchanged. Fields gpuwatch does not read (PCIe throughput,
encoder and decoder use, NVLink, remapped rows, vGPU licence) are absent.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from prometheus_client.core import Metric

from gpuwatch.exposure.metrics.collector import Observation
from gpuwatch.sources.model import GpuHealth, GpuReading, GpuSample

_MIB = 1 << 20
LABELS = ("gpu", "UUID", "pci_bus_id", "device", "modelName", "Hostname", "DCGM_FI_DRIVER_VERSION")
# Short names from NVIDIA's XID catalogue for the err_msg label of DCGM_FI_DEV_XID_ERRORS.
XID_MESSAGES = {
    0: "No Error",
    13: "Graphics Engine Exception",
    31: "GPU memory page fault",
    43: "GPU stopped processing",
    45: "Preemptive cleanup, due to previous errors",
    48: "Double Bit ECC Error",
    61: "Internal micro-controller breakpoint/warning",
    62: "Internal micro-controller halt",
    63: "ECC page retirement or row remapping recording event",
    64: "ECC page retirement or row remapper recording failure",
    74: "NVLINK Error",
    79: "GPU has fallen off the bus",
    92: "High single-bit ECC error rate",
    94: "Contained ECC error",
    95: "Uncontained ECC error",
    119: "GSP RPC Timeout",
    120: "GSP Error",
    140: "Unrecovered ECC Error",
}


@dataclass(frozen=True, slots=True)
class DcgmField:
    """One dcgm-exporter family: name, Prometheus type, HELP as dcgm-exporter writes it, value."""

    name: str
    kind: str  # "gauge" or "counter"
    documentation: str
    read: Callable[[GpuReading], float | None]


def _scaled(value: float | None, factor: float) -> float | None:
    return None if value is None else value * factor


def _whole(value: float | None, factor: float = 1.0) -> float | None:
    """Rounded to a whole number, as DCGM reports integer fields."""
    return None if value is None else float(round(value * factor))


def _mib(value: int | None) -> float | None:
    return None if value is None else float(value // _MIB)


# In the order of dcgm-exporter's etc/default-counters.csv.
FIELDS = (
    DcgmField(
        "DCGM_FI_DEV_SM_CLOCK",
        "gauge",
        "SM clock frequency (in MHz).",
        lambda r: _scaled(r.sm_clock_hz, 1e-6),
    ),
    DcgmField(
        "DCGM_FI_DEV_MEM_CLOCK",
        "gauge",
        "Memory clock frequency (in MHz).",
        lambda r: _scaled(r.memory_clock_hz, 1e-6),
    ),
    DcgmField(
        "DCGM_FI_DEV_MEMORY_TEMP", "gauge", "Memory temperature (in C).", lambda r: r.memory_temperature_c
    ),
    DcgmField("DCGM_FI_DEV_GPU_TEMP", "gauge", "GPU temperature (in C).", lambda r: r.temperature_c),
    DcgmField("DCGM_FI_DEV_POWER_USAGE", "gauge", "Power draw (in W).", lambda r: r.power_w),
    DcgmField(
        "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION",
        "counter",
        "Total energy consumption since boot (in mJ).",
        lambda r: _whole(r.energy_j, 1000.0),
    ),
    DcgmField(
        "DCGM_FI_DEV_PCIE_REPLAY_COUNTER",
        "counter",
        "Total number of PCIe retries.",
        lambda r: None if r.pcie_replay_count is None else float(r.pcie_replay_count),
    ),
    DcgmField(
        "DCGM_FI_DEV_GPU_UTIL",
        "gauge",
        "GPU utilization (in %).",
        lambda r: _whole(r.utilization_ratio, 100.0),
    ),
    DcgmField(
        "DCGM_FI_DEV_MEM_COPY_UTIL",
        "gauge",
        "Memory utilization (in %).",
        lambda r: _whole(r.memory_utilization_ratio, 100.0),
    ),
)
XID_FIELD = "DCGM_FI_DEV_XID_ERRORS"
MEMORY_FIELDS = (
    DcgmField(
        "DCGM_FI_DEV_FB_FREE",
        "gauge",
        "Framebuffer memory free (in MiB).",
        lambda r: _mib(r.memory_free_bytes),
    ),
    DcgmField(
        "DCGM_FI_DEV_FB_USED",
        "gauge",
        "Framebuffer memory used (in MiB).",
        lambda r: _mib(r.memory_used_bytes),
    ),
)
# dcgm-exporter's counters keep their DCGM field names, without the `_total` suffix that
# prometheus_client's text writer appends to a counter's HELP and TYPE lines.
COUNTER_NAMES = tuple(field.name for field in (*FIELDS, *MEMORY_FIELDS) if field.kind == "counter")


def dcgm_hostname() -> str:
    """The Hostname label as dcgm-exporter sets it: $NODE_NAME (Kubernetes), else the host name."""
    return os.environ.get("NODE_NAME") or socket.gethostname()


class DcgmCollector:
    """dcgm-exporter's default counters for every GPU read in the latest sample."""

    def __init__(self, observe: Callable[[], Observation], hostname: str) -> None:
        self._observe = observe
        self._hostname = hostname

    def collect(self) -> Iterator[Metric]:
        """The families of FIELDS, then DCGM_FI_DEV_XID_ERRORS, then the memory ones."""
        snapshot = self._observe().snapshot
        if snapshot is None:
            return
        rows = [
            (self._labels(sample, snapshot.driver_version), sample)
            for sample in snapshot.gpus
            if sample.reading is not None and sample.health is GpuHealth.OK
        ]
        yield from _families(FIELDS, rows)
        xid = Metric(XID_FIELD, "Value of the last XID error encountered.", "gauge")
        for labels, sample in rows:
            code = sample.last_xid or 0
            message = XID_MESSAGES.get(code, "Unknown Error")
            xid.add_sample(XID_FIELD, {**labels, "err_code": str(code), "err_msg": message}, float(code))
        if xid.samples:
            yield xid
        yield from _families(MEMORY_FIELDS, rows)

    def _labels(self, sample: GpuSample, driver_version: str | None) -> dict[str, str]:
        identity = sample.identity
        values = (
            str(identity.index),
            identity.uuid,
            identity.pci_bus_id or "",
            # dcgm-exporter names the device node, /dev/nvidia<minor>; the minor number is the
            # index on every system gpuwatch has seen, and NVML's index is what gpuwatch reads.
            f"nvidia{identity.index}",
            identity.name,
            self._hostname,
            identity.driver_version or driver_version or "",
        )
        return dict(zip(LABELS, values, strict=True))


def _families(
    fields: tuple[DcgmField, ...], rows: list[tuple[dict[str, str], GpuSample]]
) -> Iterator[Metric]:
    for field in fields:
        family = Metric(field.name, field.documentation, field.kind)
        for labels, sample in rows:
            value = field.read(sample.reading) if sample.reading is not None else None
            if value is not None:
                family.add_sample(field.name, labels, value)
        if family.samples:
            yield family


def exact_counter_names(exposition: bytes) -> bytes:
    """The text with dcgm-exporter's counter HELP and TYPE lines under their own names."""
    for name in COUNTER_NAMES:
        wrong, right = f"{name}_total ".encode(), f"{name} ".encode()
        exposition = exposition.replace(b"# HELP " + wrong, b"# HELP " + right)
        exposition = exposition.replace(b"# TYPE " + wrong, b"# TYPE " + right)
    return exposition
