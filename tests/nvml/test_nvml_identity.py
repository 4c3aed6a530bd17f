"""Identity and limits read once per GPU at init, and the binding that every NVML call goes through."""

from __future__ import annotations

import logging

import pytest
from fake_nvml.control import DOUBLE, FIELD_TLIMIT_GPU_MAX, SIGNED_INT, fake_pci_bus_id, fake_uuid
from fake_nvml.profiles import A100_SXM4_80GB, H100_SXM, H200

from gpuwatch.sources.model import ThermalLimits, ThermalScale
from gpuwatch.sources.nvml import binding
from gpuwatch.sources.nvml.binding import NvmlError, function


class TestIdentity:
    """Each GPU's name, UUID, PCI bus id, driver and fixed limits come from NVML in base units."""

    def test_h100_identity(self, fake_nvml, make_source):
        fake_nvml.install([H100_SXM])
        identity = make_source().read().gpus[0].identity
        assert identity.index == 0
        assert identity.name == "NVIDIA H100 80GB HBM3"
        assert identity.uuid == fake_uuid(0, H100_SXM)
        assert identity.pci_bus_id == fake_pci_bus_id(0)
        assert identity.driver_version == "565.57.01"
        assert identity.power_default_limit_w == pytest.approx(700.0)
        assert (identity.power_min_limit_w, identity.power_max_limit_w) == pytest.approx((200.0, 700.0))
        assert identity.sm_clock_max_hz == pytest.approx(1.98e9)
        assert identity.memory_clock_max_hz == pytest.approx(2.619e9)
        assert identity.memory_total_bytes == 81_559 * 1024 * 1024

    def test_identity_is_read_once(self, fake_nvml, make_source):
        fake_nvml.install([H200])
        source = make_source()
        for _ in range(3):
            source.read()
        assert fake_nvml.calls(0, "nvmlDeviceGetUUID") == 1
        assert fake_nvml.calls(0, "nvmlDeviceGetMaxClockInfo") == 2  # SM and memory, once each

    def test_unsupported_limits_are_none(self, fake_nvml, make_source):
        fake_nvml.install([H100_SXM])
        fake_nvml.set_return(0, "nvmlDeviceGetPowerManagementLimitConstraints", "NOT_SUPPORTED")
        fake_nvml.set_return(0, "nvmlDeviceGetPciInfo_v3", "NOT_SUPPORTED")
        identity = make_source().read().gpus[0].identity
        assert identity.power_min_limit_w is None
        assert identity.power_max_limit_w is None
        assert identity.pci_bus_id is None
        assert identity.power_default_limit_w == pytest.approx(700.0)


class TestThermalLimits:
    """Limits are T.Limit offsets where the driver gives them, else absolute thresholds, else None."""

    def test_h100_states_tlimit_offsets(self, fake_nvml, make_source):
        fake_nvml.install([H100_SXM])
        limits = make_source().read().gpus[0].identity.thermal_limits
        assert limits == ThermalLimits(
            ThermalScale.TLIMIT, shutdown_c=-8, slowdown_c=-2, max_operating_c=0, memory_max_operating_c=0
        )

    def test_a100_states_absolute_thresholds(self, fake_nvml, make_source):
        fake_nvml.install([A100_SXM4_80GB])
        limits = make_source().read().gpus[0].identity.thermal_limits
        assert limits == ThermalLimits(
            ThermalScale.ABSOLUTE, shutdown_c=92, slowdown_c=89, max_operating_c=85, memory_max_operating_c=95
        )

    def test_a_gpu_stating_no_limits(self, fake_nvml, make_source):
        fake_nvml.install([A100_SXM4_80GB])
        for which in ("shutdown", "slowdown", "gpu_max", "memory_max"):
            fake_nvml.set_threshold(0, which, None)
        gpu = make_source().read().gpus[0]
        assert gpu.identity.thermal_limits is None
        assert gpu.reading.margin_c is None
        assert gpu.reading.temperature_c == 25

    def test_tlimit_offsets_anchor_the_margin(self, fake_nvml, make_source):
        fake_nvml.install([H100_SXM])
        fake_nvml.set_field(0, FIELD_TLIMIT_GPU_MAX, -1)  # max operating 1 °C past T.Limit 0
        reading = make_source().read().gpus[0].reading
        assert reading.margin_c == 58
        assert reading.slowdown_margin_c == 59


class TestBinding:
    """Every NVML failure surfaces as NvmlError carrying NVML's error name; missing calls log once."""

    def test_error_names(self):
        assert binding.error_name(15) == "GPU_IS_LOST"
        assert binding.error_name(3) == "NOT_SUPPORTED"
        assert binding.error_name(12) == "LIBRARY_NOT_FOUND"
        assert binding.error_name(123456) == "CODE_123456"

    def test_a_failing_call_raises_nvml_error(self, fake_nvml, make_source):
        fake_nvml.install([H100_SXM])
        make_source().read()  # NVML initialised and left initialised until teardown
        fake_nvml.set_return(0, "nvmlDeviceGetPowerUsage", "NO_PERMISSION")
        handle = function("nvmlDeviceGetHandleByIndex")(0)
        with pytest.raises(NvmlError) as raised:
            function("nvmlDeviceGetPowerUsage")(handle)
        assert raised.value.name == "NO_PERMISSION"
        assert raised.value.function == "nvmlDeviceGetPowerUsage"
        with pytest.raises(NvmlError, match="INVALID_ARGUMENT"):
            function("nvmlDeviceGetHandleByIndex")(7)

    def test_a_function_pynvml_lacks_is_function_not_found_logged_once(self, caplog):
        missing = function("nvmlDeviceGetSomethingFromTheFuture")
        with caplog.at_level(logging.WARNING, logger="gpuwatch.sources.nvml.binding"):
            for _ in range(3):
                with pytest.raises(NvmlError) as raised:
                    missing(object())
                assert raised.value.name == "FUNCTION_NOT_FOUND"
        assert len([r for r in caplog.records if "nvmlDeviceGetSomethingFromTheFuture" in r.message]) == 1

    def test_field_values_are_decoded_by_their_type(self, fake_nvml, make_source):
        fake_nvml.install([H100_SXM])
        make_source().read()
        fake_nvml.set_field(0, 150, -7, value_type=SIGNED_INT)
        fake_nvml.set_field(0, 151, 2.5, value_type=DOUBLE)
        fake_nvml.set_field(0, 152, 2**40)
        fake_nvml.set_field_return(0, 153, "NOT_SUPPORTED")
        handle = function("nvmlDeviceGetHandleByIndex")(0)
        values = binding.get_field_values(handle, (150, 151, 152, 153))
        assert [(value.field_id, value.value, value.error) for value in values] == [
            (150, -7, None),
            (151, 2.5, None),
            (152, 2**40, None),
            (153, None, "NOT_SUPPORTED"),
        ]
