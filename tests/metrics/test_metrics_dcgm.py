"""--metrics.dcgm-compat: dcgm-exporter's default-counter names, types, units and labels."""

from __future__ import annotations

import re

from metrics_helpers import samples
from prometheus_client import CollectorRegistry, generate_latest
from serve_helpers import gpu, node

from gpuwatch.exposure.board import Board
from gpuwatch.exposure.metrics.collector import Observation
from gpuwatch.exposure.metrics.dcgm import DcgmCollector, dcgm_hostname, exact_counter_names
from gpuwatch.exposure.metrics.exposition import MetricsExposition
from gpuwatch.sources.model import GpuHealth, GpuIdentity, GpuReading, GpuSample, SampleHealth, Snapshot

LABELS = {
    "gpu": "0",
    "UUID": "GPU-e2681f6e-8d94-2d66-484f-43ea602335f9",
    "pci_bus_id": "00000000:53:00.0",
    "device": "nvidia0",
    "modelName": "NVIDIA H100 80GB HBM3",
    "Hostname": "gpu-node-1",
    "DCGM_FI_DRIVER_VERSION": "590.48.01",
}
# dcgm-exporter's etc/default-counters.csv, for the fields gpuwatch reads: name -> (type, HELP).
DEFAULT_COUNTERS = {
    "DCGM_FI_DEV_SM_CLOCK": ("gauge", "SM clock frequency (in MHz)."),
    "DCGM_FI_DEV_MEM_CLOCK": ("gauge", "Memory clock frequency (in MHz)."),
    "DCGM_FI_DEV_MEMORY_TEMP": ("gauge", "Memory temperature (in C)."),
    "DCGM_FI_DEV_GPU_TEMP": ("gauge", "GPU temperature (in C)."),
    "DCGM_FI_DEV_POWER_USAGE": ("gauge", "Power draw (in W)."),
    "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION": ("counter", "Total energy consumption since boot (in mJ)."),
    "DCGM_FI_DEV_PCIE_REPLAY_COUNTER": ("counter", "Total number of PCIe retries."),
    "DCGM_FI_DEV_GPU_UTIL": ("gauge", "GPU utilization (in %)."),
    "DCGM_FI_DEV_MEM_COPY_UTIL": ("gauge", "Memory utilization (in %)."),
    "DCGM_FI_DEV_XID_ERRORS": ("gauge", "Value of the last XID error encountered."),
    "DCGM_FI_DEV_FB_FREE": ("gauge", "Framebuffer memory free (in MiB)."),
    "DCGM_FI_DEV_FB_USED": ("gauge", "Framebuffer memory used (in MiB)."),
}
MIB = 1 << 20


def full_reading(**changes) -> GpuReading:
    values = {
        "temperature_c": 61.0,
        "memory_temperature_c": 55.0,
        "power_w": 631.95,
        "energy_j": 123_456.789,
        "utilization_ratio": 0.97,
        "memory_utilization_ratio": 0.11,
        "memory_used_bytes": 19_818 * MIB + 5,
        "memory_free_bytes": 61_261 * MIB,
        "sm_clock_hz": 1.755e9,
        "memory_clock_hz": 2.619e9,
        "pcie_replay_count": 3,
        **changes,
    }
    return GpuReading(taken_at=1_700_000_000.0, monotonic=10.0, **values)


def observation(*gpus: GpuSample) -> Observation:
    shot = Snapshot(
        sequence=1,
        taken_at=1_700_000_000.0,
        monotonic=10.0,
        source="sim:test",
        gpus=gpus,
        health=SampleHealth(attempts=1),
        driver_version="590.48.01",
    )
    return Observation(shot, node(gpu(0)))


def h100(reading: GpuReading | None = None, **extra) -> GpuSample:
    identity = GpuIdentity(
        index=0, uuid=LABELS["UUID"], name=LABELS["modelName"], pci_bus_id=LABELS["pci_bus_id"]
    )
    return GpuSample(identity=identity, reading=reading or full_reading(), **extra)


def exposition(*gpus: GpuSample) -> bytes:
    fresh = CollectorRegistry()
    seen = observation(*gpus)
    fresh.register(DcgmCollector(lambda: seen, "gpu-node-1"))
    return exact_counter_names(generate_latest(fresh))


