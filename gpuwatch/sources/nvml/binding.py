"""The one choke point for NVML: pynvml functions by name, their errors as NvmlError, constants."""

from __future__ import annotations

import ctypes
import functools
import logging
from collections.abc import Callable
from typing import Any, Final, NamedTuple

import pynvml

log = logging.getLogger(__name__)

# NVML error names (nvmlReturn_t without the NVML_ERROR_ prefix) that gpuwatch acts on.
NOT_SUPPORTED: Final = "NOT_SUPPORTED"
FUNCTION_NOT_FOUND: Final = "FUNCTION_NOT_FOUND"
DEPRECATED: Final = "DEPRECATED"
INVALID_ARGUMENT: Final = "INVALID_ARGUMENT"
GPU_IS_LOST: Final = "GPU_IS_LOST"
RESET_REQUIRED: Final = "RESET_REQUIRED"
LIBRARY_NOT_FOUND: Final = "LIBRARY_NOT_FOUND"
DRIVER_NOT_LOADED: Final = "DRIVER_NOT_LOADED"
UNINITIALIZED: Final = "UNINITIALIZED"
NO_PERMISSION: Final = "NO_PERMISSION"
LIB_RM_VERSION_MISMATCH: Final = "LIB_RM_VERSION_MISMATCH"
TIMEOUT: Final = "TIMEOUT"

_ERROR_NAMES: Final[dict[int, str]] = {
    code: name.removeprefix("NVML_ERROR_")
    for name, code in vars(pynvml).items()
    if name.startswith("NVML_ERROR_") and isinstance(code, int)
}

# Re-exported constants; literals are nvml.h's ABI values, for nvidia-ml-py releases that lack a name.
TEMPERATURE_GPU: Final[int] = pynvml.NVML_TEMPERATURE_GPU
THRESHOLD_SHUTDOWN: Final[int] = pynvml.NVML_TEMPERATURE_THRESHOLD_SHUTDOWN
THRESHOLD_SLOWDOWN: Final[int] = pynvml.NVML_TEMPERATURE_THRESHOLD_SLOWDOWN
THRESHOLD_MEMORY_MAX: Final[int] = pynvml.NVML_TEMPERATURE_THRESHOLD_MEM_MAX
THRESHOLD_GPU_MAX: Final[int] = pynvml.NVML_TEMPERATURE_THRESHOLD_GPU_MAX
CLOCK_SM: Final[int] = pynvml.NVML_CLOCK_SM
CLOCK_MEMORY: Final[int] = pynvml.NVML_CLOCK_MEM
PERF_POLICY_POWER: Final[int] = pynvml.NVML_PERF_POLICY_POWER
PERF_POLICY_THERMAL: Final[int] = pynvml.NVML_PERF_POLICY_THERMAL
PSTATE_UNKNOWN: Final[int] = getattr(pynvml, "NVML_PSTATE_UNKNOWN", 32)
EVENT_XID_CRITICAL: Final[int] = pynvml.nvmlEventTypeXidCriticalError

