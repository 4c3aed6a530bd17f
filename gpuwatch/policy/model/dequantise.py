"""Whole-degree margin readings turned back into an estimate of the smooth margin the GPU really has.

NVML gives temperatures (and T.Limit margins) in whole degrees: a reading r says only that the
true margin lies in (r - 1, r]. But the moment a reading changes is exact information: the true
margin was then at the boundary between the two readings (r_old to r_new = r_old - 1: it
crossed r_new; upwards, it crossed r_old). Those crossings are noise-free points on the true
curve, good to half a sampling interval in time. Between them the estimate runs on along the
line through the last two crossings, held inside the interval the current reading allows.

A reading that is not a whole number (a replayed CSV with decimals) is taken as it stands.
The estimate is what the model learns from and forecasts from; states and thresholds keep the
reading itself (DESIGN §2: the margin as the driver defines it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

# A crossing older than this many seconds no longer sets the slope the estimate runs on with:
# a margin that has held one reading for long is treated as flat within it.
STALE_CROSSING_S = 600.0
KEEP_CROSSINGS = 16  # the trajectory fit (trajectory.py) reads this many


@dataclass(frozen=True, slots=True)
class Dequantiser:
    """The last reading and the last boundary crossings, (time s, margin °C), oldest first."""

    last_at: float | None = None
    last_reading_c: float | None = None
    crossings: tuple[tuple[float, float], ...] = ()
    latest_change: int = 0  # crossings the latest changing reading added

    def observe(self, at: float, reading_c: float, *, stepped: bool = False) -> tuple[Dequantiser, float]:
        """The dequantiser after one reading, and its estimate of the true margin at `at`, °C.

        `stepped`: power stepped since the last reading. The die jumps within a fraction of a
        second, so the degrees crossed since say nothing of when: the margin is anywhere in
        the reading's degree (its middle is the estimate), and the drift is read afresh.
        """
        whole = reading_c == math.floor(reading_c)
        if not whole or self.last_at is None or self.last_reading_c is None or stepped:
            return Dequantiser(at, reading_c, ()), reading_c - 0.5 if whole else reading_c
        crossings, latest_change = self.crossings, self.latest_change
        change = reading_c - self.last_reading_c
        if change:
            steps = round(abs(change))
            low = min(reading_c, self.last_reading_c)
            # Boundaries crossed between the two readings, spread evenly over the interval.
            for k in range(steps):
                fraction = (k + 0.5) / steps
                boundary = (
                    self.last_reading_c - 1 - k if change < 0 else low + k
                )  # crossed going down: r_old - 1, ...; going up: r_old, ...
                crossed = (self.last_at + fraction * (at - self.last_at), boundary)
                crossings = (*crossings[-(KEEP_CROSSINGS - 1) :], crossed)
            latest_change = min(steps, KEEP_CROSSINGS)
        state = Dequantiser(at, reading_c, crossings, latest_change)
        return state, state.estimate_c(at, reading_c)

    def rate_c_per_s(self, at: float) -> float | None:
        """The margin's rate from the last crossing an earlier reading showed to the last one, °C/s.

        Crossings within one sampling interval are spread evenly by assumption, so a jump of
        several degrees between two readings says how far the margin moved, not how fast it
        moves now: the rate reaches back to the change before it. None: no earlier crossing,
        or a stale one.
        """
        anchor = len(self.crossings) - 1 - self.latest_change
        if anchor < 0:
            return None
        (first_at, first_c), (last_at, last_c) = self.crossings[anchor], self.crossings[-1]
        if last_at <= first_at or at - first_at > STALE_CROSSING_S:
            return None
        return (last_c - first_c) / (last_at - first_at)

    def rate_now_c_per_s(self, at: float) -> float | None:
        """The margin's rate as far as the readings up to `at` allow, °C/s (None: not known).

        No crossing since the last one: the margin has moved less than a degree in that time,
        so once the next crossing is overdue the rate is at most a degree over the wait.
        """
        rate = self.rate_c_per_s(at)
        if rate is None:
            return None
        waited_s = at - self.crossings[-1][0]
        return rate if waited_s <= 0 else math.copysign(min(abs(rate), 1.0 / waited_s), rate)

    def estimate_c(self, at: float, reading_c: float) -> float:
        """The true margin at `at` under reading `reading_c`: on from the last crossings, within (r-1, r].

        It leaves the last crossing at the slope of the last two and bends towards the far end of
        the interval, which it never reaches: while no new crossing comes the margin is still
        inside, and ever more likely to be slowing down.
        """
        low, high = reading_c - 1.0, reading_c
        if not self.crossings:
            return reading_c - 0.5
        last_at, last_c = self.crossings[-1]
        slope = self.rate_c_per_s(at) or 0.0
        start = min(high, max(low, last_c))
        bound = low if slope < 0 else high
        room = bound - start
        if slope == 0 or room == 0:
            return start
        # An exponential with the crossing's slope at the start and `bound` as its asymptote.
        return bound - room * math.exp(-slope * (at - last_at) / room)


# Power readings carry noise of a percent or two (NVML's, and the sim's): a reading within this
# share of the limit of the power the model holds is that power, so noise alone never looks to
# the model like a job starting (it would teach the die term that power moves nothing).
POWER_BAND_RATIO = 0.05


def held_power_w(held_w: float | None, reading_w: float | None, limit_w: float | None) -> float | None:
    """The power the model uses: `held_w` until the reading leaves the noise band around it, W."""
    if reading_w is None or held_w is None:
        return reading_w
    band_w = POWER_BAND_RATIO * (limit_w if limit_w is not None else max(reading_w, held_w))
    return held_w if abs(reading_w - held_w) <= band_w else reading_w
