"""The readings stage: what one GPU's sample says at the moment it is judged, before any model.

It sorts a sample into FAILED (lost, needs a reset, a recovery action, a new critical XID within
`failed_xid_hold_s`), UNKNOWN (no fresh reading with a margin: none, older than the staleness
limit, or the source could not read it this round), or a fresh reading to learn from. NaN and
infinite margins and powers are dropped here, as a source drops what it cannot read, and said.
The stage remembers only the critical XID counts it has seen (`XidMemory`).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from gpuwatch.policy import reasons
from gpuwatch.policy.config import PolicyConfig
from gpuwatch.policy.durations import NO_DURATIONS, JobDurations
from gpuwatch.sources.model import (
    ClockEventReason,
    GpuHealth,
    GpuIdentity,
    GpuReading,
    GpuSample,
    RecoveryAction,
)


@dataclass(frozen=True, slots=True)
class Moment:
    """The monotonic instant a snapshot is judged at, with the settings in force."""

    now: float
    config: PolicyConfig
    interval_s: float
    durations: JobDurations = NO_DURATIONS  # the node's job durations: plans, what they are learned from

    @property
    def stale_after_s(self) -> float:
        """Age past which a reading is stale, s."""
        return self.config.stale_after_s(self.interval_s)


@dataclass(frozen=True, slots=True)
class XidMemory:
    """The critical XID counts seen so far, by code, and until when the last new one holds the GPU out."""

    counts: tuple[tuple[str, int], ...] = ()
    failed_until: float | None = None


@dataclass(frozen=True, slots=True)
class Readings:
    """The readings stage's output for one GPU."""

    moment: Moment
    sample: GpuSample  # non-finite values dropped
    failures: tuple[str, ...]  # reason codes that put the GPU out of service (FAILED); empty: none
    unknown: str | None  # why there is no fresh reading with a margin (UNKNOWN); None: there is
    not_finite: bool  # a NaN or infinite value was dropped from this sample

    @property
    def identity(self) -> GpuIdentity:
        """Which GPU."""
        return self.sample.identity

    @property
    def reading(self) -> GpuReading | None:
        """The reading, non-finite values dropped; None: none."""
        return self.sample.reading

    @property
    def margin_c(self) -> float | None:
        """The reading's thermal margin, °C."""
        return None if self.sample.reading is None else self.sample.reading.margin_c

    @property
    def sw_thermal(self) -> bool:
        """SW thermal slowdown active."""
        reading = self.sample.reading
        return reading is not None and reading.has_reason(ClockEventReason.SW_THERMAL_SLOWDOWN)

    @property
    def hw_thermal(self) -> bool:
        """HW thermal slowdown active; a HW slowdown with no stated cause counts too (it may be heat)."""
        reading = self.sample.reading
        return reading is not None and hw_thermal(reading)

    @property
    def judged(self) -> bool:
        """Neither FAILED nor UNKNOWN: a fresh reading with a margin decides."""
        return not self.failures and self.unknown is None


def hw_thermal(reading: GpuReading) -> bool:
    """HW thermal slowdown active; a HW slowdown with no stated cause counts too (it may be heat)."""
    if reading.has_reason(ClockEventReason.HW_THERMAL_SLOWDOWN):
        return True
    return reading.has_reason(ClockEventReason.HW_SLOWDOWN) and not reading.has_reason(
        ClockEventReason.HW_POWER_BRAKE_SLOWDOWN
    )


def read(sample: GpuSample, xids: XidMemory, moment: Moment) -> tuple[Readings, XidMemory]:
    """The sample sorted into failed, unknown or fresh; the XID memory brought up to date.

    An XID is new when its count is above what this GPU showed at the previous snapshot.
    """
    failures, xids = _failures(sample, xids, moment)
    sample, not_finite = _finite(sample)
    return Readings(moment, sample, failures, _unknown(sample, moment), not_finite), xids


def _failures(sample: GpuSample, xids: XidMemory, moment: Moment) -> tuple[tuple[str, ...], XidMemory]:
    config = moment.config
    counts = tuple(
        (code, count)
        for code, count in sample.xid_errors.items()
        if code.isdigit() and int(code) in config.critical_xids
    )
    seen = dict(xids.counts)
    failed_until = xids.failed_until
    if any(count > seen.get(code, 0) for code, count in counts):
        failed_until = moment.now + config.failed_xid_hold_s
    action = sample.reading.recovery_action if sample.reading is not None else None
    checks = (
        (sample.health is GpuHealth.LOST, reasons.GPU_LOST),
        (sample.health is GpuHealth.RESET_REQUIRED, reasons.RESET_REQUIRED),
        (action is not None and action is not RecoveryAction.NONE, reasons.RECOVERY_ACTION),
        (failed_until is not None and moment.now < failed_until, reasons.CRITICAL_XID),
    )
    return tuple(code for failing, code in checks if failing), XidMemory(counts, failed_until)


def _finite(sample: GpuSample) -> tuple[GpuSample, bool]:
    """The sample with a NaN or infinite margin or power left out, as a source drops what it cannot read."""
    reading = sample.reading
    if reading is None:
        return sample, False
    bad = {
        name: None
        for name in ("margin_c", "power_w", "power_limit_w")
        if (value := getattr(reading, name)) is not None and not math.isfinite(value)
    }
    if not bad:
        return sample, False
    return dataclasses.replace(sample, reading=dataclasses.replace(reading, **bad)), True  # type: ignore[arg-type]


def _unknown(sample: GpuSample, moment: Moment) -> str | None:
    """Why the GPU has no fresh reading with a margin now, else None.

    A GPU the source could not read this round (a hung or failing call) is not known now, even
    though its last reading is younger than the staleness limit: say so at once.
    """
    reading = sample.reading
    if reading is None:
        return reasons.NO_READING
    if sample.health is GpuHealth.UNAVAILABLE:
        return reasons.SOURCE_UNAVAILABLE
    if reading.margin_c is None:
        return reasons.NO_MARGIN
    if moment.now - reading.monotonic > moment.stale_after_s:
        return reasons.STALE_SAMPLE
    return None
