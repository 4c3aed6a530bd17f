"""The nvidia-smi --query-gpu columns gpuwatch understands, and where each lands in its model."""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from gpuwatch.sources.model import ClockEventReason, GpuHealth
from gpuwatch.sources.replay.smi_values import (
    BadValueError,
    ValueParser,
    flag,
    mask,
    number,
    pstate,
    recovery_action,
    text_value,
    timestamp,
    whole,
)


class Target(enum.StrEnum):
    """Which part of gpuwatch's model a column feeds."""

    TIMESTAMP = "timestamp"
    IDENTITY = "identity"  # a GpuIdentity field
    READING = "reading"  # a GpuReading field
    COUNTER = "counter"  # a SlowdownCounters field
    REASON_MASK = "reason_mask"  # the whole clock-event bitmask
    REASON_BIT = "reason_bit"  # one reason's Active/Not Active; field is the ClockEventReason name


@dataclass(frozen=True, slots=True)
class Column:
    """How one known column is parsed and which model field it fills.

    Where several columns feed one field (power.draw, .average, .instant), the lowest `rank`
    that has a value in a row wins.
    """

    target: Target
    field: str
    parse: ValueParser
    rank: int = 0


_MIB = 1024 * 1024  # nvidia-smi reports memory in MiB
_MHZ = 1e6
_MICROSECOND = 1e-6  # clocks_event_reasons_counters are in µs

# (names and aliases nvidia-smi accepts, target, field, parser, rank); units as nvidia-smi writes them.
_SPECS: tuple[tuple[tuple[str, ...], Target, str, ValueParser, int], ...] = (
    (("timestamp",), Target.TIMESTAMP, "timestamp", timestamp, 0),
    (("index",), Target.IDENTITY, "index", whole(), 0),
    (("name", "gpu_name"), Target.IDENTITY, "name", text_value, 0),
    (("uuid", "gpu_uuid"), Target.IDENTITY, "uuid", text_value, 0),
    (("pci.bus_id", "gpu_bus_id"), Target.IDENTITY, "pci_bus_id", text_value, 0),
    (("driver_version",), Target.IDENTITY, "driver_version", text_value, 0),
    (
        ("power.default_limit", "gpu.power.default_limit"),
        Target.IDENTITY,
        "power_default_limit_w",
        number("W"),
        0,
    ),
    (("power.min_limit", "gpu.power.min_limit"), Target.IDENTITY, "power_min_limit_w", number("W"), 0),
    (("power.max_limit", "gpu.power.max_limit"), Target.IDENTITY, "power_max_limit_w", number("W"), 0),
    (("clocks.max.sm",), Target.IDENTITY, "sm_clock_max_hz", number("MHz", _MHZ), 0),
    (("clocks.max.memory", "clocks.max.mem"), Target.IDENTITY, "memory_clock_max_hz", number("MHz", _MHZ), 0),
    (("memory.total",), Target.IDENTITY, "memory_total_bytes", whole("MiB", _MIB), 0),
    (("temperature.gpu",), Target.READING, "temperature_c", number("C"), 0),
    (("temperature.memory",), Target.READING, "memory_temperature_c", number("C"), 0),
    # On Hopper and later the T.Limit temperature is the margin below max operating temperature.
    (("temperature.gpu.tlimit",), Target.READING, "margin_c", number("C"), 0),
    (("power.draw",), Target.READING, "power_w", number("W"), 0),
    (("power.draw.average", "gpu.power.draw.average"), Target.READING, "power_w", number("W"), 1),
    (("power.draw.instant", "gpu.power.draw.instant"), Target.READING, "power_w", number("W"), 2),
    (("enforced.power.limit", "gpu.power.current_limit"), Target.READING, "power_limit_w", number("W"), 0),
    (("power.limit", "gpu.power.requested_limit"), Target.READING, "power_limit_w", number("W"), 1),
    (("utilization.gpu",), Target.READING, "utilization_ratio", number("%", 0.01), 0),
    (("utilization.memory",), Target.READING, "memory_utilization_ratio", number("%", 0.01), 0),
    (("memory.used",), Target.READING, "memory_used_bytes", whole("MiB", _MIB), 0),
    (("memory.free",), Target.READING, "memory_free_bytes", whole("MiB", _MIB), 0),
    (("clocks.current.sm", "clocks.sm"), Target.READING, "sm_clock_hz", number("MHz", _MHZ), 0),
    (("clocks.current.memory", "clocks.mem"), Target.READING, "memory_clock_hz", number("MHz", _MHZ), 0),
    (("pstate",), Target.READING, "pstate", pstate, 0),
    (("ecc.errors.corrected.volatile.total",), Target.READING, "ecc_corrected_volatile", whole(), 0),
    (("ecc.errors.uncorrected.volatile.total",), Target.READING, "ecc_uncorrected_volatile", whole(), 0),
    (("gpu_recovery_action",), Target.READING, "recovery_action", recovery_action, 0),
)
_COUNTER_NAMES = (
    "sw_power_cap",
    "sync_boost",
    "sw_thermal_slowdown",
    "hw_thermal_slowdown",
    "hw_power_brake_slowdown",
)


