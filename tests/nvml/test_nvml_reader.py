"""GpuReader: unit conversion, margins, fallbacks, unsupported values and implausible ones."""

from __future__ import annotations

import pytest
from fake_nvml.control import (
    FIELD_ECC_CORRECTED_VOLATILE,
    FIELD_ECC_UNCORRECTED_VOLATILE,
    FIELD_HW_POWER_BRAKE_NS,
    FIELD_HW_THERMAL_SLOWDOWN_NS,
    FIELD_MEMORY_TEMP,
    FIELD_PCIE_REPLAY_COUNTER,
    FIELD_RECOVERY_ACTION,
    FIELD_SW_POWER_CAP_NS,
    FIELD_SW_THERMAL_SLOWDOWN_NS,
    FIELD_SYNC_BOOST_NS,
)
from fake_nvml.profiles import A100_SXM4_80GB, H100_SXM
from hypothesis import given, settings
from hypothesis import strategies as st

from gpuwatch.sources.model import ClockEventReason, GpuHealth, RecoveryAction, ThermalLimits, ThermalScale
from gpuwatch.sources.nvml.reader import margins

UINT32_MAX = 4_294_967_295


class TestUnitConversion:
    """Every NVML unit is converted once into gpuwatch's base units (W, J, Hz, ratio, bytes, s)."""

    def test_every_value_in_base_units(self, fake_nvml, make_source):
        fake_nvml.install([H100_SXM])
        values = {
            "power_mw": 612_345,
            "enforced_limit_mw": 650_000,
            "energy_mj": 987_654_321,
            "utilization_gpu_pct": 37,
            "utilization_memory_pct": 58,
            "memory_used_bytes": 41_000_000_000,
            "memory_free_bytes": 40_520_809_984,
            "sm_clock_mhz": 1755,
            "memory_clock_mhz": 2619,
            "clock_event_reasons": 0x24,
            "pstate": 2,
            "temperature_c": 66,
        }
        for key, value in values.items():
            fake_nvml.set(0, key, value)
        counters_ns = {
            FIELD_SW_POWER_CAP_NS: 1_500_000_000,
            FIELD_SYNC_BOOST_NS: 250_000_000,
            FIELD_SW_THERMAL_SLOWDOWN_NS: 3_000_000_000,
            FIELD_HW_THERMAL_SLOWDOWN_NS: 40_000_000,
            FIELD_HW_POWER_BRAKE_NS: 5,
        }
        for field_id, value in {
            **counters_ns,
            FIELD_MEMORY_TEMP: 71,
            FIELD_PCIE_REPLAY_COUNTER: 12,
            FIELD_ECC_CORRECTED_VOLATILE: 3,
            FIELD_ECC_UNCORRECTED_VOLATILE: 1,
        }.items():
            fake_nvml.set_field(0, field_id, value)
        reading = make_source().read().gpus[0].reading
        assert reading.power_w == pytest.approx(612.345)
        assert reading.power_limit_w == pytest.approx(650.0)
        assert reading.energy_j == pytest.approx(987_654.321)
        assert reading.utilization_ratio == pytest.approx(0.37)
        assert reading.memory_utilization_ratio == pytest.approx(0.58)
        assert reading.memory_used_bytes == 41_000_000_000
        assert reading.memory_free_bytes == 40_520_809_984
        assert reading.sm_clock_hz == pytest.approx(1.755e9)
        assert reading.memory_clock_hz == pytest.approx(2.619e9)
        assert (
            reading.clock_event_reasons
            == ClockEventReason.SW_POWER_CAP | ClockEventReason.SW_THERMAL_SLOWDOWN
        )
        assert reading.pstate == 2
        assert reading.temperature_c == 66.0
        assert reading.memory_temperature_c == 71.0
        assert reading.pcie_replay_count == 12
        assert (reading.ecc_corrected_volatile, reading.ecc_uncorrected_volatile) == (3, 1)
        counters = reading.slowdown_counters
        assert counters.sw_power_cap_s == pytest.approx(1.5)
        assert counters.sync_boost_s == pytest.approx(0.25)
        assert counters.sw_thermal_slowdown_s == pytest.approx(3.0)
        assert counters.hw_thermal_slowdown_s == pytest.approx(0.04)
        assert counters.hw_power_brake_slowdown_s == pytest.approx(5e-9)

    def test_identity_limits_in_base_units(self, fake_nvml, make_source):
        fake_nvml.install([A100_SXM4_80GB])
        identity = make_source().read().gpus[0].identity
        assert identity.power_default_limit_w == pytest.approx(500.0)
        assert (identity.power_min_limit_w, identity.power_max_limit_w) == pytest.approx((100.0, 500.0))
        assert identity.sm_clock_max_hz == pytest.approx(1.41e9)
        assert identity.memory_clock_max_hz == pytest.approx(1.593e9)
        assert identity.memory_total_bytes == 81_920 * 1024 * 1024

    def test_conversions_hold_for_any_plausible_value(self, fake_nvml, make_source):
        fake_nvml.install([H100_SXM])
        source = make_source()

        @settings(max_examples=60, deadline=None)
        @given(
            power_mw=st.integers(0, 1_200_000),
            energy_mj=st.integers(0, 2**50),
            utilization_pct=st.integers(0, 100),
            clock_mhz=st.integers(0, 3_000),
        )
        def check(power_mw, energy_mj, utilization_pct, clock_mhz):
            for key, value in [
                ("power_mw", power_mw),
                ("energy_mj", energy_mj),
                ("utilization_gpu_pct", utilization_pct),
                ("sm_clock_mhz", clock_mhz),
            ]:
                fake_nvml.set(0, key, value)
            reading = source.read().gpus[0].reading
            assert reading.power_w == pytest.approx(power_mw / 1000)
            assert reading.energy_j == pytest.approx(energy_mj / 1000)
            assert reading.utilization_ratio == pytest.approx(utilization_pct / 100)
            assert reading.sm_clock_hz == pytest.approx(clock_mhz * 1e6)

        check()


