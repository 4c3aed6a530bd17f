"""Immutable sample model: per-GPU identity and readings in base units, and sampling health."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType


def frozen_counts(counts: Mapping[str, int] | None = None) -> Mapping[str, int]:
    """A read-only copy of a name -> count mapping, sorted by name for stable output."""
    return MappingProxyType(dict(sorted((counts or {}).items())))


class ClockEventReason(enum.IntFlag):
    """Why clocks are below their maximum; bit values are NVML's `nvmlClocksEventReason*`."""

    GPU_IDLE = 0x1
    APPLICATIONS_CLOCKS_SETTING = 0x2
    SW_POWER_CAP = 0x4
    HW_SLOWDOWN = 0x8
    SYNC_BOOST = 0x10
    SW_THERMAL_SLOWDOWN = 0x20
    HW_THERMAL_SLOWDOWN = 0x40
    HW_POWER_BRAKE_SLOWDOWN = 0x80
    DISPLAY_CLOCK_SETTING = 0x100
    BOARD_LIMIT = 0x200
    RELIABILITY = 0x400

    @property
    def word(self) -> str:
        """Short lowercase name, as used in tables, labels and JSON."""
        return REASON_WORDS[self]


REASON_WORDS: Mapping[ClockEventReason, str] = MappingProxyType(
    {
        ClockEventReason.GPU_IDLE: "idle",
        ClockEventReason.APPLICATIONS_CLOCKS_SETTING: "app_clocks",
        ClockEventReason.SW_POWER_CAP: "sw_power_cap",
        ClockEventReason.HW_SLOWDOWN: "hw_slowdown",
        ClockEventReason.SYNC_BOOST: "sync_boost",
        ClockEventReason.SW_THERMAL_SLOWDOWN: "sw_thermal_slowdown",
        ClockEventReason.HW_THERMAL_SLOWDOWN: "hw_thermal_slowdown",
        ClockEventReason.HW_POWER_BRAKE_SLOWDOWN: "hw_power_brake_slowdown",
        ClockEventReason.DISPLAY_CLOCK_SETTING: "display_clocks",
        ClockEventReason.BOARD_LIMIT: "board_limit",
        ClockEventReason.RELIABILITY: "reliability",
    }
)


# The same as plain ints: `int & IntFlag` goes through the enum machinery (20 µs a call against
# 0.7 µs on the CI machine), and the policy names the reasons of every GPU every sample.
_REASON_BITS = tuple((int(reason), word) for reason, word in REASON_WORDS.items())


def reason_words(mask: int) -> tuple[str, ...]:
    """Names of the known reason bits set in an NVML clock-event mask, lowest bit first."""
    if not mask:
        return ()
    return tuple([word for bit, word in _REASON_BITS if mask & bit])


class RecoveryAction(enum.IntEnum):
    """What the driver says must happen before the GPU is usable (`nvmlDeviceGpuRecoveryAction_t`)."""

    NONE = 0
    GPU_RESET = 1
    NODE_REBOOT = 2
    DRAIN_P2P = 3
    DRAIN_AND_RESET = 4
    RECOVER_IMEX_DOMAIN = 5
    BUS_RESET = 6
    SYSTEM_REBOOT = 7
    # A code newer than this gpuwatch knows: not NONE, so the GPU is treated as needing recovery.
    UNKNOWN = -1


class ThermalScale(enum.StrEnum):
    """How the driver states a GPU's temperature limits."""

    # Hopper and later: limits are offsets on the T.Limit scale (0 = max operating temperature).
    TLIMIT = "tlimit"
    # Older GPUs and drivers (e.g. A100): absolute temperatures in °C.
    ABSOLUTE = "absolute"
    # The driver said nothing usable; the SKU profile's data-sheet values are used.
    PROFILE = "profile"


@dataclass(frozen=True, slots=True)
class ThermalLimits:
    """A GPU's temperature limits in °C, on the scale `scale` names; None where not reported."""

    scale: ThermalScale
    shutdown_c: float | None = None
    slowdown_c: float | None = None
    max_operating_c: float | None = None
    memory_max_operating_c: float | None = None


@dataclass(frozen=True, slots=True)
class GpuIdentity:
    """What does not change while the driver is loaded: who the GPU is and its fixed limits."""

    index: int
    uuid: str
    name: str
    pci_bus_id: str | None = None
    driver_version: str | None = None
    sku: str | None = None
    thermal_limits: ThermalLimits | None = None
    power_default_limit_w: float | None = None
    power_min_limit_w: float | None = None
    power_max_limit_w: float | None = None
    sm_clock_max_hz: float | None = None
    memory_clock_max_hz: float | None = None
    memory_total_bytes: int | None = None


