"""Readings the margin model must not learn from, named: dropped from the fit and counted, never fitted.

A source screens what no GPU can report (sources/plausible.py); this screens what no GPU can *do*
between two readings, which only the GPU's own history shows. The state still follows the
reading's margin (a real jump towards the limit must still hold work back); only the model,
the crossings and ΔP_job skip it, so one glitch cannot poison the forecast for minutes.
"""

from __future__ import annotations

import math

from gpuwatch.sources.model import GpuReading

# A die moves a few °C per second at most (a power step lifts it by R_ds*ΔP, ~10 °C, over
# seconds; the A100 trace's bursts move it 10 °C in 250 ms): this much between two readings is
# a sensor or driver glitch, or a new GPU behind the same uuid.
MAX_JUMP_C = 20.0
# The enforced limit caps board power; twice it is a broken reading (transients last microseconds).
MAX_POWER_RATIO = 2.0
# Readings that jumped, in a row and agreeing with each other, after which the jump is taken as
# real and the model starts again from it.
JUMP_CONFIRMATIONS = 3
AGREE_C = 5.0

NOT_A_NUMBER = "not_a_number"
MARGIN_JUMP = "margin_jump"
POWER_OVER_LIMIT = "power_over_limit"
CLOCK_BACKWARDS = "clock_backwards"
REASONS = (NOT_A_NUMBER, MARGIN_JUMP, POWER_OVER_LIMIT, CLOCK_BACKWARDS)


def unusable(reading: GpuReading, last_margin_c: float | None, last_at: float | None) -> str | None:
    """Why the model cannot learn from `reading`, after one of `last_margin_c` at `last_at`; None: it can."""
    values = (reading.margin_c, reading.power_w, reading.power_limit_w)
    if any(value is not None and not math.isfinite(value) for value in values):
        return NOT_A_NUMBER
    if last_at is not None and reading.monotonic <= last_at:
        return CLOCK_BACKWARDS
    limit_w = reading.power_limit_w
    if reading.power_w is not None and limit_w is not None and reading.power_w > MAX_POWER_RATIO * limit_w:
        return POWER_OVER_LIMIT
    margin_c = reading.margin_c
    if margin_c is not None and last_margin_c is not None and abs(margin_c - last_margin_c) > MAX_JUMP_C:
        return MARGIN_JUMP
    return None


def counted(counts: tuple[tuple[str, int], ...], reason: str) -> tuple[tuple[str, int], ...]:
    """`counts` with one more `reason`, in REASONS order."""
    totals = dict(counts)
    totals[reason] = totals.get(reason, 0) + 1
    return tuple((name, totals[name]) for name in REASONS if name in totals)
