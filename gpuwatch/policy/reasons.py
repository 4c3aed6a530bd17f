"""Reason codes: why a GPU or node is in its state, machine-readable and snake_case."""

from __future__ import annotations

# OK
WITHIN_LIMITS = "within_limits"
# ELEVATED
MARGIN_BELOW_ELEVATED = "margin_below_elevated"
PREDICTED_MARGIN_BELOW_ELEVATED = "predicted_margin_below_elevated"
# HOT
MARGIN_BELOW_HOT = "margin_below_hot"
TIME_TO_SLOWDOWN_SHORT = "time_to_slowdown_short"
SW_THERMAL_SLOWDOWN = "sw_thermal_slowdown"
# CRITICAL
MARGIN_EXHAUSTED = "margin_exhausted"
HW_THERMAL_SLOWDOWN = "hw_thermal_slowdown"
MEMORY_MARGIN_EXHAUSTED = "memory_margin_exhausted"
# Held in a state after its enter conditions passed: the leave condition is not met yet
# (hysteresis), or it is and the dwell has not run out.
HYSTERESIS = "hysteresis"
DWELL = "dwell"
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
        MARGIN_BELOW_ELEVATED,
        PREDICTED_MARGIN_BELOW_ELEVATED,
        MARGIN_BELOW_HOT,
        TIME_TO_SLOWDOWN_SHORT,
        SW_THERMAL_SLOWDOWN,
        MARGIN_EXHAUSTED,
        MODEL_INPUT_REJECTED,
        HW_THERMAL_SLOWDOWN,
        MEMORY_MARGIN_EXHAUSTED,
        HYSTERESIS,
        DWELL,
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
