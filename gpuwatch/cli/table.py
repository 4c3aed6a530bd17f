"""Renders a snapshot as the human-readable table `gpuwatch status` prints."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from gpuwatch.sources.model import GpuSample, Snapshot, reason_words

_GIB = 1024**3
_MHZ = 1e6
MISSING = "-"

HEADERS = (
    "GPU",
    "NAME",
    "TEMP",
    "MEM TEMP",
    "MARGIN",
    "POWER / LIMIT",
    "UTIL",
    "MEMORY",
    "SM CLOCK",
    "HEALTH",
    "CLOCK EVENTS",
)


def _celsius(value: float | None) -> str:
    return MISSING if value is None else f"{value:.0f}C"


def _power(used: float | None, limit: float | None) -> str:
    if used is None and limit is None:
        return MISSING
    used_text = MISSING if used is None else f"{used:.0f}"
    limit_text = MISSING if limit is None else f"{limit:.0f}"
    return f"{used_text} / {limit_text} W"


def _memory(used: int | None, total: int | None) -> str:
    if used is None:
        return MISSING
    total_text = MISSING if total is None else f"{total / _GIB:.1f}"
    return f"{used / _GIB:.1f} / {total_text} GiB"


def _reasons(mask: int | None) -> str:
    if mask is None:
        return MISSING
    return ", ".join(reason_words(mask)) or "none"


def gpu_row(gpu: GpuSample) -> tuple[str, ...]:
    """One table row; values the GPU does not report show as '-'."""
    identity, reading = gpu.identity, gpu.reading
    lead = (str(identity.index), identity.name)
    if reading is None:
        return (*lead, *([MISSING] * 7), gpu.health.value, MISSING)
    util = MISSING if reading.utilization_ratio is None else f"{reading.utilization_ratio:.0%}"
    clock = MISSING if reading.sm_clock_hz is None else f"{reading.sm_clock_hz / _MHZ:.0f} MHz"
    total = identity.memory_total_bytes
    return (
        *lead,
        _celsius(reading.temperature_c),
        _celsius(reading.memory_temperature_c),
        _celsius(reading.margin_c),
        _power(reading.power_w, reading.power_limit_w),
        util,
        _memory(reading.memory_used_bytes, total),
        clock,
        gpu.health.value,
        _reasons(reading.clock_event_reasons),
    )


# Styles one padded cell of a data row: (row number from 0 under the headers, column, text) -> text.
CellStyle = Callable[[int, int, str], str]


def format_table(rows: Sequence[Sequence[str]], style: CellStyle | None = None) -> list[str]:
    """Left-aligned columns two spaces apart; the last column is not padded.

    `style` colours data cells after padding, so escape codes never shift the columns.
    """
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for number, row in enumerate(rows):
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=True)]
        if style is not None and number > 0:
            cells = [style(number - 1, column, cell) for column, cell in enumerate(cells)]
        lines.append("  ".join(cells).rstrip())
    return lines


def _counts(counts: Mapping[str, int]) -> str:
    return ", ".join(f"{name} x{count}" for name, count in counts.items())


def render_status(snapshot: Snapshot, now_monotonic: float) -> str:
    """The status table, then a line on where the data came from and what went wrong."""
    lines = format_table([HEADERS, *(gpu_row(g) for g in snapshot.gpus)]) if snapshot.gpus else []
    health = snapshot.health
    about = [f"source {snapshot.source}", f"{len(snapshot.gpus)} GPUs"]
    if snapshot.driver_version:
        about.append(f"driver {snapshot.driver_version}")
    age = snapshot.age_s(now_monotonic)
    about.append("never sampled successfully" if age is None else f"sample age {age:.1f} s")
    if health.duration_s is not None:
        about.append(f"read in {health.duration_s * 1e3:.1f} ms")
    lines.append(" | ".join(about))
    if health.source_error:
        lines.append(f"error: {health.source_error}")
    if health.failures:
        lines.append(f"failed reads: {_counts(health.failures)}")
    if health.dropped_values:
        lines.append(f"implausible values dropped: {_counts(health.dropped_values)}")
    lines.extend(f"gpu {g.identity.index}: {g.error}" for g in snapshot.gpus if g.error)
    lines.extend(
        f"gpu {g.identity.index}: XID errors {_counts(g.xid_errors)}" for g in snapshot.gpus if g.xid_errors
    )
    return "\n".join(lines)
