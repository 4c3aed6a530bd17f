"""Per-GPU thermal state machine: escalate at once, de-escalate one level at a time after a dwell.

The ladder is OK < ELEVATED < HOT < CRITICAL. Each fresh reading is an `Observation`. The
highest level whose enter condition holds is taken at once, however many levels up. Going down,
a level is left only when its leave condition (DESIGN §2, plus: none of its own enter conditions
holds) has held without a break for its dwell, counted from the later of entering the level and
the condition becoming true; then the GPU steps down one level, and the next level's dwell
starts afresh. The SW power cap is not an input: drawing the limit is normal at full load.
FAILED and UNKNOWN are not on the ladder; the caller lays them over it (see gpu.py).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from gpuwatch.policy import reasons
from gpuwatch.policy.config import PolicyConfig
from gpuwatch.policy.decision import ThermalState

LADDER = (ThermalState.OK, ThermalState.ELEVATED, ThermalState.HOT, ThermalState.CRITICAL)


@dataclass(frozen=True, slots=True)
class Observation:
    """What the state machine judges one fresh reading by; margins °C, times s."""

    margin_c: float
    memory_margin_c: float | None = None
    predicted_margin_c: float | None = None  # after the horizon with one more job; None: unknown
    time_to_slowdown_s: float | None = None  # None: not heading there, or unknown
    sw_thermal: bool = False  # SW thermal slowdown active
    hw_thermal: bool = False  # HW thermal slowdown active


@dataclass(frozen=True, slots=True)
class Ladder:
    """Where a GPU stands on the ladder, since when, and since when it has met the leave condition."""

    level: ThermalState = ThermalState.OK
    since: float = 0.0  # monotonic s
    leave_held_since: float | None = None  # None: the leave condition does not hold now


def enter_reasons(level: ThermalState, obs: Observation, config: PolicyConfig) -> tuple[str, ...]:
    """Reason codes of `level`'s enter conditions that hold (empty: it is not entered)."""
    c = config
    if level is ThermalState.CRITICAL:
        return _held(
            (obs.margin_c <= c.critical_enter_margin_c, reasons.MARGIN_EXHAUSTED),
            (obs.hw_thermal, reasons.HW_THERMAL_SLOWDOWN),
            (
                _at_most(obs.memory_margin_c, c.critical_enter_memory_margin_c),
                reasons.MEMORY_MARGIN_EXHAUSTED,
            ),
        )
    if level is ThermalState.HOT:
        return _held(
            (obs.margin_c < c.hot_enter_margin_c, reasons.MARGIN_BELOW_HOT),
            (_below(obs.time_to_slowdown_s, c.hot_enter_time_to_slowdown_s), reasons.TIME_TO_SLOWDOWN_SHORT),
            (obs.sw_thermal, reasons.SW_THERMAL_SLOWDOWN),
        )
    if level is ThermalState.ELEVATED:
        return _held(
            (obs.margin_c < c.elevated_enter_margin_c, reasons.MARGIN_BELOW_ELEVATED),
            (
                _below(obs.predicted_margin_c, c.elevated_enter_predicted_margin_c),
                reasons.PREDICTED_MARGIN_BELOW_ELEVATED,
            ),
        )
    return ()


def leave_blockers(level: ThermalState, obs: Observation, config: PolicyConfig) -> tuple[str, ...]:
    """The parts of `level`'s leave thresholds not met yet, in words (empty: all met)."""
    c = config
    wanted: tuple[tuple[bool, str], ...] = ()
    if level is ThermalState.ELEVATED:
        wanted = (
            (obs.margin_c >= c.elevated_leave_margin_c, f"margin back to {c.elevated_leave_margin_c:g} °C"),
            (
                _at_least(obs.predicted_margin_c, c.elevated_leave_predicted_margin_c),
                f"predicted margin back to {c.elevated_leave_predicted_margin_c:g} °C",
            ),
        )
    elif level is ThermalState.HOT:
        wanted = ((obs.margin_c >= c.hot_leave_margin_c, f"margin back to {c.hot_leave_margin_c:g} °C"),)
    elif level is ThermalState.CRITICAL:
        wanted = (
            (obs.margin_c >= c.critical_leave_margin_c, f"margin back to {c.critical_leave_margin_c:g} °C"),
            (not obs.sw_thermal, "thermal slowdown over"),
        )
    return tuple(words for met, words in wanted if not met)


def leave_holds(level: ThermalState, obs: Observation, config: PolicyConfig) -> bool:
    """Whether `level` may be left now: its leave thresholds met and none of its enter conditions."""
    if level is ThermalState.OK:
        return False
    return not leave_blockers(level, obs, config) and not enter_reasons(level, obs, config)


def target_level(obs: Observation, config: PolicyConfig) -> ThermalState:
    """The highest level whose enter condition holds (OK if none)."""
    return next((level for level in reversed(LADDER) if enter_reasons(level, obs, config)), ThermalState.OK)


def step(ladder: Ladder, obs: Observation, now: float, config: PolicyConfig) -> Ladder:
    """The ladder after one fresh reading at monotonic time `now`."""
    target = target_level(obs, config)
    if target.severity > ladder.level.severity:
        return Ladder(target, now, None)
    if not leave_holds(ladder.level, obs, config):
        return suspend(ladder)
    held_since = now if ladder.leave_held_since is None else ladder.leave_held_since
    if now - held_since < dwell_s(ladder.level, config):
        return Ladder(ladder.level, ladder.since, held_since)
    lower = LADDER[LADDER.index(ladder.level) - 1]
    return Ladder(lower, now, now if leave_holds(lower, obs, config) else None)


def suspend(ladder: Ladder) -> Ladder:
    """The ladder through a spell without fresh readings: no dwell runs on evidence nobody saw."""
    return replace(ladder, leave_held_since=None) if ladder.leave_held_since is not None else ladder


def dwell_s(level: ThermalState, config: PolicyConfig) -> float:
    """How long `level`'s leave condition must hold before stepping down, s."""
    return {
        ThermalState.ELEVATED: config.elevated_dwell_s,
        ThermalState.HOT: config.hot_dwell_s,
        ThermalState.CRITICAL: config.critical_dwell_s,
    }.get(level, 0.0)


def leave_margin_c(level: ThermalState, config: PolicyConfig) -> float:
    """The margin `level`'s leave condition asks for, °C."""
    return {
        ThermalState.ELEVATED: config.elevated_leave_margin_c,
        ThermalState.HOT: config.hot_leave_margin_c,
        ThermalState.CRITICAL: config.critical_leave_margin_c,
    }.get(level, config.elevated_leave_margin_c)


def _held(*checks: tuple[bool, str]) -> tuple[str, ...]:
    return tuple(code for holds, code in checks if holds)


def _below(value: float | None, threshold: float) -> bool:
    return value is not None and value < threshold


def _at_most(value: float | None, threshold: float) -> bool:
    return value is not None and value <= threshold


def _at_least(value: float | None, threshold: float) -> bool:
    return value is not None and value >= threshold
