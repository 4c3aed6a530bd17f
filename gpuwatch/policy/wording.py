"""The one sentence people read with each decision: the reason codes, in words, with the figures."""

from __future__ import annotations

from gpuwatch.policy import reasons
from gpuwatch.policy.config import PolicyConfig
from gpuwatch.policy.decision import ThermalState
from gpuwatch.policy.states import LADDER, Ladder, Observation, dwell_s, enter_reasons, leave_blockers

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
            "failing open: admitting every class"
            if fail_open
            else "treated as hot: admitting only critical work"
        )
    return EFFECTS[state]


def explain_ladder(
    ladder: Ladder, obs: Observation, now: float, config: PolicyConfig
) -> tuple[tuple[str, ...], str]:
    """Reason codes for a GPU's ladder level, and the clause that says them ("margin 6 °C is below 8 °C")."""
    level = ladder.level
    if level is ThermalState.OK:
        return (reasons.WITHIN_LIMITS,), f"margin {obs.margin_c:g} °C is within limits"
    codes = enter_reasons(level, obs, config)
    if codes:
        return codes, "; ".join(phrase(code, obs, config) for code in codes)
    # Held by hysteresis or dwell; lower levels' active enter reasons say what is still warm.
    lower = tuple(
        code for below in LADDER[: LADDER.index(level)] for code in enter_reasons(below, obs, config)
    )
    if ladder.leave_held_since is None:
        wanted = " and ".join(leave_blockers(level, obs, config)) or "its leave conditions"
        return (reasons.HYSTERESIS, *lower), f"stays {level} until {wanted} (margin now {obs.margin_c:g} °C)"
    remaining_s = max(0.0, dwell_s(level, config) - (now - ladder.leave_held_since))
    return (reasons.DWELL, *lower), f"cooling down, stays {level} {remaining_s:.0f} s more"


def phrase(code: str, obs: Observation, config: PolicyConfig) -> str:
    """One thermal enter reason in words, with its figures."""
    c, margin, predicted = config, obs.margin_c, _figure(obs.predicted_margin_c)
    return {
        reasons.MARGIN_BELOW_ELEVATED: f"margin {margin:g} °C is below {c.elevated_enter_margin_c:g} °C",
        reasons.PREDICTED_MARGIN_BELOW_ELEVATED: (
            f"margin would fall to {predicted} °C within {c.horizon_s:g} s with one more job"
            f" (limit {c.elevated_enter_predicted_margin_c:g} °C)"
        ),
        reasons.MARGIN_BELOW_HOT: f"margin {obs.margin_c:g} °C is below {c.hot_enter_margin_c:g} °C",
        reasons.TIME_TO_SLOWDOWN_SHORT: f"thermal slowdown predicted in {_figure(obs.time_to_slowdown_s)} s",
        reasons.SW_THERMAL_SLOWDOWN: "the driver is slowing its clocks for heat",
        reasons.MARGIN_EXHAUSTED: f"margin {obs.margin_c:g} °C: at the max-operating limit",
        reasons.HW_THERMAL_SLOWDOWN: "hardware thermal slowdown is active",
        reasons.MEMORY_MARGIN_EXHAUSTED: f"memory margin {_figure(obs.memory_margin_c)} °C: HBM at its limit",
    }[code]


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
    """The sentence for one GPU: state, why, and what it does to new work."""
    return f"GPU {index} is {state}: {clause}; {effect(state, fail_open=fail_open)}."


def _figure(value: float | None) -> str:
    return "?" if value is None else f"{value:.0f}"