class TestMargins:
    """Margins are °C below each limit, from T.Limit offsets or from absolute thresholds."""

    TLIMIT = ThermalLimits(ThermalScale.TLIMIT, shutdown_c=-8, slowdown_c=-2, max_operating_c=0)
    ABSOLUTE = ThermalLimits(ThermalScale.ABSOLUTE, shutdown_c=92, slowdown_c=89, max_operating_c=85)

    def test_tlimit_offsets(self):
        assert margins(self.TLIMIT, temperature_c=30, tlimit_c=57) == (57, 59, 65)
        assert margins(self.TLIMIT, temperature_c=90, tlimit_c=-3) == (-3, -1, 5)

    def test_tlimit_without_a_reading_gives_nothing(self):
        assert margins(self.TLIMIT, temperature_c=30, tlimit_c=None) == (None, None, None)

    def test_absolute_thresholds(self):
        assert margins(self.ABSOLUTE, temperature_c=25, tlimit_c=None) == (60, 64, 67)
        assert margins(self.ABSOLUTE, temperature_c=None, tlimit_c=None) == (None, None, None)

    def test_driver_margin_wins_over_absolute_arithmetic(self):
        assert margins(self.ABSOLUTE, temperature_c=25, tlimit_c=58)[0] == 58

    def test_no_limits(self):
        assert margins(None, temperature_c=40, tlimit_c=None) == (None, None, None)
        assert margins(None, temperature_c=40, tlimit_c=12) == (12, None, None)

    def test_memory_margin_needs_an_absolute_memory_limit(self, fake_nvml, make_source):
        fake_nvml.install([H100_SXM, H100_SXM, A100_SXM4_80GB])
        fake_nvml.set_threshold(1, "memory_max", 95)  # an H100 whose driver also states it absolutely
        gpus = make_source().read().gpus
        assert gpus[0].reading.memory_margin_c is None  # T.Limit offset vs absolute temperature: no
        assert gpus[1].reading.memory_margin_c == 95 - 36
        assert gpus[2].reading.memory_margin_c == 95 - 43