class TestNamesTypesAndHelp:
    """Every family is named, typed and documented exactly as dcgm-exporter's default counters."""

    def test_families(self):
        text = exposition(h100()).decode()
        types = dict(re.findall(r"^# TYPE (\S+) (\S+)$", text, re.MULTILINE))
        helps = dict(re.findall(r"^# HELP (\S+) (.+)$", text, re.MULTILINE))
        assert {name: (types[name], helps[name]) for name in types} == DEFAULT_COUNTERS

    def test_counters_keep_their_names_without_total(self):
        text = exposition(h100())
        assert b"# TYPE DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION counter\n" in text
        assert b"# TYPE DCGM_FI_DEV_PCIE_REPLAY_COUNTER counter\n" in text
        assert b"_total" not in text


class TestUnitsAndLabels:
    """Values in dcgm-exporter's units (MHz, °C, W, mJ, %, MiB), with its labels."""

    def test_values_in_dcgm_units(self):
        text = exposition(h100())
        labels = tuple(sorted(LABELS.items()))
        got = {
            name: samples(text, name)[labels] for name in DEFAULT_COUNTERS if name != "DCGM_FI_DEV_XID_ERRORS"
        }
        assert got == {
            "DCGM_FI_DEV_SM_CLOCK": 1755.0,
            "DCGM_FI_DEV_MEM_CLOCK": 2619.0,
            "DCGM_FI_DEV_MEMORY_TEMP": 55.0,
            "DCGM_FI_DEV_GPU_TEMP": 61.0,
            "DCGM_FI_DEV_POWER_USAGE": 631.95,
            "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION": 123_456_789.0,
            "DCGM_FI_DEV_PCIE_REPLAY_COUNTER": 3.0,
            "DCGM_FI_DEV_GPU_UTIL": 97.0,
            "DCGM_FI_DEV_MEM_COPY_UTIL": 11.0,
            "DCGM_FI_DEV_FB_FREE": 61_261.0,
            "DCGM_FI_DEV_FB_USED": 19_818.0,
        }

    def test_last_xid_with_its_code_and_message(self):
        none_yet = samples(exposition(h100()), "DCGM_FI_DEV_XID_ERRORS")
        assert none_yet == {tuple(sorted({**LABELS, "err_code": "0", "err_msg": "No Error"}.items())): 0.0}
        fallen = samples(exposition(h100(last_xid=79)), "DCGM_FI_DEV_XID_ERRORS")
        labels = {**LABELS, "err_code": "79", "err_msg": "GPU has fallen off the bus"}
        assert fallen == {tuple(sorted(labels.items())): 79.0}

    def test_unsupported_fields_are_absent(self):
        text = exposition(
            h100(full_reading(memory_temperature_c=None, pcie_replay_count=None, energy_j=None))
        )
        assert b"DCGM_FI_DEV_MEMORY_TEMP" not in text
        assert b"DCGM_FI_DEV_PCIE_REPLAY_COUNTER" not in text
        assert b"DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION" not in text
        assert b"DCGM_FI_DEV_GPU_TEMP{" in text

    def test_a_gpu_not_read_is_absent(self):
        assert exposition(h100(health=GpuHealth.LOST)) == b""

    def test_hostname_as_dcgm_exporter_sets_it(self, monkeypatch):
        monkeypatch.setenv("NODE_NAME", "k8s-node-7")
        assert dcgm_hostname() == "k8s-node-7"
        monkeypatch.delenv("NODE_NAME")
        assert dcgm_hostname()  # the host name


class TestOptIn:
    """The DCGM families appear next to the gpuwatch_* ones only when asked for."""

    def test_only_with_the_switch(self):
        for dcgm, expected in ((None, False), ("gpu-node-1", True)):
            board = Board("sim:test", lambda d, _n: d)
            metrics = MetricsExposition(board, 1.0, dcgm_hostname=dcgm)
            decision = node(gpu(0))
            metrics.prepare(observation(h100()).snapshot, decision)
            board.publish(decision)
            body = metrics.body()
            assert (b"DCGM_FI_DEV_GPU_TEMP{" in body) is expected
            assert b"gpuwatch_gpu_up{" in body