FIELD_ECC_CORRECTED_VOLATILE: Final[int] = pynvml.NVML_FI_DEV_ECC_SBE_VOL_TOTAL
FIELD_ECC_UNCORRECTED_VOLATILE: Final[int] = pynvml.NVML_FI_DEV_ECC_DBE_VOL_TOTAL
FIELD_SW_POWER_CAP_NS: Final[int] = pynvml.NVML_FI_DEV_PERF_POLICY_POWER
FIELD_SYNC_BOOST_NS: Final[int] = pynvml.NVML_FI_DEV_PERF_POLICY_SYNC_BOOST
FIELD_MEMORY_TEMP: Final[int] = pynvml.NVML_FI_DEV_MEMORY_TEMP
FIELD_PCIE_REPLAY_COUNTER: Final[int] = pynvml.NVML_FI_DEV_PCIE_REPLAY_COUNTER
FIELD_TLIMIT_SHUTDOWN: Final[int] = getattr(pynvml, "NVML_FI_DEV_TEMPERATURE_SHUTDOWN_TLIMIT", 193)
FIELD_TLIMIT_SLOWDOWN: Final[int] = getattr(pynvml, "NVML_FI_DEV_TEMPERATURE_SLOWDOWN_TLIMIT", 194)
FIELD_TLIMIT_MEMORY_MAX: Final[int] = getattr(pynvml, "NVML_FI_DEV_TEMPERATURE_MEM_MAX_TLIMIT", 195)
FIELD_TLIMIT_GPU_MAX: Final[int] = getattr(pynvml, "NVML_FI_DEV_TEMPERATURE_GPU_MAX_TLIMIT", 196)
FIELD_RECOVERY_ACTION: Final[int] = getattr(pynvml, "NVML_FI_DEV_GET_GPU_RECOVERY_ACTION", 230)
FIELD_SW_THERMAL_SLOWDOWN_NS: Final[int] = getattr(
    pynvml, "NVML_FI_DEV_CLOCKS_EVENT_REASON_SW_THERM_SLOWDOWN", 269
)
FIELD_HW_THERMAL_SLOWDOWN_NS: Final[int] = getattr(
    pynvml, "NVML_FI_DEV_CLOCKS_EVENT_REASON_HW_THERM_SLOWDOWN", 270
)
FIELD_HW_POWER_BRAKE_NS: Final[int] = getattr(
    pynvml, "NVML_FI_DEV_CLOCKS_EVENT_REASON_HW_POWER_BRAKE_SLOWDOWN", 271
)

# nvmlValueType_t -> the member of the nvmlValue_t union that holds it.
_VALUE_MEMBERS: Final[dict[int, str]] = {
    pynvml.NVML_VALUE_TYPE_DOUBLE: "dVal",
    pynvml.NVML_VALUE_TYPE_UNSIGNED_INT: "uiVal",
    pynvml.NVML_VALUE_TYPE_UNSIGNED_LONG: "ulVal",
    pynvml.NVML_VALUE_TYPE_UNSIGNED_LONG_LONG: "ullVal",
    pynvml.NVML_VALUE_TYPE_SIGNED_LONG_LONG: "sllVal",
    pynvml.NVML_VALUE_TYPE_SIGNED_INT: "siVal",
    pynvml.NVML_VALUE_TYPE_UNSIGNED_SHORT: "usVal",
}


class NvmlError(Exception):
    """An NVML call failed; `name` is NVML's error name, e.g. "GPU_IS_LOST"."""

    def __init__(self, name: str, function: str) -> None:
        super().__init__(f"{function} failed: NVML error {name}")
        self.name = name
        self.function = function


class FieldValue(NamedTuple):
    """One entry of an nvmlDeviceGetFieldValues answer: its value, or the error it came with."""

    field_id: int
    value: int | float | None
    error: str | None  # NVML error name of this field's own nvmlReturn; None on success


def error_name(code: int) -> str:
    """NVML's name for a return code, e.g. 15 -> "GPU_IS_LOST"."""
    return _ERROR_NAMES.get(code, f"CODE_{code}")


_missing_logged: set[str] = set()


def _translate(error: pynvml.NVMLError, function_name: str) -> NvmlError:
    name = error_name(error.value)
    if name == FUNCTION_NOT_FOUND and function_name not in _missing_logged:
        _missing_logged.add(function_name)
        log.warning("NVML has no %s (older driver); gpuwatch uses a fallback or leaves it out", function_name)
    return NvmlError(name, function_name)


def _missing(function_name: str) -> Callable[..., Any]:
    def absent(*_args: object) -> Any:  # noqa: ANN401 - stands in for an untyped pynvml function
        if function_name not in _missing_logged:
            _missing_logged.add(function_name)
            log.warning("nvidia-ml-py has no %s; gpuwatch leaves it out", function_name)
        raise NvmlError(FUNCTION_NOT_FOUND, function_name)

    return absent


@functools.cache
def function(function_name: str) -> Callable[..., Any]:
    """The pynvml function `function_name`, raising NvmlError instead of NVMLError; looked up once."""
    target = getattr(pynvml, function_name, None)
    if target is None:
        return _missing(function_name)

    def invoke(*args: object) -> Any:  # noqa: ANN401 - pynvml is untyped; callers convert at once
        try:
            return target(*args)
        except pynvml.NVMLError as error:
            raise _translate(error, function_name) from None

    invoke.__name__ = function_name
    return invoke