class TestNotSupported:
    """NOT_SUPPORTED makes that value None on that GPU only, is never asked again, and is no error."""

    def test_unsupported_call_is_disabled_for_one_gpu(self, fake_nvml, make_source):
        fake_nvml.install([H100_SXM] * 3)
        fake_nvml.set_return(1, "nvmlDeviceGetPowerUsage", "NOT_SUPPORTED")
        source = make_source()
        readings = [source.read() for _ in range(3)]
        assert all(dict(reading.errors) == {} for reading in readings)
        assert [gpu.reading.power_w for gpu in readings[-1].gpus] == [100.89, None, 100.89]
        assert fake_nvml.calls(1, "nvmlDeviceGetPowerUsage") == 1
        assert fake_nvml.calls(0, "nvmlDeviceGetPowerUsage") == 3
        assert fake_nvml.calls(2, "nvmlDeviceGetPowerUsage") == 3
        readers = [gpu.reader for gpu in source._session.gpus]
        assert [("nvmlDeviceGetPowerUsage" in reader.disabled) for reader in readers] == [False, True, False]

    def test_unsupported_field_is_dropped_from_the_batch(self, fake_nvml, make_source):
        fake_nvml.install([H100_SXM] * 2)
        fake_nvml.set_field_return(0, FIELD_MEMORY_TEMP, "NOT_SUPPORTED")
        source = make_source()
        source.read()
        batches = fake_nvml.calls(0, "nvmlDeviceGetFieldValues")
        for _ in range(2):
            gpus = source.read().gpus
        assert gpus[0].reading.memory_temperature_c is None
        assert gpus[1].reading.memory_temperature_c == 36
        assert fake_nvml.field_requests(0, FIELD_MEMORY_TEMP) == 1
        assert fake_nvml.field_requests(1, FIELD_MEMORY_TEMP) == 3
        assert fake_nvml.calls(0, "nvmlDeviceGetFieldValues") == batches + 2  # one batch per sample

    def test_one_field_failing_is_counted_and_asked_again(self, fake_nvml, make_source):
        fake_nvml.install([H100_SXM])
        fake_nvml.set_field_return(0, FIELD_PCIE_REPLAY_COUNTER, "UNKNOWN")
        source = make_source()
        reading = source.read()
        assert reading.gpus[0].reading.pcie_replay_count is None
        assert reading.gpus[0].reading.memory_temperature_c == 36
        assert dict(reading.errors) == {"UNKNOWN": 1}
        source.read()
        assert fake_nvml.field_requests(0, FIELD_PCIE_REPLAY_COUNTER) == 2

    def test_a_gpu_that_supports_nothing_is_ok_with_no_values(self, fake_nvml, make_source):
        fake_nvml.install([H100_SXM])
        for name in [
            "nvmlDeviceGetTemperature",
            "nvmlDeviceGetMarginTemperature",
            "nvmlDeviceGetPowerUsage",
            "nvmlDeviceGetEnforcedPowerLimit",
            "nvmlDeviceGetTotalEnergyConsumption",
            "nvmlDeviceGetUtilizationRates",
            "nvmlDeviceGetMemoryInfo",
            "nvmlDeviceGetClockInfo",
            "nvmlDeviceGetCurrentClocksEventReasons",
            "nvmlDeviceGetCurrentClocksThrottleReasons",
            "nvmlDeviceGetPerformanceState",
            "nvmlDeviceGetFieldValues",
            "nvmlDeviceGetViolationStatus",
        ]:
            fake_nvml.set_return(0, name, "NOT_SUPPORTED")
        reading = make_source().read()
        gpu = reading.gpus[0]
        assert gpu.health is GpuHealth.OK
        assert dict(reading.errors) == {}
        assert gpu.reading.temperature_c is None
        assert gpu.reading.power_w is None
        assert gpu.reading.clock_event_reasons is None
        assert gpu.reading.slowdown_counters.sw_thermal_slowdown_s is None


