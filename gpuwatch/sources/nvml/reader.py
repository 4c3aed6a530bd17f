"""Reads one GPU into a GpuReading in base units, remembering what that GPU does not support."""

from __future__ import annotations

import math
from collections import Counter
from typing import Any, TypedDict

from gpuwatch.sources.clock import Clock
from gpuwatch.sources.model import GpuReading, RecoveryAction, SlowdownCounters, ThermalLimits, ThermalScale
from gpuwatch.sources.nvml import binding
from gpuwatch.sources.nvml.binding import NvmlError, function
from gpuwatch.sources.nvml.identity import GpuLimits
from gpuwatch.sources.plausible import screen

# Conversions, applied once here: NVML units -> base units.
MILLI = 1e-3  # mW -> W, mJ -> J
NANO = 1e-9  # ns -> s
MEGA = 1e6  # MHz -> Hz
PERCENT = 1e-2  # % -> ratio

# The call or field is absent on this GPU or driver: stop asking; the value is None.
UNSUPPORTED = frozenset({binding.NOT_SUPPORTED, binding.FUNCTION_NOT_FOUND, binding.DEPRECATED})
# A field id an older driver does not know is answered INVALID_ARGUMENT: unsupported, too.
FIELD_UNSUPPORTED = UNSUPPORTED | {binding.INVALID_ARGUMENT}
# This GPU is gone or must be reset: nothing else it says can be trusted this round.
GPU_FAILURES = frozenset({binding.GPU_IS_LOST, binding.RESET_REQUIRED})
# NVML itself is unusable: the source re-initialises it.
SOURCE_FAILURES = frozenset(
    {
        binding.UNINITIALIZED,
        binding.DRIVER_NOT_LOADED,
        binding.LIB_RM_VERSION_MISMATCH,
        binding.LIBRARY_NOT_FOUND,
    }
)

# Asked in one nvmlDeviceGetFieldValues call per GPU per sample.
SAMPLE_FIELDS = (
    binding.FIELD_MEMORY_TEMP,
    binding.FIELD_SW_POWER_CAP_NS,
    binding.FIELD_SYNC_BOOST_NS,
    binding.FIELD_SW_THERMAL_SLOWDOWN_NS,
    binding.FIELD_HW_THERMAL_SLOWDOWN_NS,
    binding.FIELD_HW_POWER_BRAKE_NS,
    binding.FIELD_RECOVERY_ACTION,
    binding.FIELD_PCIE_REPLAY_COUNTER,
    binding.FIELD_ECC_CORRECTED_VOLATILE,
    binding.FIELD_ECC_UNCORRECTED_VOLATILE,
)
# What each sample field becomes in a GpuReading: the name a value dropped as implausible is counted by.
FIELD_NAMES = {
    binding.FIELD_MEMORY_TEMP: "memory_temperature_c",
    binding.FIELD_SW_POWER_CAP_NS: "sw_power_cap_s",
    binding.FIELD_SYNC_BOOST_NS: "sync_boost_s",
    binding.FIELD_SW_THERMAL_SLOWDOWN_NS: "sw_thermal_slowdown_s",
    binding.FIELD_HW_THERMAL_SLOWDOWN_NS: "hw_thermal_slowdown_s",
    binding.FIELD_HW_POWER_BRAKE_NS: "hw_power_brake_slowdown_s",
    binding.FIELD_RECOVERY_ACTION: "recovery_action",
    binding.FIELD_PCIE_REPLAY_COUNTER: "pcie_replay_count",
    binding.FIELD_ECC_CORRECTED_VOLATILE: "ecc_corrected_volatile",
    binding.FIELD_ECC_UNCORRECTED_VOLATILE: "ecc_uncorrected_volatile",
}
# Older drivers lack these fields; nvmlDeviceGetViolationStatus (ns) stands in for them.
VIOLATION_FALLBACKS = {
    binding.FIELD_SW_POWER_CAP_NS: binding.PERF_POLICY_POWER,
    binding.FIELD_SW_THERMAL_SLOWDOWN_NS: binding.PERF_POLICY_THERMAL,
}


