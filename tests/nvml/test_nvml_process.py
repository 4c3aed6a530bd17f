"""The nvml source in a child process that loads libnvidia-ml.so.1 through LD_LIBRARY_PATH."""

from __future__ import annotations

import subprocess
import sys

import pytest
from fake_nvml.control import (
    FIELD_RECOVERY_ACTION,
    FIELD_SW_POWER_CAP_NS,
    FIELD_SW_THERMAL_SLOWDOWN_NS,
)
from fake_nvml.profiles import A100_SXM4_80GB, H100_SXM

from gpuwatch.sources.model import GpuHealth, ThermalScale
from gpuwatch.sources.nvml.source import LIBRARY_MISSING

NEWER_SYMBOLS = ("nvmlDeviceGetMarginTemperature", "nvmlDeviceGetCurrentClocksEventReasons")


class TestLibraryMissing:
    """Without libnvidia-ml.so.1 the source says so in one sentence, invents no GPU, and recovers."""

    def test_missing_then_installed(self, fake_nvml, start_child, tmp_path):
        fake_nvml.install([H100_SXM, A100_SXM4_80GB])
        library_dir = tmp_path / "driver"
        library_dir.mkdir()
        env = fake_nvml.env("full")
        env["LD_LIBRARY_PATH"] = str(library_dir)  # exists, but holds no NVML yet
        child = start_child(env)
        reading = child.read()
        assert reading.error == LIBRARY_MISSING
        assert reading.gpus == ()
        assert dict(reading.errors) == {"LIBRARY_NOT_FOUND": 1}

        (library_dir / "libnvidia-ml.so.1").symlink_to(fake_nvml.libraries["full"])
        child.advance(0.5)
        reading = child.read()
        assert reading.error == LIBRARY_MISSING  # backoff: the next attempt is 1 s after the first
        assert dict(reading.errors) == {}
        assert fake_nvml.calls(None, "nvmlInitWithFlags") == 0

        child.advance(0.5)
        reading = child.read()
        assert reading.error is None
        assert [gpu.identity.name for gpu in reading.gpus] == [H100_SXM.name, A100_SXM4_80GB.name]
        assert all(gpu.health is GpuHealth.OK for gpu in reading.gpus)
        assert fake_nvml.calls(None, "nvmlInitWithFlags") == 1
        assert "libnvidia-ml.so.1 was not found" in child.stop()


class TestSharedState:
    """A test steers the library a child process loaded, through the shared state file."""

    def test_child_sees_changes_and_calls_are_counted_here(self, fake_nvml, start_child):
        fake_nvml.install([H100_SXM] * 2)
        child = start_child(fake_nvml.env("full"))
        assert child.read().gpus[1].reading.power_w == pytest.approx(100.89)
        fake_nvml.set(1, "power_mw", 412_000)
        fake_nvml.set_gpu_return(0, "GPU_IS_LOST")
        gpus = child.read().gpus
        assert gpus[1].reading.power_w == pytest.approx(412.0)
        assert gpus[0].health is GpuHealth.LOST
        assert fake_nvml.calls(1, "nvmlDeviceGetPowerUsage") == 2


class TestOldDriver:
    """On a driver without the newer calls and fields, every value comes through its fallback."""

    @pytest.fixture
    def old_node(self, fake_nvml, start_child):
        fake_nvml.install([A100_SXM4_80GB, H100_SXM])
        # Older drivers stated Hopper's limits as absolute thresholds too.
        for which, value in [("shutdown", 92), ("slowdown", 90), ("gpu_max", 87), ("memory_max", 95)]:
            fake_nvml.set_threshold(1, which, value)
        for gpu in (0, 1):
            fake_nvml.set(gpu, "clock_event_reasons", 0x4)
            fake_nvml.set(gpu, "violation_thermal_ns", 4_000_000_000)
            fake_nvml.set_field(gpu, FIELD_SW_POWER_CAP_NS, 9_000_000_000)
            fake_nvml.set_field(gpu, FIELD_SW_THERMAL_SLOWDOWN_NS, 1)  # the old driver never answers it
            fake_nvml.set_field(gpu, FIELD_RECOVERY_ACTION, 0)
        child = start_child(fake_nvml.env("old"))
        readings = [child.read() for _ in range(3)]
        return readings, child

    def test_values_come_through_fallbacks(self, fake_nvml, old_node):
        readings, _ = old_node
        reading = readings[-1]
        assert reading.error is None
        assert dict(reading.errors) == {}
        a100, h100 = reading.gpus
        for gpu in (a100, h100):
            assert gpu.health is GpuHealth.OK
            assert gpu.identity.thermal_limits.scale is ThermalScale.ABSOLUTE
            assert gpu.reading.clock_event_reasons == 0x4  # via ThrottleReasons
            assert gpu.reading.slowdown_counters.sw_thermal_slowdown_s == pytest.approx(4.0)  # violation
            assert gpu.reading.slowdown_counters.sw_power_cap_s == pytest.approx(9.0)  # field 74 is old
            assert gpu.reading.slowdown_counters.hw_thermal_slowdown_s is None
            assert gpu.reading.recovery_action is None
        assert (a100.reading.margin_c, a100.reading.slowdown_margin_c) == (60, 64)
        assert (h100.reading.margin_c, h100.reading.slowdown_margin_c, h100.reading.memory_margin_c) == (
            57,
            60,
            59,
        )
        assert fake_nvml.calls(1, "nvmlDeviceGetCurrentClocksThrottleReasons") == 3
        assert fake_nvml.calls(1, "nvmlDeviceGetViolationStatus") == 3

    def test_missing_symbols_are_logged_once_and_not_retried(self, old_node):
        _, child = old_node
        log = child.stop()
        for symbol in NEWER_SYMBOLS:
            assert log.count(f"NVML has no {symbol}") == 1

    def test_old_build_lacks_the_newer_symbols(self, fake_nvml):
        probe = (
            "import ctypes, sys; lib = ctypes.CDLL(sys.argv[1]); "
            "print([hasattr(lib, name) for name in sys.argv[2:]])"
        )
        answers = {}
        for variant in ("full", "old"):
            result = subprocess.run(
                [sys.executable, "-c", probe, str(fake_nvml.libraries[variant]), *NEWER_SYMBOLS],
                capture_output=True,
                text=True,
                check=True,
                timeout=30,
            )
            answers[variant] = result.stdout.strip()
        assert answers == {"full": "[True, True]", "old": "[False, False]"}
