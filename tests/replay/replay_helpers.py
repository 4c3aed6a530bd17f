"""Helpers shared by the replay tests: real capture extraction, files and snapshots to replay."""

from __future__ import annotations

from pathlib import Path

from gpuwatch.sources.model import GpuIdentity, GpuReading, GpuSample, SampleHealth, Snapshot

# The suite's data folder (the `data_dir` fixture, for module-scoped fixtures that cannot use it).
DATA_DIR = Path(__file__).resolve().parents[1] / "data"
CAPTURE = "nvidia-smi-q/H100-80GB-HBM3_driver590_idle-and-load_capture.txt"
H100_TRACE = "traces/8xh100_training_100ms_power-util-mem.csv"
A100_TRACE = "traces/a100_serving_250ms_excerpt.csv"


def query_gpu_csv(capture: str, phase: str) -> list[str]:
    """Header and data line of the capture's `--query-gpu` CSV for `phase` ("idle" or "load").

    The section is a marker block: "# <phase> :: query-gpu", "# $ nvidia-smi --query-gpu=...",
    a line of #, then the CSV.
    """
    lines = capture.splitlines(keepends=True)
    start = next(i for i, line in enumerate(lines) if line.startswith(f"# {phase} :: query-gpu"))
    if not lines[start + 1].startswith("# $ nvidia-smi --query-gpu="):
        msg = f"the {phase} query-gpu section does not start with the nvidia-smi command"
        raise AssertionError(msg)
    body = next(i for i in range(start + 1, len(lines)) if not lines[i].startswith("#"))
    return lines[body : body + 2]


def csv_cells(line: str) -> list[str]:
    """The cells of one nvidia-smi CSV line, split the plain way (no quoting in these files)."""
    return [cell.strip() for cell in line.split(",")]


def write(path: Path, text: str) -> Path:
    """Write `text` exactly (no newline translation) and return the path."""
    path.write_bytes(text.encode())
    return path


def snapshot(sequence: int, monotonic: float, power_w: float, *, gpus: int = 2) -> Snapshot:
    """A snapshot of `gpus` GPUs taken at `monotonic`, GPU n drawing `power_w + n` W."""
    samples = tuple(
        GpuSample(
            identity=GpuIdentity(index=n, uuid=f"GPU-test-{n}", name="NVIDIA H100 80GB HBM3"),
            reading=GpuReading(
                taken_at=1_700_000_000.0 + monotonic,
                monotonic=monotonic,
                temperature_c=40.0 + n + sequence,
                margin_c=45.0 - n - sequence,
                power_w=power_w + n,
                power_limit_w=700.0,
                clock_event_reasons=0x4,
            ),
        )
        for n in range(gpus)
    )
    return Snapshot(
        sequence=sequence,
        taken_at=1_700_000_000.0 + monotonic,
        monotonic=monotonic,
        source="sim:2xH100",
        gpus=samples,
        health=SampleHealth(attempts=sequence, last_success=1_700_000_000.0 + monotonic),
        driver_version="590.48.01",
    )