class _Thermal(TypedDict):
    temperature_c: float | None
    memory_temperature_c: float | None
    margin_c: float | None
    slowdown_margin_c: float | None
    shutdown_margin_c: float | None
    memory_margin_c: float | None


class _Activity(TypedDict):
    power_w: float | None
    power_limit_w: float | None
    energy_j: float | None
    utilization_ratio: float | None
    memory_utilization_ratio: float | None
    memory_used_bytes: int | None
    memory_free_bytes: int | None
    sm_clock_hz: float | None
    memory_clock_hz: float | None
    pstate: int | None


def _scaled(value: float | None, factor: float) -> float | None:
    return None if value is None else value * factor


def _float(value: float | None) -> float | None:
    return None if value is None else float(value)


def _integer(value: float | None) -> int | None:
    return None if value is None else int(value)


def margins(
    limits: ThermalLimits | None, temperature_c: float | None, tlimit_c: float | None
) -> tuple[float | None, float | None, float | None]:
    """°C of headroom to max operating, to HW slowdown and to shutdown (positive = below the limit).

    `tlimit_c` is nvmlDeviceGetMarginTemperature: the current reading on the T.Limit scale, on which
    limits are offsets (slowdown -2 means slowdown at 2 °C past T.Limit 0).
    """
    if limits is not None and limits.scale is ThermalScale.TLIMIT:
        if tlimit_c is None:
            return None, None, None
        anchor = limits.max_operating_c or 0.0  # the T.Limit scale puts max operating at 0
        return (
            tlimit_c - anchor,
            None if limits.slowdown_c is None else tlimit_c - limits.slowdown_c,
            None if limits.shutdown_c is None else tlimit_c - limits.shutdown_c,
        )
    if limits is None or temperature_c is None:
        return tlimit_c, None, None

    def below(limit: float | None) -> float | None:
        return None if limit is None else limit - temperature_c

    margin = tlimit_c if tlimit_c is not None else below(limits.max_operating_c)
    return margin, below(limits.slowdown_c), below(limits.shutdown_c)


def recovery_action(raw: float | None) -> RecoveryAction | None:
    """Field 230 as a RecoveryAction; None if absent, UNKNOWN for a code newer than gpuwatch."""
    if raw is None:
        return None
    try:
        return RecoveryAction(int(raw))
    except ValueError:
        return RecoveryAction.UNKNOWN


