"""Whole-degree margin readings turned back into an estimate of the smooth margin the GPU really has.

NVML gives temperatures (and T.Limit margins) in whole degrees: a reading r says only that the
true margin lies in (r - 1, r]. But the moment a reading changes is exact information: the true
margin was then at the boundary between the two readings (r_old to r_new = r_old - 1: it
crossed r_new; upwards, it crossed r_old). Those crossings are noise-free points on the true
curve, good to half a sampling interval in time. Between them the estimate runs on along the
line through the last two crossings, held inside the interval the current reading allows.

A sensor that reads with noise breaks the premise: the reading flickers between two degrees
while the margin holds still. A flicker is a reading back at the one before the last, a degree
away, at constant power; a smooth margin read every second all but never does that (it would
have to turn within a hair of a boundary). Once they come often (FLICKER_NOISY, a count that
decays by FLICKER_DECAY a reading), the sensor is taken to be noisy for good: the readings are
averaged in bins (smoothing.py), the bins stand in for the crossings, the estimate is the line
through the latest of them (learning.py places it on the trajectory through the bins while the
readings agree with it), and it may leave the reading's degree by the noise.

A reading that is not a whole number (a replayed CSV with decimals) is taken as it stands.
The estimate is what the model learns from and forecasts from; states and thresholds keep the
reading itself (DESIGN §2: the margin as the driver defines it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from gpuwatch.policy.model.smoothing import Smoother

# A crossing older than this many seconds no longer sets the slope the estimate runs on with:
# a margin that has held one reading for long is treated as flat within it.
STALE_CROSSING_S = 600.0
KEEP_CROSSINGS = 16  # the trajectory fit (trajectory.py) reads this many
# A flicker adds 1 to a count that decays by this factor a reading: about the last 50 readings'.
FLICKER_DECAY = 0.98
# Recent flickers that make a sensor noisy: one may be a margin turning at a boundary; three
# within 13 readings, or one reading in twenty for minutes (0.05 / (1 - 0.98)), are not.
FLICKER_NOISY = 2.5


@dataclass(frozen=True, slots=True)
class Dequantiser:
    """The last reading and the last boundary crossings, (time s, margin °C), oldest first."""

    last_at: float | None = None
    last_reading_c: float | None = None
    crossings: tuple[tuple[float, float], ...] = ()
    latest_change: int = 0  # crossings the latest changing reading added
    before_last_c: float | None = None  # the reading before the last: a flicker goes back to it
    flickers: float = 0.0  # recent flickers, decaying
    smoother: Smoother | None = None  # the readings in bins, from the first flicker on
    noisy: bool = False  # flickers came often: the estimate comes from the bins

    def observe(self, at: float, reading_c: float, *, stepped: bool = False) -> tuple[Dequantiser, float]:
        """The dequantiser after one reading, and its estimate of the true margin at `at`, °C.

        `stepped`: power stepped since the last reading. The die jumps within a fraction of a
        second, so the degrees crossed since say nothing of when: the margin is anywhere in
        the reading's degree (its middle is the estimate), and the drift is read afresh.
        """
        whole = reading_c == math.floor(reading_c)
        if not whole or self.last_at is None or self.last_reading_c is None:
            return Dequantiser(at, reading_c, ()), reading_c - 0.5 if whole else reading_c
        flickers = self.flickers * FLICKER_DECAY if self.flickers else 0.0
        if reading_c == self.before_last_c and not stepped and abs(reading_c - self.last_reading_c) == 1.0:
            flickers += 1.0
        smoother = self.smoother
        if smoother is not None or flickers >= 1.0:
            smoother = (smoother or Smoother()).observe(at, reading_c, stepped=stepped)
            if self.noisy or flickers >= FLICKER_NOISY:
                return self._smoothed(at, reading_c, flickers, smoother)
        if stepped:
            restart = Dequantiser(at, reading_c, (), 0, None, flickers, smoother)
            return restart, reading_c - 0.5
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
        state = Dequantiser(at, reading_c, crossings, latest_change, self.last_reading_c, flickers, smoother)
        return state, state.estimate_c(at, reading_c)

    def _smoothed(
        self, at: float, reading_c: float, flickers: float, smoother: Smoother
    ) -> tuple[Dequantiser, float]:
        """A noisy sensor's state: the bins as the crossings, the estimate from the line through them."""
        crossings = smoother.points()
        state = Dequantiser(at, reading_c, crossings, 0, self.last_reading_c, flickers, smoother, noisy=True)
        found = smoother.estimate(at)
        if found is None:
            return state, reading_c - 0.5
        band_c = smoother.noise_band_c
        return state, min(reading_c + band_c, max(reading_c - 1.0 - band_c, found[0]))

    @property
    def noise_band_c(self) -> float:
        """How far the true margin may lie outside the reading's degree, °C: 0 unless noisy."""
        if not self.noisy or self.smoother is None:
            return 0.0
        return self.smoother.noise_band_c

    @property
    def point_sds(self) -> tuple[float, ...] | None:
        """Each crossing's error beyond its timing, °C: the bins' when noisy; None: exact crossings."""
        if not self.noisy or self.smoother is None:
            return None
        return self.smoother.point_sds()

    def rate_c_per_s(self, at: float) -> float | None:
        """The margin's rate from the last crossing an earlier reading showed to the last one, °C/s.

        Crossings within one sampling interval are spread evenly by assumption, so a jump of
        several degrees between two readings says how far the margin moved, not how fast it
        moves now: the rate reaches back to the change before it. None: no earlier crossing,
        or a stale one. A noisy sensor's: the line's through the latest bins.
        """
        if self.noisy and self.smoother is not None and self.last_at is not None:
            found = self.smoother.estimate(self.last_at)
            return None if found is None else found[1]
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
        if rate is None or self.noisy:
            return rate
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
