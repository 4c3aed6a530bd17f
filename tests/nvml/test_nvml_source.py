"""NvmlSource through the real pynvml against the fake libnvidia-ml.so.1, in this process."""

from __future__ import annotations

import threading

import pytest
from fake_nvml.control import FIELD_RECOVERY_ACTION, fake_uuid
from fake_nvml.profiles import A100_SXM4_80GB, H100_SXM, H200
from nvml_helpers import wait_until

from gpuwatch.sources.clock import ManualClock
from gpuwatch.sources.model import GpuHealth, RecoveryAction, ThermalScale
from gpuwatch.sources.nvml.binding import function
from gpuwatch.sources.nvml.source import LIBRARY_MISSING, Backoff, source_sentence

MIXED_NODE = [H100_SXM, H100_SXM, H100_SXM, A100_SXM4_80GB, A100_SXM4_80GB, H200, H200, H100_SXM]


class TestMixedNode:
    """Eight GPUs of three SKUs are each read with their own identity, scale and margins."""

    def test_every_gpu_is_read_with_its_own_identity(self, fake_nvml, make_source):
        fake_nvml.install(MIXED_NODE)
        reading = make_source().read()
        assert reading.error is None
        assert reading.driver_version == H100_SXM.driver_version
        assert [gpu.identity.index for gpu in reading.gpus] == list(range(8))
        assert [gpu.identity.name for gpu in reading.gpus] == [profile.name for profile in MIXED_NODE]
        assert [gpu.identity.uuid for gpu in reading.gpus] == [
            fake_uuid(index, profile) for index, profile in enumerate(MIXED_NODE)
        ]
        assert all(gpu.health is GpuHealth.OK and gpu.reading is not None for gpu in reading.gpus)
        assert dict(reading.errors) == {}
        assert dict(reading.dropped) == {}

    def test_tlimit_and_absolute_gpus_side_by_side(self, fake_nvml, make_source):
        fake_nvml.install(MIXED_NODE)
        gpus = make_source().read().gpus
        scales = [gpu.identity.thermal_limits.scale for gpu in gpus]
        assert scales == [ThermalScale.TLIMIT] * 3 + [ThermalScale.ABSOLUTE] * 2 + [ThermalScale.TLIMIT] * 3
        h100, a100, h200 = gpus[0].reading, gpus[3].reading, gpus[5].reading
        # H100: T.Limit 57 with offsets slowdown -2, shutdown -8 (H100SXMx8 capture).
        assert (h100.margin_c, h100.slowdown_margin_c, h100.shutdown_margin_c) == (57, 59, 65)
        # A100 at 25 °C against 85 / 89 / 92 °C, memory 43 °C against 95 °C (A100SXMx4 capture).
        assert (a100.margin_c, a100.slowdown_margin_c, a100.shutdown_margin_c) == (60, 64, 67)
        assert a100.memory_margin_c == 52
        assert h200.margin_c == 59

    def test_a_change_on_one_gpu_shows_on_that_gpu_only(self, fake_nvml, make_source):
        fake_nvml.install(MIXED_NODE)
        source = make_source()
        source.read()
        fake_nvml.set(4, "temperature_c", 83)
        fake_nvml.set(6, "margin_c", 3)
        gpus = source.read().gpus
        assert gpus[4].reading.margin_c == 2  # 85 - 83
        assert gpus[3].reading.margin_c == 60
        assert gpus[6].reading.slowdown_margin_c == 5
        assert gpus[5].reading.slowdown_margin_c == 61


class TestGpuLost:
    """A GPU that falls off the bus is LOST with a sentence; the others keep reading."""

    def test_lost_gpu_mid_run(self, fake_nvml, make_source):
        fake_nvml.install([H100_SXM] * 4)
        source = make_source()
        assert source.read().gpus[2].health is GpuHealth.OK
        fake_nvml.set_gpu_return(2, "GPU_IS_LOST")
        reading = source.read()
        lost = reading.gpus[2]
        assert lost.health is GpuHealth.LOST
        assert lost.reading is None
        assert "GPU_IS_LOST" in lost.error
        assert lost.identity.uuid in lost.error
        assert lost.identity.uuid == fake_uuid(2, H100_SXM)  # identity is kept
        others = [gpu for gpu in reading.gpus if gpu.identity.index != 2]
        assert all(gpu.health is GpuHealth.OK and gpu.reading.power_w == 100.89 for gpu in others)
        assert dict(reading.errors) == {"GPU_IS_LOST": 1}
        assert reading.error is None

    def test_gpu_lost_before_init_is_listed_lost(self, fake_nvml, make_source):
        fake_nvml.install([H100_SXM] * 3)
        fake_nvml.set_gpu_return(1, "GPU_IS_LOST")
        reading = make_source().read()
        assert [gpu.health for gpu in reading.gpus] == [GpuHealth.OK, GpuHealth.LOST, GpuHealth.OK]
        assert reading.gpus[1].reading is None
        assert reading.gpus[1].identity.index == 1