def _build_table() -> Mapping[str, Column]:
    table: dict[str, Column] = {}
    for names, target, field_name, parse, rank in _SPECS:
        for name in names:
            table[name] = Column(target, field_name, parse, rank)
    # Drivers before 535 spell the reasons "clocks_throttle_reasons"; later ones accept both.
    for prefix in ("clocks_event_reasons", "clocks_throttle_reasons"):
        table[f"{prefix}.active"] = Column(Target.REASON_MASK, "clock_event_reasons", mask)
        for reason in ClockEventReason:
            table[f"{prefix}.{str(reason.name).lower()}"] = Column(Target.REASON_BIT, str(reason.name), flag)
        for counter in _COUNTER_NAMES:
            table[f"{prefix}_counters.{counter}"] = Column(
                Target.COUNTER, f"{counter}_s", number("us", _MICROSECOND)
            )
    return MappingProxyType(table)


COLUMNS: Mapping[str, Column] = _build_table()
_UNIT_SUFFIX = re.compile(r"\s*\[[^\]]*\]$")
_HEADER_FIELD = re.compile(r"[A-Za-z][A-Za-z0-9_.]*(?:\s*\[[^\]]*\])?")
_TARGETS = tuple(Target)  # iterating an enum class is slow; rows are decoded by the ten thousand
_HEALTH_WORDS = {"[gpu is lost]": GpuHealth.LOST, "[gpu requires reset]": GpuHealth.RESET_REQUIRED}


def column_name(header_field: str) -> str:
    """The query name of a header field: "power.draw [W]" -> "power.draw"."""
    return _UNIT_SUFFIX.sub("", header_field.strip()).lower()


def looks_like_header(fields: Sequence[str]) -> bool:
    """True when a line holds column names (with optional [unit]) rather than values."""
    stripped = [field.strip() for field in fields]
    return all(_HEADER_FIELD.fullmatch(field) for field in stripped) and any(
        column_name(field) in COLUMNS for field in stripped
    )


@dataclass(frozen=True, slots=True)
class ColumnLayout:
    """Where each known column sits in a file's rows; unknown columns are listed, not used."""

    names: tuple[str, ...]
    sources: Mapping[tuple[Target, str], tuple[tuple[int, Column], ...]]  # best rank first
    ignored: tuple[str, ...]

    def has(self, target: Target, field_name: str) -> bool:
        """Whether some column feeds this field."""
        return (target, field_name) in self.sources


def layout_for(header_fields: Sequence[str]) -> ColumnLayout:
    """The layout of a file whose header (or user-given column list) is `header_fields`."""
    names = tuple(column_name(field) for field in header_fields)
    grouped: dict[tuple[Target, str], list[tuple[int, Column]]] = {}
    ignored: list[str] = []
    for position, name in enumerate(names):
        column = COLUMNS.get(name)
        if column is None:
            ignored.append(name)
            continue
        grouped.setdefault((column.target, column.field), []).append((position, column))
    sources = {key: tuple(sorted(found, key=lambda item: item[1].rank)) for key, found in grouped.items()}
    return ColumnLayout(names, MappingProxyType(sources), tuple(ignored))


@dataclass(frozen=True, slots=True)
class RowValues:
    """One row's values in base units, keyed by model field; absent where the row has none."""

    timestamp: float | None
    identity: Mapping[str, Any]
    reading: Mapping[str, Any]
    counters: Mapping[str, Any]
    clock_event_reasons: int | None
    health: GpuHealth


def decode_row(layout: ColumnLayout, fields: Sequence[str]) -> RowValues:
    """Parse the known columns of one row; raises BadValueError naming the column."""
    if len(fields) != len(layout.names):
        raise BadValueError(f"expected {len(layout.names)} values, one per column, got {len(fields)}")
    found: dict[Target, dict[str, Any]] = {target: {} for target in _TARGETS}
    for (target, field_name), candidates in layout.sources.items():
        for position, column in candidates:
            try:
                value = column.parse(fields[position])
            except BadValueError as exc:
                msg = f"column {position + 1} ({layout.names[position]}): {exc}"
                raise BadValueError(msg) from None
            if value is not None:
                found[target][field_name] = value
                break
    return RowValues(
        timestamp=found[Target.TIMESTAMP].get("timestamp"),
        identity=found[Target.IDENTITY],
        reading=found[Target.READING],
        counters=found[Target.COUNTER],
        clock_event_reasons=_reasons(found[Target.REASON_MASK], found[Target.REASON_BIT]),
        health=_health(fields),
    )


def _health(fields: Sequence[str]) -> GpuHealth:
    """LOST or RESET_REQUIRED where nvidia-smi wrote that in place of values, else OK."""
    for text in fields:
        if text.startswith("[GPU"):
            return _HEALTH_WORDS.get(text.strip().lower(), GpuHealth.OK)
    return GpuHealth.OK


def _reasons(masks: Mapping[str, Any], bits: Mapping[str, Any]) -> int | None:
    """The `.active` mask when the file has one, else the mask built from per-reason columns."""
    if "clock_event_reasons" in masks:
        return int(masks["clock_event_reasons"])
    if not bits:
        return None
    active = ClockEventReason(0)
    for reason_name, is_active in bits.items():
        if is_active:
            active |= ClockEventReason[reason_name]
    return int(active)