@dataclass(frozen=True, slots=True)
class SlowdownCounters:
    """Cumulative seconds each clock-event reason has held clocks down since driver load."""

    sw_power_cap_s: float | None = None
    sync_boost_s: float | None = None
    sw_thermal_slowdown_s: float | None = None
    hw_thermal_slowdown_s: float | None = None
    hw_power_brake_slowdown_s: float | None = None


@dataclass(frozen=True, slots=True)
class GpuReading:
    """One GPU's values at one instant, in base units; None where the GPU does not report it.

    Margins are °C below a limit (positive = headroom): `margin_c` to the max-operating limit
    (T.Limit), `slowdown_margin_c` to HW slowdown, `shutdown_margin_c` to shutdown,
    `memory_margin_c` from the memory temperature to the memory max-operating limit.
    """

    taken_at: float  # wall clock, Unix seconds
    monotonic: float  # monotonic clock, seconds; ages are measured on this
    temperature_c: float | None = None
    memory_temperature_c: float | None = None
    margin_c: float | None = None
    slowdown_margin_c: float | None = None
    shutdown_margin_c: float | None = None
    memory_margin_c: float | None = None
    power_w: float | None = None
    power_limit_w: float | None = None  # enforced limit
    energy_j: float | None = None  # cumulative since driver load
    utilization_ratio: float | None = None
    memory_utilization_ratio: float | None = None
    memory_used_bytes: int | None = None
    memory_free_bytes: int | None = None
    sm_clock_hz: float | None = None
    memory_clock_hz: float | None = None
    clock_event_reasons: int | None = None  # ClockEventReason bitmask
    slowdown_counters: SlowdownCounters = field(default_factory=SlowdownCounters)
    pstate: int | None = None
    ecc_corrected_volatile: int | None = None
    ecc_uncorrected_volatile: int | None = None
    pcie_replay_count: int | None = None
    recovery_action: RecoveryAction | None = None

    def has_reason(self, reason: ClockEventReason) -> bool:
        """True when the reading reports `reason` active; False when inactive or unknown."""
        return self.clock_event_reasons is not None and bool(self.clock_event_reasons & reason)


class GpuHealth(enum.StrEnum):
    """Whether the source could read a GPU this round."""

    OK = "ok"
    # NVML_ERROR_GPU_IS_LOST: fell off the bus; only a reset or reboot brings it back.
    LOST = "lost"
    # NVML_ERROR_RESET_REQUIRED, or a recovery action other than none.
    RESET_REQUIRED = "reset_required"
    # No reading this round for another reason (library gone, call timed out).
    UNAVAILABLE = "unavailable"


@dataclass(frozen=True, slots=True)
class GpuSample:
    """One GPU in one snapshot: identity, its reading if any, and what went wrong if anything."""

    identity: GpuIdentity
    reading: GpuReading | None
    health: GpuHealth = GpuHealth.OK
    error: str | None = None  # one sentence, for people
    xid_errors: Mapping[str, int] = field(default_factory=frozen_counts)  # XID -> count
    last_xid: int | None = None


@dataclass(frozen=True, slots=True)
class SampleHealth:
    """How sampling is going, kept apart from the data so a scrape can tell old from new."""

    attempts: int = 0
    failures: Mapping[str, int] = field(default_factory=frozen_counts)  # by NVML error name
    dropped_values: Mapping[str, int] = field(default_factory=frozen_counts)  # by field name
    last_success: float | None = None  # wall clock, Unix seconds
    last_success_monotonic: float | None = None
    duration_s: float | None = None  # how long the last sample took
    source_error: str | None = None  # one sentence when the whole source is down


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Everything the sampler knew at one instant; never mutated after it is published."""

    sequence: int
    taken_at: float  # wall clock, Unix seconds
    monotonic: float
    source: str  # the --source spec it came from, e.g. "nvml" or "sim:8xH100"
    gpus: tuple[GpuSample, ...]
    health: SampleHealth
    driver_version: str | None = None

    def age_s(self, now_monotonic: float) -> float | None:
        """Seconds since the last successful sample, or None if there never was one."""
        if self.health.last_success_monotonic is None:
            return None
        return max(0.0, now_monotonic - self.health.last_success_monotonic)