class TestResetRequired:
    """RESET_REQUIRED, or a recovery action other than none, marks that GPU RESET_REQUIRED."""

    def test_reset_required_error(self, fake_nvml, make_source):
        fake_nvml.install([H100_SXM] * 3)
        source = make_source()
        source.read()
        fake_nvml.set_gpu_return(1, "RESET_REQUIRED")
        reading = source.read()
        assert [gpu.health for gpu in reading.gpus] == [GpuHealth.OK, GpuHealth.RESET_REQUIRED, GpuHealth.OK]
        assert reading.gpus[1].reading is None
        assert "RESET_REQUIRED" in reading.gpus[1].error
        assert reading.errors["RESET_REQUIRED"] == 1

    def test_recovery_action_keeps_the_reading(self, fake_nvml, make_source):
        fake_nvml.install([H100_SXM] * 3)
        source = make_source()
        fake_nvml.set_field(2, FIELD_RECOVERY_ACTION, RecoveryAction.DRAIN_AND_RESET)
        gpus = source.read().gpus
        assert gpus[2].health is GpuHealth.RESET_REQUIRED
        assert gpus[2].reading.recovery_action is RecoveryAction.DRAIN_AND_RESET
        assert "drain_and_reset" in gpus[2].error
        assert gpus[0].health is GpuHealth.OK
        assert gpus[0].reading.recovery_action is RecoveryAction.NONE
        fake_nvml.set_field(2, FIELD_RECOVERY_ACTION, RecoveryAction.NONE)
        assert source.read().gpus[2].health is GpuHealth.OK


class TestDriverFailure:
    """With NVML failing, read() returns at once with a sentence, invents nothing, and retries on backoff."""

    def test_init_failure_reports_no_gpus_and_backs_off(self, fake_nvml, make_source, clock):
        fake_nvml.install([H100_SXM] * 2)
        fake_nvml.set_init_return("DRIVER_NOT_LOADED")
        source = make_source(backoff_initial_s=1.0, backoff_max_s=60.0)
        reading = source.read()
        assert reading.gpus == ()
        assert reading.error == source_sentence("DRIVER_NOT_LOADED")
        assert dict(reading.errors) == {"DRIVER_NOT_LOADED": 1}
        assert fake_nvml.calls(None, "nvmlInitWithFlags") == 1
        clock.advance(0.9)
        assert source.read().error is not None
        assert fake_nvml.calls(None, "nvmlInitWithFlags") == 1  # not yet due
        fake_nvml.set_init_return("SUCCESS")
        clock.advance(0.1)
        reading = source.read()
        assert reading.error is None
        assert len(reading.gpus) == 2
        assert fake_nvml.calls(None, "nvmlInitWithFlags") == 2

    def test_every_call_failing_then_recovering(self, fake_nvml, make_source, clock):
        fake_nvml.install([H100_SXM, A100_SXM4_80GB])
        source = make_source(backoff_initial_s=1.0, backoff_max_s=60.0)
        known = [gpu.identity for gpu in source.read().gpus]
        fake_nvml.set_global_return("DRIVER_NOT_LOADED")
        reading = source.read()
        assert reading.error == source_sentence("DRIVER_NOT_LOADED")
        assert [gpu.identity for gpu in reading.gpus] == known
        assert all(gpu.health is GpuHealth.UNAVAILABLE and gpu.reading is None for gpu in reading.gpus)
        inits = fake_nvml.calls(None, "nvmlInitWithFlags")
        # Attempts at +1 s, then +2 s, then +4 s after each failure.
        for step, attempted in [(0.5, False), (0.5, True), (1.5, False), (0.5, True), (3.9, False)]:
            clock.advance(step)
            assert source.read().error is not None
            inits += attempted
            assert fake_nvml.calls(None, "nvmlInitWithFlags") == inits
        fake_nvml.set_global_return("SUCCESS")
        clock.advance(0.1)
        reading = source.read()
        assert reading.error is None
        assert all(gpu.health is GpuHealth.OK for gpu in reading.gpus)
        assert fake_nvml.calls(None, "nvmlInitWithFlags") == inits + 1

    def test_unknown_errors_on_every_gpu_reinitialise(self, fake_nvml, make_source, clock):
        fake_nvml.install([H100_SXM] * 2)
        source = make_source()
        source.read()
        fake_nvml.set_global_return("UNKNOWN")
        reading = source.read()
        assert "Every NVML call failed" in reading.error
        assert "UNKNOWN" in reading.error
        assert reading.errors["UNKNOWN"] >= 2
        assert fake_nvml.calls(None, "nvmlShutdown") >= 1  # the broken session was released
        fake_nvml.set_global_return("SUCCESS")
        clock.advance(1.0)
        assert source.read().error is None

    def test_library_missing_sentence_names_the_cause_and_the_demo(self):
        assert "libnvidia-ml.so.1" in LIBRARY_MISSING
        assert "--source sim:8xH100" in LIBRARY_MISSING
        assert source_sentence("LIBRARY_NOT_FOUND") == LIBRARY_MISSING