class GpuReader:
    """Reads one GPU, one NVML call per value plus one batched field call; never retries what failed.

    A call or field the GPU answers NOT_SUPPORTED (or lacks, on an older driver) is disabled for this
    GPU only, falling back to an older call where one exists; one that has answered on this GPU
    before is only missing this round (a reset or mode change passes). Other errors are counted by
    NVML name in the caller's counter; GPU_IS_LOST, RESET_REQUIRED and NVML-wide failures raise
    NvmlError. A NaN or infinite field value is dropped like an implausible one.
    """

    def __init__(self, handle: object, limits: GpuLimits, clock: Clock) -> None:
        self.limits = limits
        self._handle = handle
        self._clock = clock
        self._disabled: set[str] = set()
        # Calls and fields that have answered on this GPU: NOT_SUPPORTED from one of them is a passing
        # fault (a reset, a mode change), not a capability; it is asked again next round.
        self._worked: set[str] = set()
        self._fields_worked: set[int] = set()
        self._non_finite: list[str] = []
        self._field_ids: tuple[int, ...] = SAMPLE_FIELDS
        self._field_request = binding.FieldRequest(SAMPLE_FIELDS)
        self._errors: Counter[str] = Counter()
        self._answered = 0
        self._failed = 0

    @property
    def handle(self) -> object:
        """The GPU's NVML handle."""
        return self._handle

    @property
    def disabled(self) -> frozenset[str]:
        """NVML functions (and "field:<id>") this GPU does not support, so no longer called."""
        return frozenset(self._disabled) | {
            f"field:{fid}" for fid in SAMPLE_FIELDS if fid not in self._field_ids
        }

    def _get(self, name: str, *args: object) -> Any:  # noqa: ANN401 - pynvml's untyped answer
        """NVML function `name` on this GPU, or None if unsupported or failed (then counted)."""
        if name in self._disabled:
            return None
        try:
            value = function(name)(self._handle, *args)
        except NvmlError as error:
            self._note(error)
            return None
        self._answered += 1
        self._worked.add(name)
        return value

    def _note(self, error: NvmlError) -> None:
        """Disable what is unsupported; count the rest; re-raise what ends this GPU's round."""
        if error.name in UNSUPPORTED:
            if error.function not in self._worked:
                self._disabled.add(error.function)
            return
        self._errors[error.name] += 1
        if error.name in GPU_FAILURES or error.name in SOURCE_FAILURES:
            raise error
        self._failed += 1

    def _fields(self) -> dict[int, float]:
        """The sample fields in one call; each field's own error is honoured."""
        if not self._field_ids:
            return {}
        try:
            answers = self._field_request.fetch(self._handle)
        except NvmlError as error:
            if error.name in UNSUPPORTED and "nvmlDeviceGetFieldValues" not in self._worked:
                self._field_ids = ()
            self._note(error)
            return {}
        self._answered += 1
        self._worked.add("nvmlDeviceGetFieldValues")
        values: dict[int, float] = {}
        unsupported: set[int] = set()
        for answer in answers:
            self._take(answer, values, unsupported)
        if unsupported:
            self._field_ids = tuple(fid for fid in self._field_ids if fid not in unsupported)
            self._field_request = binding.FieldRequest(self._field_ids)
        return values

    def _take(self, answer: binding.FieldValue, values: dict[int, float], unsupported: set[int]) -> None:
        """File one field's answer: its value, unsupported (never answered here), or an error."""
        if answer.error is None and answer.value is not None:
            self._fields_worked.add(answer.field_id)
            if math.isfinite(answer.value):
                values[answer.field_id] = answer.value
            else:  # a NaN or infinite double: implausible, and no integer field can hold it
                self._non_finite.append(FIELD_NAMES.get(answer.field_id, f"field:{answer.field_id}"))
        elif answer.error in FIELD_UNSUPPORTED:
            if answer.field_id not in self._fields_worked:
                unsupported.add(answer.field_id)
        elif answer.error is not None:
            self._note(NvmlError(answer.error, "nvmlDeviceGetFieldValues"))

    def _counter_s(self, fields: dict[int, float], field_id: int) -> float | None:
        """A cumulative clock-event counter in s, from its field or, if absent, the violation status."""
        if field_id in fields:
            return fields[field_id] * NANO
        policy = VIOLATION_FALLBACKS.get(field_id)
        if policy is None or field_id in self._field_ids:
            return None
        status = self._get("nvmlDeviceGetViolationStatus", policy)
        return None if status is None else status.violationTime * NANO

    def _counters(self, fields: dict[int, float]) -> SlowdownCounters:
        return SlowdownCounters(
            sw_power_cap_s=self._counter_s(fields, binding.FIELD_SW_POWER_CAP_NS),
            sync_boost_s=self._counter_s(fields, binding.FIELD_SYNC_BOOST_NS),
            sw_thermal_slowdown_s=self._counter_s(fields, binding.FIELD_SW_THERMAL_SLOWDOWN_NS),
            hw_thermal_slowdown_s=self._counter_s(fields, binding.FIELD_HW_THERMAL_SLOWDOWN_NS),
            hw_power_brake_slowdown_s=self._counter_s(fields, binding.FIELD_HW_POWER_BRAKE_NS),
        )

    def _clock_event_reasons(self) -> int | None:
        reasons = self._get("nvmlDeviceGetCurrentClocksEventReasons")
        if reasons is None and "nvmlDeviceGetCurrentClocksEventReasons" in self._disabled:
            reasons = self._get("nvmlDeviceGetCurrentClocksThrottleReasons")
        return _integer(reasons)

    def _thermal(self, fields: dict[int, float]) -> _Thermal:
        temperature = _float(self._get("nvmlDeviceGetTemperature", binding.TEMPERATURE_GPU))
        tlimit = _float(self._get("nvmlDeviceGetMarginTemperature"))
        margin, slowdown, shutdown = margins(self.limits.identity.thermal_limits, temperature, tlimit)
        memory_temperature = fields.get(binding.FIELD_MEMORY_TEMP)
        memory_max = self.limits.memory_max_absolute_c
        memory_margin = (
            None if memory_max is None or memory_temperature is None else memory_max - memory_temperature
        )
        return _Thermal(
            temperature_c=temperature,
            memory_temperature_c=_float(memory_temperature),
            margin_c=margin,
            slowdown_margin_c=slowdown,
            shutdown_margin_c=shutdown,
            memory_margin_c=memory_margin,
        )

    def _activity(self) -> _Activity:
        utilization = self._get("nvmlDeviceGetUtilizationRates")
        memory = self._get("nvmlDeviceGetMemoryInfo")
        pstate = _integer(self._get("nvmlDeviceGetPerformanceState"))
        return _Activity(
            power_w=_scaled(self._get("nvmlDeviceGetPowerUsage"), MILLI),
            power_limit_w=_scaled(self._get("nvmlDeviceGetEnforcedPowerLimit"), MILLI),
            energy_j=_scaled(self._get("nvmlDeviceGetTotalEnergyConsumption"), MILLI),
            utilization_ratio=None if utilization is None else utilization.gpu * PERCENT,
            memory_utilization_ratio=None if utilization is None else utilization.memory * PERCENT,
            memory_used_bytes=None if memory is None else int(memory.used),
            memory_free_bytes=None if memory is None else int(memory.free),
            sm_clock_hz=_scaled(self._get("nvmlDeviceGetClockInfo", binding.CLOCK_SM), MEGA),
            memory_clock_hz=_scaled(self._get("nvmlDeviceGetClockInfo", binding.CLOCK_MEMORY), MEGA),
            pstate=None if pstate == binding.PSTATE_UNKNOWN else pstate,
        )

    def read(self, errors: Counter[str]) -> tuple[GpuReading, tuple[str, ...]]:
        """The GPU's values now, screened for implausible ones, and the names of those dropped.

        Raises NvmlError for a lost GPU, a required reset, NVML failing as a whole, or when every
        call failed (the error met most often).
        """
        self._errors, self._answered, self._failed, self._non_finite = Counter(), 0, 0, []
        taken_at, monotonic = self._clock.time(), self._clock.monotonic()
        try:
            fields = self._fields()
            reading = GpuReading(
                taken_at=taken_at,
                monotonic=monotonic,
                **self._thermal(fields),
                **self._activity(),
                clock_event_reasons=self._clock_event_reasons(),
                slowdown_counters=self._counters(fields),
                ecc_corrected_volatile=_integer(fields.get(binding.FIELD_ECC_CORRECTED_VOLATILE)),
                ecc_uncorrected_volatile=_integer(fields.get(binding.FIELD_ECC_UNCORRECTED_VOLATILE)),
                pcie_replay_count=_integer(fields.get(binding.FIELD_PCIE_REPLAY_COUNTER)),
                recovery_action=recovery_action(fields.get(binding.FIELD_RECOVERY_ACTION)),
            )
        finally:
            errors.update(self._errors)
        if self._answered == 0 and self._failed:
            raise NvmlError(self._errors.most_common(1)[0][0], "every call")
        screened, dropped = screen(reading)
        return screened, (*self._non_finite, *dropped)
