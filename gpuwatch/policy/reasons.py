"""Reason codes: why a GPU or node is in its state, machine-readable and snake_case."""

from __future__ import annotations

# OK: every class has a slot
WITHIN_LIMITS = "within_limits"
# ELEVATED: no `sheddable` slot
NO_SHEDDABLE_SLOT = "no_sheddable_slot"
# HOT: no `default` slot
NO_DEFAULT_SLOT = "no_default_slot"
SW_THERMAL_SLOWDOWN = "sw_thermal_slowdown"
# CRITICAL
MARGIN_EXHAUSTED = "margin_exhausted"
HW_THERMAL_SLOWDOWN = "hw_thermal_slowdown"
MEMORY_MARGIN_EXHAUSTED = "memory_margin_exhausted"
# Added to no_default_slot where the forecast itself, without the allowance for its own recent
# errors, would give `default` a slot: the GPU is held back by its uncertainty, not by heat.
FORECAST_UNCERTAIN = "forecast_uncertain"
# The shown state is held above the state the slots say, until the lower one has held long enough.
STATE_HOLD = "state_hold"
# FAILED
GPU_LOST = "gpu_lost"
RESET_REQUIRED = "reset_required"
RECOVERY_ACTION = "recovery_action"
CRITICAL_XID = "critical_xid"
# UNKNOWN
# The latest reading was not learned from (NaN, a jump of tens of degrees, power above twice the
# limit, a clock going backwards); the forecast rests on the readings before it.
MODEL_INPUT_REJECTED = "model_input_rejected"
STALE_SAMPLE = "stale_sample"
NO_READING = "no_reading"
NO_MARGIN = "no_margin"  # a reading without a thermal margin: nothing to judge by
SOURCE_UNAVAILABLE = "source_unavailable"  # the source could not read the GPU this round
FAIL_OPEN = "fail_open"  # added to UNKNOWN's reasons when it admits everything
# Node only
NO_GPUS = "no_gpus"
GPU_FAILED = "gpu_failed"  # some GPU is out of service (the others decide the node's state)
# Either: an operator holds the node or the GPU back on purpose (a maintenance drain)
DRAINED = "drained"

ALL_REASONS = frozenset(
    {
        WITHIN_LIMITS,
        NO_SHEDDABLE_SLOT,
        NO_DEFAULT_SLOT,
        FORECAST_UNCERTAIN,
        SW_THERMAL_SLOWDOWN,
        MARGIN_EXHAUSTED,
        MODEL_INPUT_REJECTED,
        HW_THERMAL_SLOWDOWN,
        MEMORY_MARGIN_EXHAUSTED,
        STATE_HOLD,
        GPU_LOST,
        RESET_REQUIRED,
        RECOVERY_ACTION,
        CRITICAL_XID,
        STALE_SAMPLE,
        NO_READING,
        NO_MARGIN,
        SOURCE_UNAVAILABLE,
        FAIL_OPEN,
        NO_GPUS,
        GPU_FAILED,
        DRAINED,
    }
)
