"""A GPU's recent margin and power readings, and the slope regression used before the fit converges."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

# A slope counts only when it is this many standard errors from zero: whole-degree readings
# flicker, and a flicker must not read as a trend.
SIGNIFICANT_T = 2.0


@dataclass(frozen=True, slots=True)
class Point:
    """One fresh reading as the policy learns from it."""

    at: float  # monotonic, s
    margin_c: float
    power_w: float | None


def appended(window: tuple[Point, ...], point: Point, keep: int) -> tuple[Point, ...]:
    """The window with `point` added at the end, keeping only the newest `keep` points."""
    return (*window[-(keep - 1) :], point) if keep > 1 else (point,)


def margin_slope(window: Sequence[Point], min_samples: int) -> float | None:
    """Least-squares slope of margin over time, °C/s; 0 when not significant, None when too few points.

    Temperatures are whole degrees, so a slope needs at least `min_samples` (>= 10) points; one
    within SIGNIFICANT_T standard errors of zero is reported as 0 (no trend).
    """
    count = len(window)
    if count < max(min_samples, 3):
        return None
    mean_t = math.fsum(p.at for p in window) / count
    mean_m = math.fsum(p.margin_c for p in window) / count
    spread_t = math.fsum((p.at - mean_t) ** 2 for p in window)
    if spread_t <= 0:
        return None
    slope = math.fsum((p.at - mean_t) * (p.margin_c - mean_m) for p in window) / spread_t
    residual = math.fsum((p.margin_c - mean_m - slope * (p.at - mean_t)) ** 2 for p in window)
    # Whole-degree readings carry at least 1/12 °C² of rounding variance even on a perfect line.
    variance = max(residual / (count - 2), 1.0 / 12.0)
    stderr = math.sqrt(variance / spread_t)
    return slope if abs(slope) > SIGNIFICANT_T * stderr else 0.0
