"""Reads, once per GPU at init, what does not change while the driver is loaded: identity and limits."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from gpuwatch.sources.model import GpuIdentity, ThermalLimits, ThermalScale
from gpuwatch.sources.nvml import binding
from gpuwatch.sources.nvml.binding import NvmlError, as_text, function

_T = TypeVar("_T")
_MILLI = 1e-3  # mW -> W
_MEGA = 1e6  # MHz -> Hz

# Errors that mean the GPU (or NVML) is gone, not that one property is unavailable.
_FATAL = frozenset(
    {
        binding.GPU_IS_LOST,
        binding.RESET_REQUIRED,
        binding.UNINITIALIZED,
        binding.DRIVER_NOT_LOADED,
        binding.LIB_RM_VERSION_MISMATCH,
    }
)

_TLIMIT_FIELDS = (
    binding.FIELD_TLIMIT_SHUTDOWN,
    binding.FIELD_TLIMIT_SLOWDOWN,
    binding.FIELD_TLIMIT_MEMORY_MAX,
    binding.FIELD_TLIMIT_GPU_MAX,
)


@dataclass(frozen=True, slots=True)
class GpuLimits:
    """A GPU's identity, plus what the reader needs beyond it to turn temperatures into margins.

    `memory_max_absolute_c` is the memory max-operating temperature in °C where the driver states
    one as an absolute threshold; on the T.Limit scale the memory limit is an offset, which cannot
    be compared with the absolute memory temperature.
    """

    identity: GpuIdentity
    memory_max_absolute_c: float | None


def _optional(read: Callable[[], _T]) -> _T | None:
    """The value, or None where this GPU cannot say; a lost GPU or driver still raises."""
    try:
        return read()
    except NvmlError as error:
        if error.name in _FATAL:
            raise
        return None


def _tlimit_offsets(handle: object) -> dict[int, float]:
    """The T.Limit offsets (fields 193-196) the GPU supports, in °C, by field id."""
    values = _optional(lambda: binding.get_field_values(handle, _TLIMIT_FIELDS)) or []
    return {
        item.field_id: float(item.value) for item in values if item.error is None and item.value is not None
    }


def _thresholds(handle: object, kinds: tuple[int, ...]) -> dict[int, float | None]:
    """Absolute temperature thresholds in °C (nvmlDeviceGetTemperatureThreshold), by kind."""
    get = function("nvmlDeviceGetTemperatureThreshold")
    return {kind: _optional(lambda kind=kind: float(get(handle, kind))) for kind in kinds}  # type: ignore[misc]


def read_thermal_limits(handle: object) -> tuple[ThermalLimits | None, float | None]:
    """The GPU's limits on the scale its driver uses, and its absolute memory limit if stated."""
    offsets = _tlimit_offsets(handle)
    if offsets:
        memory_max = _thresholds(handle, (binding.THRESHOLD_MEMORY_MAX,))[binding.THRESHOLD_MEMORY_MAX]
        limits = ThermalLimits(
            scale=ThermalScale.TLIMIT,
            shutdown_c=offsets.get(binding.FIELD_TLIMIT_SHUTDOWN),
            slowdown_c=offsets.get(binding.FIELD_TLIMIT_SLOWDOWN),
            max_operating_c=offsets.get(binding.FIELD_TLIMIT_GPU_MAX),
            memory_max_operating_c=offsets.get(binding.FIELD_TLIMIT_MEMORY_MAX),
        )
        return limits, memory_max
    kinds = (
        binding.THRESHOLD_SHUTDOWN,
        binding.THRESHOLD_SLOWDOWN,
        binding.THRESHOLD_GPU_MAX,
        binding.THRESHOLD_MEMORY_MAX,
    )
    absolute = _thresholds(handle, kinds)
    if all(value is None for value in absolute.values()):
        return None, None  # the driver states no limits; the policy falls back to SKU data
    limits = ThermalLimits(
        scale=ThermalScale.ABSOLUTE,
        shutdown_c=absolute[binding.THRESHOLD_SHUTDOWN],
        slowdown_c=absolute[binding.THRESHOLD_SLOWDOWN],
        max_operating_c=absolute[binding.THRESHOLD_GPU_MAX],
        memory_max_operating_c=absolute[binding.THRESHOLD_MEMORY_MAX],
    )
    return limits, absolute[binding.THRESHOLD_MEMORY_MAX]


def _power_limits_w(handle: object) -> tuple[float | None, float | None, float | None]:
    """Default, min and max power limits in W."""
    default_mw = _optional(lambda: function("nvmlDeviceGetPowerManagementDefaultLimit")(handle))
    constraints = _optional(lambda: function("nvmlDeviceGetPowerManagementLimitConstraints")(handle))
    min_mw, max_mw = constraints if constraints is not None else (None, None)
    return (
        None if default_mw is None else default_mw * _MILLI,
        None if min_mw is None else min_mw * _MILLI,
        None if max_mw is None else max_mw * _MILLI,
    )


def read_limits(index: int, handle: object, driver_version: str | None) -> GpuLimits:
    """Everything fixed about one GPU; raises NvmlError if it cannot even say who it is."""
    uuid = as_text(function("nvmlDeviceGetUUID")(handle))
    name = as_text(function("nvmlDeviceGetName")(handle))
    pci = _optional(lambda: function("nvmlDeviceGetPciInfo")(handle))
    thermal, memory_max = read_thermal_limits(handle)
    default_w, min_w, max_w = _power_limits_w(handle)
    max_clock = function("nvmlDeviceGetMaxClockInfo")
    sm_max_mhz = _optional(lambda: max_clock(handle, binding.CLOCK_SM))
    memory_max_mhz = _optional(lambda: max_clock(handle, binding.CLOCK_MEMORY))
    memory = _optional(lambda: function("nvmlDeviceGetMemoryInfo")(handle))
    identity = GpuIdentity(
        index=index,
        uuid=uuid,
        name=name,
        pci_bus_id=None if pci is None else as_text(pci.busId),
        driver_version=driver_version,
        thermal_limits=thermal,
        power_default_limit_w=default_w,
        power_min_limit_w=min_w,
        power_max_limit_w=max_w,
        sm_clock_max_hz=None if sm_max_mhz is None else sm_max_mhz * _MEGA,
        memory_clock_max_hz=None if memory_max_mhz is None else memory_max_mhz * _MEGA,
        memory_total_bytes=None if memory is None else int(memory.total),
    )
    return GpuLimits(identity=identity, memory_max_absolute_c=memory_max)