class _Value(ctypes.Union):
    """nvmlValue_t."""

    _fields_ = (
        ("dVal", ctypes.c_double),
        ("uiVal", ctypes.c_uint),
        ("ulVal", ctypes.c_ulong),
        ("ullVal", ctypes.c_ulonglong),
        ("sllVal", ctypes.c_longlong),
        ("siVal", ctypes.c_int),
        ("usVal", ctypes.c_ushort),
    )


class _FieldValue(ctypes.Structure):
    """nvmlFieldValue_t, as a plain ctypes struct: pynvml's decodes every attribute read in Python."""

    _fields_ = (
        ("fieldId", ctypes.c_uint32),
        ("scopeId", ctypes.c_uint32),
        ("timestamp", ctypes.c_int64),
        ("latencyUsec", ctypes.c_int64),
        ("valueType", ctypes.c_int),
        ("nvmlReturn", ctypes.c_int),
        ("value", _Value),
    )


# The hot path calls the C entry point through pynvml's function-pointer cache with an array built
# once per GPU; where this pynvml differs (no such hook, another layout), its public wrapper is used.
_SAME_LAYOUT: Final = ctypes.sizeof(_FieldValue) == ctypes.sizeof(pynvml.c_nvmlFieldValue_t)
_FAST_FIELDS: Final = _SAME_LAYOUT and hasattr(pynvml, "_nvmlGetFunctionPointer")


def _decode(answer: Any) -> FieldValue:  # noqa: ANN401 - a ctypes struct of either layout
    if answer.nvmlReturn != pynvml.NVML_SUCCESS:
        return FieldValue(answer.fieldId, None, error_name(answer.nvmlReturn))
    member = _VALUE_MEMBERS.get(answer.valueType)
    if member is None:
        return FieldValue(answer.fieldId, None, "UNKNOWN_VALUE_TYPE")
    return FieldValue(answer.fieldId, getattr(answer.value, member), None)


class FieldRequest:
    """A reusable nvmlDeviceGetFieldValues request: many fields in one call, each with its own result."""

    def __init__(self, field_ids: tuple[int, ...]) -> None:
        self.field_ids = field_ids
        self._array = (_FieldValue * len(field_ids))()
        for slot, field_id in zip(self._array, field_ids, strict=True):
            slot.fieldId = field_id

    def fetch(self, handle: object) -> list[FieldValue]:
        """Ask `handle` for every field; raises NvmlError only if the call as a whole fails."""
        if not _FAST_FIELDS:
            answers = function("nvmlDeviceGetFieldValues")(handle, list(self.field_ids))
            return [_decode(answer) for answer in answers]
        try:
            entry_point = pynvml._nvmlGetFunctionPointer("nvmlDeviceGetFieldValues")  # noqa: SLF001 - see _FAST_FIELDS
        except pynvml.NVMLError as error:
            raise _translate(error, "nvmlDeviceGetFieldValues") from None
        code = entry_point(handle, ctypes.c_int32(len(self.field_ids)), ctypes.byref(self._array))
        if code != pynvml.NVML_SUCCESS:
            raise NvmlError(error_name(code), "nvmlDeviceGetFieldValues")
        return [_decode(answer) for answer in self._array]


def get_field_values(handle: object, field_ids: tuple[int, ...]) -> list[FieldValue]:
    """Many fields in one nvmlDeviceGetFieldValues call, each with its own success or error."""
    return FieldRequest(field_ids).fetch(handle)


def handle_address(handle: object) -> int:
    """The address an nvmlDevice_t points to, to match event data with the GPU it names."""
    return ctypes.cast(handle, ctypes.c_void_p).value or 0  # type: ignore[arg-type]


def as_text(value: str | bytes) -> str:
    """NVML strings arrive as str or bytes depending on the pynvml release."""
    return value.decode(errors="replace") if isinstance(value, bytes) else value
