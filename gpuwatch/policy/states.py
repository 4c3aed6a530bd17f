"""The states stage: a GPU's state from its slots (DESIGN §2), and the shown state with its hold.

The state says which classes the GPU's heat leaves room for, read off its capacity (its slots
without the leased jobs its power does not show yet: a GPU whose slots are all taken by
admitted jobs is busy, not hot):

    CRITICAL   margin <= 0, HW thermal slowdown, or memory margin <= 0
    HOT        no `default` slot (SW thermal slowdown leaves none either)
    ELEVATED   no `sheddable` slot
    OK         every class has one

FAILED and UNKNOWN come from the readings stage. Admission never waits on any of this: it reads
the slots. What logs, alerts, sd_notify, the agent and `check` show is the *shown* state, which
escalates at once and steps down only after a lower state has held for `state_hold_s`: then to
the highest state seen during that hold.
"""

from __future__ import annotations

from dataclasses import dataclass

from gpuwatch.policy import reasons
from gpuwatch.policy.decision import ThermalState
from gpuwatch.policy.slots import Headroom


@dataclass(frozen=True, slots=True)
class Shown:
    """The state shown, since when, and the highest lower state seen since it began to hold."""

    state: ThermalState | None = None  # None: nothing shown yet
    since: float = 0.0
    lower: ThermalState | None = None
    lower_since: float = 0.0


@dataclass(frozen=True, slots=True)
class Standing:
    """The states stage's output for one GPU."""

    headroom: Headroom
    state: ThermalState  # what the slots (or the readings) say now
    reasons: tuple[str, ...]  # codes for `state`
    shown: Shown

    @property
    def held(self) -> bool:
        """Whether the shown state is above the state now (its hold has not run out)."""
        return self.shown.state is not None and self.shown.state.severity > self.state.severity


_OVERLAYS = (ThermalState.UNKNOWN, ThermalState.FAILED)


def standing(headroom: Headroom, shown: Shown) -> Standing:
    """The state now, its reason codes, and the shown state after this decision."""
    readings = headroom.outlook.learned.readings
    moment = readings.moment
    if readings.failures:
        state, codes = ThermalState.FAILED, readings.failures
    elif readings.unknown is not None:
        state, codes = ThermalState.UNKNOWN, (readings.unknown,)
    else:
        state, codes = thermal_state(headroom)
    return Standing(headroom, state, codes, step(shown, state, moment.now, moment.config.state_hold_s))


def thermal_state(headroom: Headroom) -> tuple[ThermalState, tuple[str, ...]]:
    """The state a judged GPU's slots put it in, and why."""
    blocked = headroom.blocked
    if blocked in (reasons.MARGIN_EXHAUSTED, reasons.HW_THERMAL_SLOWDOWN, reasons.MEMORY_MARGIN_EXHAUSTED):
        return ThermalState.CRITICAL, (blocked,)
    if blocked is not None:
        return ThermalState.HOT, (blocked,)
    capacity = headroom.capacity
    if capacity.default == 0:
        return ThermalState.HOT, (reasons.NO_DEFAULT_SLOT,)
    if capacity.sheddable == 0:
        return ThermalState.ELEVATED, (reasons.NO_SHEDDABLE_SLOT,)
    return ThermalState.OK, (reasons.WITHIN_LIMITS,)


def step(shown: Shown, state: ThermalState, now: float, hold_s: float) -> Shown:
    """The shown state after `state` at `now`: up at once; down after `hold_s` below, to the highest seen.

    FAILED and UNKNOWN are shown at once and, when they end, give way at once to the state the
    readings say: the hold keeps thermal states from flapping, not the lack of a reading.
    """
    current = shown.state
    if current is None or state.severity >= current.severity or current in _OVERLAYS:
        return Shown(state, shown.since if state is current else now)
    lower, lower_since = state, now
    if shown.lower is not None:
        lower_since = shown.lower_since
        if shown.lower.severity > state.severity:
            lower = shown.lower
    if now - lower_since >= hold_s:
        return Shown(lower, now)
    return Shown(current, shown.since, lower, lower_since)