class TestFallbacks:
    """Newer calls fall back to older ones: event reasons to throttle reasons, fields to violations."""

    def test_clock_event_reasons_fall_back_to_throttle_reasons(self, fake_nvml, make_source):
        fake_nvml.install([H100_SXM])
        fake_nvml.set_return(0, "nvmlDeviceGetCurrentClocksEventReasons", "NOT_SUPPORTED")
        fake_nvml.set(0, "clock_event_reasons", 0x40)
        source = make_source()
        for _ in range(3):
            reading = source.read().gpus[0].reading
        assert reading.clock_event_reasons == ClockEventReason.HW_THERMAL_SLOWDOWN
        assert fake_nvml.calls(0, "nvmlDeviceGetCurrentClocksEventReasons") == 1
        assert fake_nvml.calls(0, "nvmlDeviceGetCurrentClocksThrottleReasons") == 3

    def test_counter_fields_fall_back_to_violation_status(self, fake_nvml, make_source):
        fake_nvml.install([H100_SXM])
        fake_nvml.set_field_return(0, FIELD_SW_THERMAL_SLOWDOWN_NS, "NOT_SUPPORTED")
        fake_nvml.set_field_return(0, FIELD_SW_POWER_CAP_NS, "INVALID_ARGUMENT")
        fake_nvml.set_field_return(0, FIELD_HW_THERMAL_SLOWDOWN_NS, "NOT_SUPPORTED")
        fake_nvml.set(0, "violation_thermal_ns", 7_000_000_000)
        fake_nvml.set(0, "violation_power_ns", 2_500_000_000)
        counters = make_source().read().gpus[0].reading.slowdown_counters
        assert counters.sw_thermal_slowdown_s == pytest.approx(7.0)
        assert counters.sw_power_cap_s == pytest.approx(2.5)
        assert counters.hw_thermal_slowdown_s is None  # no older call carries it

    def test_violation_status_is_not_called_while_the_field_works(self, fake_nvml, make_source):
        fake_nvml.install([H100_SXM])
        make_source().read()
        assert fake_nvml.calls(0, "nvmlDeviceGetViolationStatus") == 0


class TestImplausibleValues:
    """Values no GPU can report are dropped, counted by field, and the rest of the reading kept."""

    def test_sentinel_temperature_and_overfull_utilization(self, fake_nvml, make_source):
        fake_nvml.install([H100_SXM, H100_SXM, A100_SXM4_80GB])
        fake_nvml.set(0, "temperature_c", UINT32_MAX)
        fake_nvml.set(1, "utilization_gpu_pct", 150)
        reading = make_source().read()
        gpu0, gpu1 = reading.gpus[0].reading, reading.gpus[1].reading
        assert gpu0.temperature_c is None
        assert gpu0.margin_c == 57  # T.Limit margin does not depend on the bad sensor
        assert gpu1.utilization_ratio is None
        assert gpu1.memory_utilization_ratio == 0.0
        assert dict(reading.dropped) == {"temperature_c": 1, "utilization_ratio": 1}
        assert all(gpu.health is GpuHealth.OK for gpu in reading.gpus)

    def test_margins_derived_from_a_sentinel_are_dropped_too(self, fake_nvml, make_source):
        fake_nvml.install([A100_SXM4_80GB])
        fake_nvml.set(0, "temperature_c", UINT32_MAX)
        reading = make_source().read()
        gpu = reading.gpus[0].reading
        assert (gpu.temperature_c, gpu.margin_c, gpu.slowdown_margin_c, gpu.shutdown_margin_c) == (None,) * 4
        assert reading.dropped["temperature_c"] == 1
        assert reading.dropped["margin_c"] == 1
        assert gpu.memory_margin_c == 52

    def test_unknown_recovery_action_code_fails_safe(self, fake_nvml, make_source):
        fake_nvml.install([H100_SXM, H100_SXM])
        fake_nvml.set_field(0, FIELD_RECOVERY_ACTION, 42)
        reading = make_source().read()
        assert reading.gpus[0].reading.recovery_action is RecoveryAction.UNKNOWN
        assert reading.gpus[0].health is GpuHealth.RESET_REQUIRED
        assert "newer than gpuwatch knows" in reading.gpus[0].error
        assert reading.gpus[1].health is GpuHealth.OK
        assert dict(reading.dropped) == {}
