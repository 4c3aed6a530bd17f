"""Retry-After: predicted seconds until a GPU steps down far enough to admit a class again.

Walking down the ladder from where the GPU stands: each level is left once the margin has
reached its leave threshold (predicted by the cooling model at reduced power, see gpu.py) and
the dwell has then run out; the current level counts the part of its dwell already served. The
predicted-margin part of ELEVATED's leave condition is not modelled: the margin threshold and the
dwell dominate. None means not at all at that power; callers clamp to the configured maximum.
"""

from __future__ import annotations

from collections.abc import Callable

from gpuwatch.policy.config import PolicyConfig
from gpuwatch.policy.decision import PriorityClass, RetryAfters, ThermalState, admitted_classes
from gpuwatch.policy.states import LADDER, Ladder, dwell_s, leave_margin_c

# Seconds from now until the margin reaches a target margin (°C); 0 if it is there, None if never.
CoolingTime = Callable[[float], float | None]

# The highest ladder level that still admits each class.
_HIGHEST_ADMITTING = {
    PriorityClass.CRITICAL: ThermalState.HOT,
    PriorityClass.DEFAULT: ThermalState.ELEVATED,
    PriorityClass.SHEDDABLE: ThermalState.OK,
}


def seconds_until(
    ladder: Ladder, target: ThermalState, now: float, config: PolicyConfig, cooling: CoolingTime
) -> float | None:
    """Predicted seconds until the ladder is at `target` or below; None if it is not expected to get there."""
    level, total = ladder.level, 0.0
    served_s = None if ladder.leave_held_since is None else now - ladder.leave_held_since
    while level.severity > target.severity:
        if served_s is not None:
            total = max(0.0, dwell_s(level, config) - served_s)
        else:
            cool_s = cooling(leave_margin_c(level, config))
            if cool_s is None:
                return None
            total = max(total, cool_s) + dwell_s(level, config)
        served_s = None
        level = LADDER[LADDER.index(level) - 1]
    return total


def clamp(seconds: float | None, config: PolicyConfig) -> float:
    """Seconds clamped to the configured Retry-After range; None (never, unknown) is the maximum."""
    if seconds is None:
        return config.retry_after_max_s
    return min(config.retry_after_max_s, max(config.retry_after_min_s, seconds))


def ladder_retry_afters(
    ladder: Ladder, now: float, config: PolicyConfig, cooling: CoolingTime
) -> RetryAfters:
    """(class, clamped seconds) for every class the ladder's level refuses."""
    admits = admitted_classes(ladder.level)
    return tuple(
        (cls, clamp(seconds_until(ladder, _HIGHEST_ADMITTING[cls], now, config, cooling), config))
        for cls in PriorityClass
        if cls not in admits
    )


def flat_retry_afters(state: ThermalState, seconds: float | None, config: PolicyConfig) -> RetryAfters:
    """(class, clamped `seconds`) for every class `state` refuses, when there is nothing to predict from."""
    admits = admitted_classes(state, fail_open=config.fail_open)
    return tuple((cls, clamp(seconds, config)) for cls in PriorityClass if cls not in admits)
