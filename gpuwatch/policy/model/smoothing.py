"""A noisy sensor's readings averaged in bins: points on the true margin where crossings are not.

A sensor that reads with noise (a few tenths of a degree before NVML's whole degrees, as one
beside the hot spot does) flickers between two readings while the margin holds still, so the
moments the reading changes are no longer crossings of a boundary (dequantise.py). The noise
dithers the rounding instead: a reading r says the margin is in (r - 1, r], and over a few
readings r - 0.5 is the margin on average. So the readings of BIN_S seconds are averaged into
a point (mean time, mean reading - 0.5) with its own standard error, and the trajectory is
fitted through those points as it is through crossings. Old bins are merged with their
neighbours as they age (a bin may span MERGE_AGE_SHARE of its age), so KEEP_BINS points reach
back minutes on a slow climb and stay fine near now.

Measured on the lagged-sensor plants of bench/predict.py (share of the predictions within ±25 %
25-35 s before the crossing; the same plants without the noise: 86 %):
- the crossings taken as they come: 28 % (every flicker a crossing, and one reading a degree
  low says "at the limit" half a minute early);
- a line through the last 20 s of readings: 44 % (its slope as uncertain as a slow climb);
- these bins, the margin read off the trajectory through them (learning.py): 57 %, median
  error 19 % (54-57 % as the details vary: the bins that read one value left out, or the
  estimate from the line through the last bins alone);
- the bins debiased for the rounding (a margin a tenth of a degree above a boundary, read with
  0.1 °C of noise, reads the upper value four times in five, so the mean says 0.3 °C), with the
  noise found by a profile likelihood and each bin weighted by its Fisher information: 52-56 %,
  at twice the cost; the exponential fitted to every reading by its likelihood (ordered probit):
  49 %, at six times the cost. Neither was kept.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

BIN_S = 5.0  # readings averaged into one point, s
KEEP_BINS = 24
# A bin may be merged with the next once their joint span is under this share of its age.
MERGE_AGE_SHARE = 0.25
# A bin's margin is never taken as better than this, °C: the dither leaves a bias of about
# exp(-2 pi^2 sd^2)/pi, 0.05 °C at a reading noise of 0.3 °C.
BIN_FLOOR_C = 0.05
LINE_BINS = 4  # the estimate now: a line through this many latest bins (the open one included)
NOISE_BAND_SPREADS = 2.0  # how far the margin may lie outside the reading's degree, in spreads


@dataclass(frozen=True, slots=True)
class Bin:
    """Readings summed over one stretch of time: count, sums of time, reading and reading squared."""

    first_at: float
    last_at: float
    count: int
    sum_at: float
    sum_c: float
    sum_c2: float

    @classmethod
    def of(cls, at: float, reading_c: float) -> Bin:
        """A bin of one reading."""
        return cls(at, at, 1, at, reading_c, reading_c * reading_c)

    def add(self, other: Bin) -> Bin:
        """This bin and `other` (later) as one."""
        return Bin(
            self.first_at,
            other.last_at,
            self.count + other.count,
            self.sum_at + other.sum_at,
            self.sum_c + other.sum_c,
            self.sum_c2 + other.sum_c2,
        )

    @property
    def at(self) -> float:
        """The readings' mean time, s."""
        return self.sum_at / self.count

    @property
    def margin_c(self) -> float:
        """The margin the readings average to: their mean less half a degree, °C."""
        return self.sum_c / self.count - 0.5

    @property
    def squares_c2(self) -> float:
        """The readings' sum of squares about their mean, °C²."""
        return max(0.0, self.sum_c2 - self.sum_c * self.sum_c / self.count)


@dataclass(frozen=True, slots=True)
class Smoother:
    """Closed bins, oldest first, the one filling now, and when power last stepped."""

    bins: tuple[Bin, ...] = ()
    open_bin: Bin | None = None
    since_at: float = -math.inf  # the estimate reads only bins begun after this, s

    def observe(self, at: float, reading_c: float, *, stepped: bool = False) -> Smoother:
        """The smoother after a reading at `at`; `stepped`: power stepped since the last one.

        A step moves the die within a second, so the bin filling then closes and the estimate
        starts afresh from the step; the closed bins stay for the trajectory, which reads only
        the points after the last step has settled.
        """
        reading = Bin.of(at, reading_c)
        since_at = at if stepped else self.since_at
        if self.open_bin is None:
            return Smoother(self.bins, reading, since_at)
        if at - self.open_bin.first_at < BIN_S and not stepped:
            return Smoother(self.bins, self.open_bin.add(reading), since_at)
        return Smoother(_merged((*self.bins, self.open_bin), at), reading, since_at)

    @property
    def spread_c(self) -> float:
        """The readings' spread within a bin, pooled over the bins (the rounding included), °C; 0: not known.

        Pooled, not a median: a margin mid-degree reads one value for bins on end, which says
        nothing of the noise that shows once it nears a boundary.
        """
        freedom = sum([b.count - 1 for b in self.bins])
        if freedom <= 0:
            return 0.0
        return math.sqrt(sum([b.squares_c2 for b in self.bins]) / freedom)

    @property
    def noise_band_c(self) -> float:
        """How far the true margin may lie outside the reading's degree, °C."""
        return NOISE_BAND_SPREADS * self.spread_c

    def points(self) -> tuple[tuple[float, float], ...]:
        """(time s, margin °C) of every closed bin, oldest first: what the trajectory is fitted through."""
        return tuple([(b.at, b.margin_c) for b in self.bins])

    def point_sds(self) -> tuple[float, ...]:
        """The standard error of each of `points`, °C: the pooled spread over the root of its readings."""
        spread = self.spread_c
        return tuple([max(BIN_FLOOR_C, spread / math.sqrt(b.count)) for b in self.bins])

    def estimate(self, at: float) -> tuple[float, float | None] | None:
        """(margin °C at `at`, rate °C/s) of the line through the latest bins since the step.

        Each bin is weighted by its readings. One bin so far: its margin, and no rate; none: None.
        """
        latest = [
            b
            for b in (*self.bins[-(LINE_BINS - 1) :], *([self.open_bin] if self.open_bin else []))
            if b.first_at >= self.since_at
        ]
        if not latest:
            return None
        total = sum([b.count for b in latest])
        mean_at = sum([b.count * b.at for b in latest]) / total
        mean_c = sum([b.count * b.margin_c for b in latest]) / total
        sxx = sum([b.count * (b.at - mean_at) ** 2 for b in latest])
        if sxx <= 0:
            return mean_c, None
        rate = sum([b.count * (b.at - mean_at) * (b.margin_c - mean_c) for b in latest]) / sxx
        return mean_c + rate * (at - mean_at), rate


def _merged(bins: tuple[Bin, ...], now: float) -> tuple[Bin, ...]:
    """`bins` with neighbours merged where they are fine for their age, at most KEEP_BINS of them."""
    out = list(bins)
    while len(out) > KEEP_BINS:
        # The oldest pair whose joint span is under MERGE_AGE_SHARE of its age; none: the oldest goes.
        index = next(
            (
                i
                for i in range(len(out) - 1)
                if out[i + 1].last_at - out[i].first_at <= MERGE_AGE_SHARE * (now - out[i + 1].last_at)
            ),
            None,
        )
        if index is None:
            del out[0]
        else:
            out[index : index + 2] = [out[index].add(out[index + 1])]
    return tuple(out)
