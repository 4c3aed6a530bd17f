"""End-to-end tests of the `gpuwatch` command: status and record, run as a real process."""

from __future__ import annotations

import ctypes.util
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

GPUWATCH = [sys.executable, "-m", "gpuwatch"]
TIMEOUT_S = 60


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*GPUWATCH, *args], capture_output=True, text=True, timeout=TIMEOUT_S, env=env, check=False
    )


def table_rows(stdout: str) -> list[str]:
    """The GPU rows of a status table: lines that start with a GPU index."""
    return [line for line in stdout.splitlines() if line.split(" ", 1)[0].isdigit()]


class TestStatusOnSimulatedGpus:
    """`status --source sim:…` shows every simulated GPU with plausible live values."""

    def test_table_lists_eight_h100s_with_temperatures_margins_and_power(self):
        result = run("status", "--source", "sim:8xH100")
        assert result.returncode == 0, result.stderr
        rows = table_rows(result.stdout)
        assert [row.split()[0] for row in rows] == [str(i) for i in range(8)]
        assert all("H100" in row for row in rows)
        assert all(" / 700 W" in row for row in rows)
        assert "source sim:8xH100" in result.stdout

    def test_json_carries_readings_in_base_units(self):
        result = run("status", "--source", "sim:2xH100,2xA100", "--json")
        assert result.returncode == 0, result.stderr
        snapshot = json.loads(result.stdout)
        assert snapshot["schema_version"] == 1
        names = [gpu["identity"]["name"] for gpu in snapshot["gpus"]]
        assert sum("H100" in name for name in names) == 2
        assert sum("A100" in name for name in names) == 2
        for gpu in snapshot["gpus"]:
            reading = gpu["reading"]
            assert 0 <= reading["utilization_ratio"] <= 1
            assert 10 < reading["temperature_c"] < 100
            assert reading["margin_c"] > 0
            assert reading["power_w"] <= reading["power_limit_w"]
            assert reading["sm_clock_hz"] > 1e8  # Hz, not MHz

    def test_watch_refreshes_the_requested_number_of_times(self):
        result = run("status", "--source", "sim:1xH200", "--watch", "0.1", "--count", "3")
        assert result.returncode == 0, result.stderr
        assert result.stdout.count("CLOCK EVENTS") == 3

    def test_unknown_source_is_refused_with_the_valid_forms(self):
        result = run("status", "--source", "gpus-please")
        assert result.returncode == 2
        assert "gpus-please" in result.stderr
        assert "sim:8xH100" in result.stderr


class TestStatusWithoutNvidiaDriver:
    """On a machine without NVIDIA's library, status says so in one sentence and invents nothing."""

    def test_exits_2_with_one_sentence_pointing_to_the_simulator(self, tmp_path: Path):
        if ctypes.util.find_library("nvidia-ml"):
            pytest.skip("this machine has a real NVML library")
        env = {**os.environ, "LD_LIBRARY_PATH": str(tmp_path)}
        env.pop("FAKE_NVML_STATE", None)
        result = run("status", "--source", "nvml", env=env)
        assert result.returncode == 2
        assert result.stdout == ""
        message = result.stderr.strip().splitlines()
        assert len(message) == 1, result.stderr
        assert "libnvidia-ml.so.1" in message[0]
        assert "--source sim:" in message[0]

    def test_json_output_is_refused_too(self, tmp_path: Path):
        if ctypes.util.find_library("nvidia-ml"):
            pytest.skip("this machine has a real NVML library")
        result = run("status", "--json", env={**os.environ, "LD_LIBRARY_PATH": str(tmp_path)})
        assert result.returncode == 2
        assert result.stdout == ""