class TestBackoff:
    """Re-initialisation waits double after each failure up to the cap, and reset on success."""

    def test_delays_double_up_to_the_cap(self):
        clock = ManualClock()
        backoff = Backoff(clock, initial_s=1.0, max_s=5.0)
        assert backoff.due()
        assert [backoff.failed() for _ in range(5)] == [1.0, 2.0, 4.0, 5.0, 5.0]
        assert not backoff.due()
        clock.advance(4.9)
        assert not backoff.due()
        clock.advance(0.1)
        assert backoff.due()
        backoff.succeeded()
        assert backoff.failed() == 1.0


class TestSourceLifecycle:
    """The source is named nvml, closes idempotently, and says so when read after close."""

    def test_spec_and_close(self, fake_nvml, make_source):
        fake_nvml.install([H100_SXM])
        source = make_source()
        assert source.spec == "nvml"
        assert len(source.read().gpus) == 1
        shutdowns = fake_nvml.calls(None, "nvmlShutdown")
        source.close()
        source.close()
        assert fake_nvml.calls(None, "nvmlShutdown") == shutdowns + 1
        after = source.read()
        assert after.gpus == ()
        assert "closed" in after.error

    def test_no_gpus(self, fake_nvml, make_source):
        fake_nvml.install([])
        reading = make_source().read()
        assert reading.gpus == ()
        assert "no GPUs" in reading.error


class TestBlockedCall:
    """A hung NVML call blocks only the thread that made it; the rest of NVML stays usable."""

    @pytest.fixture
    def blocked_read(self, fake_nvml, make_source):
        fake_nvml.install([H100_SXM] * 4)
        source = make_source()
        source.read()
        fake_nvml.block(3, "nvmlDeviceGetPowerUsage")
        results = []
        reader = threading.Thread(target=lambda: results.append(source.read()), daemon=True)
        reader.start()
        wait_until(lambda: fake_nvml.calls(3, "nvmlDeviceGetPowerUsage") >= 2, what="the blocked call")
        return source, reader, results

    def test_read_completes_once_released(self, fake_nvml, blocked_read):
        _, reader, results = blocked_read
        reader.join(timeout=0.2)
        assert reader.is_alive()
        # Another thread can still talk to NVML while the reader is stuck.
        handle = function("nvmlDeviceGetHandleByIndex")(0)
        assert function("nvmlDeviceGetTemperature")(handle, 0) == H100_SXM.temperature_c
        fake_nvml.release(3, "nvmlDeviceGetPowerUsage")
        reader.join(timeout=5.0)
        assert not reader.is_alive()
        assert [gpu.reading.power_w for gpu in results[0].gpus] == [100.89] * 4

    def test_close_returns_while_a_read_is_stuck(self, fake_nvml, blocked_read):
        source, reader, _ = blocked_read
        shutdowns = fake_nvml.calls(None, "nvmlShutdown")
        closer = threading.Thread(target=source.close, daemon=True)
        closer.start()
        closer.join(timeout=2.0)
        assert not closer.is_alive()
        assert fake_nvml.calls(None, "nvmlShutdown") == shutdowns  # not under the stuck call
        fake_nvml.release(3, "nvmlDeviceGetPowerUsage")
        reader.join(timeout=5.0)
        assert not reader.is_alive()
        assert fake_nvml.calls(None, "nvmlShutdown") == shutdowns + 1  # released by the read
