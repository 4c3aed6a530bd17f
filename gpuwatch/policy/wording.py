"""The one sentence people read with each decision: the reason codes, in words, with the figures."""

from __future__ import annotations

import math

from gpuwatch.policy import reasons
from gpuwatch.policy.config import PolicyConfig
from gpuwatch.policy.decision import PriorityClass, ThermalState
from gpuwatch.policy.slots import Headroom

EFFECTS = {
    ThermalState.OK: "admitting every class",
    ThermalState.ELEVATED: "shedding sheddable work",
    ThermalState.HOT: "admitting only critical work",
    ThermalState.CRITICAL: "admitting nothing",
    ThermalState.FAILED: "out of service",
}


def effect(state: ThermalState, *, fail_open: bool) -> str:
    """What `state` does to new work, in words."""
    if state is ThermalState.UNKNOWN:
        return (
            "failing open: admitting every class" if fail_open else "admitting nothing until it is read again"
        )
    return EFFECTS[state]


def thermal_clause(code: str, headroom: Headroom, config: PolicyConfig) -> str:
    """One thermal reason in words, with its figures ("one more job would take the margin to 2.1 °C ...")."""
    readings = headroom.outlook.learned.readings
    margin = readings.margin_c
    memory = readings.reading.memory_margin_c if readings.reading is not None else None
    if code == reasons.WITHIN_LIMITS:
        capacity = headroom.capacity
        room = "/".join(str(capacity.of(cls)) for cls in PriorityClass)
        return f"margin {margin:g} °C; room for {room} more critical/default/sheddable jobs"
    if code in (reasons.NO_SHEDDABLE_SLOT, reasons.NO_DEFAULT_SLOT):
        priority = PriorityClass.SHEDDABLE if code == reasons.NO_SHEDDABLE_SLOT else PriorityClass.DEFAULT
        lowest = headroom.lowest_with_one_more_c(priority)
        # Hundredths where tenths would read as the guard itself ("3.0 °C, under the guard of 3").
        to = "?" if lowest is None else f"{math.floor(lowest * 100) / 100:.2f}"
        clause = (
            f"one more job would take the margin to {to} °C within {config.horizon_s:g} s, "
            f"under the {priority} guard of {config.guard_c(priority):g} °C"
        )
        if headroom.uncertain and code == reasons.NO_DEFAULT_SLOT:
            error_c = headroom.outlook.forecast.error_c
            clause += (
                f", counting {error_c[-1]:.1f} °C for its forecast's recent errors: held back by its "
                "own uncertainty, not by heat"
            )
        return clause
    return {
        reasons.SW_THERMAL_SLOWDOWN: "the driver is slowing its clocks for heat",
        reasons.MARGIN_EXHAUSTED: f"margin {_figure(margin)} °C: at the max-operating limit",
        reasons.HW_THERMAL_SLOWDOWN: "hardware thermal slowdown is active",
        reasons.MEMORY_MARGIN_EXHAUSTED: f"memory margin {_figure(memory)} °C: HBM at its limit",
    }[code]


def hold_clause(state: ThermalState, remaining_s: float) -> str:
    """Why the shown state is above what the slots say."""
    return f"shown {state} {remaining_s:.0f} s more while the cooler state holds"


def failed_clause(codes: tuple[str, ...], error: str | None, last_xid: int | None) -> str:
    """Why a GPU is out of service, in words."""
    if error:
        return error.rstrip(".")
    words = {
        reasons.GPU_LOST: "it has fallen off the bus",
        reasons.RESET_REQUIRED: "it needs a reset",
        reasons.RECOVERY_ACTION: "the driver asks for a recovery action",
        reasons.CRITICAL_XID: f"critical XID {last_xid if last_xid is not None else 'error'} reported",
    }
    return "; ".join(words[code] for code in codes)


def unknown_clause(code: str, age_s: float | None, stale_after_s: float) -> str:
    """Why a GPU's state is unknown, in words."""
    if code == reasons.NO_MARGIN:
        return "its reading has no thermal margin"
    if code == reasons.SOURCE_UNAVAILABLE:
        last = "" if age_s is None else f"; last reading {age_s:.1f} s old"
        return f"the source could not read it this round{last}"
    if code == reasons.NO_READING or age_s is None:
        return "no reading"
    return f"no fresh reading for {age_s:.1f} s (stale after {stale_after_s:g} s)"


def gpu_sentence(index: int, state: ThermalState, clause: str, *, fail_open: bool) -> str:
    """The sentence for one GPU out of service or unknown: state, why, and what it does to new work."""
    return f"GPU {index} is {state}: {clause}; {effect(state, fail_open=fail_open)}."


def admitting(classes: frozenset[PriorityClass]) -> str:
    """What a GPU with slots for `classes` does to new work, in words."""
    if len(classes) == len(PriorityClass):
        return "admitting every class"
    if not classes:
        return "admitting nothing"
    named = [cls.value for cls in PriorityClass if cls in classes]
    return f"admitting only {' and '.join(named)} work"


def _figure(value: float | None) -> str:
    return "?" if value is None else f"{value:.0f}"
