"""Screens readings for values no real GPU can report (e.g. 4294967295 °C) before export."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from types import MappingProxyType

from gpuwatch.sources.model import GpuReading

# Inclusive bounds per GpuReading field, in that field's base unit. Wide enough for any
# data-center GPU (GB200 boards draw ~1.2 kW; HBM runs to ~105 °C), narrow enough to catch
# the sentinels drivers return for "no value" (0xFFFFFFFF, -1 cast to unsigned).
_TERA = 1e12
PLAUSIBLE_RANGES: Mapping[str, tuple[float, float]] = MappingProxyType(
    {
        "temperature_c": (-40.0, 150.0),
        "memory_temperature_c": (-40.0, 150.0),
        "margin_c": (-80.0, 200.0),
        "slowdown_margin_c": (-80.0, 200.0),
        "shutdown_margin_c": (-80.0, 200.0),
        "memory_margin_c": (-80.0, 200.0),
        "power_w": (0.0, 5000.0),
        "power_limit_w": (1.0, 5000.0),
        "energy_j": (0.0, 1e15),
        "utilization_ratio": (0.0, 1.0),
        "memory_utilization_ratio": (0.0, 1.0),
        "memory_used_bytes": (0.0, 16 * _TERA),
        "memory_free_bytes": (0.0, 16 * _TERA),
        "sm_clock_hz": (0.0, 10e9),
        "memory_clock_hz": (0.0, 20e9),
        "pstate": (0.0, 15.0),
        "ecc_corrected_volatile": (0.0, 2.0**62),
        "ecc_uncorrected_volatile": (0.0, 2.0**62),
        "pcie_replay_count": (0.0, 2.0**62),
    }
)
# The cumulative clock-event counters (GpuReading.slowdown_counters), s since driver load: a driver
# loaded for 30 years has counted under 1e9 s; 2**64 - 1 ns (the unsigned -1) reads 1.8e10 s.
COUNTER_RANGE_S: tuple[float, float] = (0.0, 1e9)


def _implausible(value: float | None, low: float, high: float) -> bool:
    """Outside [low, high]; NaN is too (it compares false with everything)."""
    return value is not None and not low <= value <= high


def screen(reading: GpuReading) -> tuple[GpuReading, tuple[str, ...]]:
    """Return the reading with implausible values set to None, and the names of those fields.

    A slowdown counter is named by its own field (e.g. `hw_thermal_slowdown_s`).
    """
    dropped = [
        name
        for name, (low, high) in PLAUSIBLE_RANGES.items()
        if _implausible(getattr(reading, name), low, high)
    ]
    counters = reading.slowdown_counters
    bad_counters = [
        f.name
        for f in dataclasses.fields(counters)
        if _implausible(getattr(counters, f.name), *COUNTER_RANGE_S)
    ]
    if not dropped and not bad_counters:
        return reading, ()
    cleaned = dataclasses.replace(reading, **dict.fromkeys(dropped))  # type: ignore[arg-type]
    if bad_counters:
        kept = dataclasses.replace(counters, **dict.fromkeys(bad_counters))
        cleaned = dataclasses.replace(cleaned, slowdown_counters=kept)
    return cleaned, (*dropped, *bad_counters)