class TestRecordAndReplay:
    """`record` writes what `--source replay:FILE` plays back unchanged."""

    def test_recorded_values_replay_identically(self, tmp_path: Path):
        recording = tmp_path / "rec.jsonl"
        made = run(
            "record",
            "--source",
            "sim:2xA100",
            "--interval",
            "0.1",
            "--duration",
            "0.55",
            "--out",
            str(recording),
        )
        assert made.returncode == 0, made.stderr
        lines = recording.read_text().splitlines()
        assert len(lines) >= 4  # a header and at least three snapshots
        first = json.loads(lines[1])
        assert "recorded" in made.stdout
        assert "2 GPUs" in made.stdout

        replayed = run("status", "--source", f"replay:{recording}", "--json")
        assert replayed.returncode == 0, replayed.stderr
        played = json.loads(replayed.stdout)
        for recorded_gpu, played_gpu in zip(first["gpus"], played["gpus"], strict=True):
            assert played_gpu["identity"] == recorded_gpu["identity"]
            for key in ("temperature_c", "margin_c", "power_w", "sm_clock_hz", "clock_event_reasons"):
                assert played_gpu["reading"][key] == recorded_gpu["reading"][key]

    def test_unwritable_output_is_a_clear_error(self, tmp_path: Path):
        target = tmp_path / "missing-dir" / "rec.jsonl"
        result = run("record", "--source", "sim:1xH100", "--duration", "0.2", "--out", str(target))
        assert result.returncode == 2
        assert str(target) in result.stderr


class TestEntryPoints:
    """The console script and `python -m gpuwatch` are the same program."""

    def test_console_script_reports_the_version(self):
        script = Path(sys.executable).parent / "gpuwatch"
        result = subprocess.run(
            [script, "--version"], capture_output=True, text=True, timeout=TIMEOUT_S, check=False
        )
        assert result.returncode == 0
        assert result.stdout.startswith("gpuwatch, version ")


class TestStatusOnFakeNvml:
    """`status --source nvml` loads libnvidia-ml.so.1 through LD_LIBRARY_PATH and shows what it reads.

    The source is named: without it `status` would ask a daemon first (tests/exposure/test_serve_status.py).
    """

    @pytest.fixture
    def mixed_node(self, fake_nvml):
        from fake_nvml.profiles import A100_SXM4_80GB, H100_SXM  # noqa: PLC0415 - test-only package

        fake_nvml.install([H100_SXM] * 6 + [A100_SXM4_80GB] * 2)
        return fake_nvml

    def test_table_shows_every_gpu_with_margins_on_both_scales(self, mixed_node):
        mixed_node.set(7, "temperature_c", 80)
        result = run("status", "--source", "nvml", env=mixed_node.env("full"))
        assert result.returncode == 0, result.stderr
        rows = [re.split(r"\s{2,}", row) for row in table_rows(result.stdout)]
        assert len(rows) == 8
        # H100: the driver's T.Limit margin (57 C in the capture); A100: max operating 85 - 80 C.
        assert rows[0][1:5] == ["NVIDIA H100 80GB HBM3", "30C", "36C", "57C"]
        assert rows[7][1:5] == ["NVIDIA A100-SXM4-80GB", "80C", "43C", "5C"]

    def test_lost_gpu_and_xids_are_reported_while_others_read(self, mixed_node):
        mixed_node.set_gpu_return(2, "GPU_IS_LOST")
        mixed_node.inject_xid(5, 79, count=2)
        result = run("status", "--source", "nvml", "--json", env=mixed_node.env("full"))
        assert result.returncode == 0, result.stderr
        gpus = json.loads(result.stdout)["gpus"]
        assert gpus[2]["health"] == "lost"
        assert gpus[2]["reading"] is None
        assert "GPU_IS_LOST" in gpus[2]["error"]
        assert all(gpu["reading"] is not None for i, gpu in enumerate(gpus) if i != 2)

    def test_a_hung_call_makes_status_report_and_exit_instead_of_hanging(self, mixed_node):
        mixed_node.block(3, "nvmlDeviceGetPowerUsage")
        started = time.monotonic()
        result = run("status", "--source", "nvml", "--timeout", "0.5", env=mixed_node.env("full"))
        assert time.monotonic() - started < TIMEOUT_S / 2
        assert mixed_node.calls(3, "nvmlDeviceGetPowerUsage") >= 1
        assert result.returncode == 2
        assert result.stderr.strip() == "gpuwatch: the nvml source did not answer within 0.5 s"
