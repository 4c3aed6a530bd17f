"""Hand-built snapshots and a fresh registry around the gpuwatch_* collector, for the collector tests."""

from __future__ import annotations

from prometheus_client import CollectorRegistry
from serve_helpers import gpu, node

from gpuwatch.exposure.metrics.collector import GpuwatchCollector, Observation
from gpuwatch.sources.model import GpuIdentity, GpuReading, GpuSample, SampleHealth, Snapshot

UUID = "GPU-test-0000"
LABELS = {"gpu": "0", "uuid": UUID}


def reading(**values) -> GpuReading:
    return GpuReading(taken_at=1_700_000_100.0, monotonic=100.0, **values)


def sample(index: int = 0, gpu_reading: GpuReading | None = None, **extra) -> GpuSample:
    identity = GpuIdentity(
        index=index,
        uuid=f"GPU-test-{index:04d}",
        name="NVIDIA H100 80GB HBM3",
        pci_bus_id=f"00000000:1{index}:00.0",
        memory_total_bytes=85_520_809_984,
        sm_clock_max_hz=1.98e9,
    )
    return GpuSample(
        identity=identity, reading=gpu_reading if gpu_reading is not None else reading(), **extra
    )


def snapshot(*gpus: GpuSample, health: SampleHealth | None = None) -> Snapshot:
    return Snapshot(
        sequence=5,
        taken_at=1_700_000_100.0,
        monotonic=100.0,
        source="sim:test",
        gpus=gpus,
        health=health or SampleHealth(attempts=5, last_success=1_700_000_100.0, duration_s=0.002),
        driver_version="590.48.01",
    )


def registry(observation: Observation, interval_s: float | None = 1.0) -> CollectorRegistry:
    fresh = CollectorRegistry()
    fresh.register(GpuwatchCollector(lambda: observation, interval_s, version="test"))
    return fresh


def collected(shot: Snapshot | None, decision=None) -> CollectorRegistry:
    return registry(Observation(shot, decision or node(gpu(0), gpu(1))))
