"""Per-GPU physics: an exact first-order RC thermal step, power capping and thermal slowdown."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from gpuwatch.model import ClockEventReason
from gpuwatch.sources.sim.profiles import SkuProfile

# Modelling assumption: past max operating, the driver's SW thermal controller takes 15 % of the
# clock per °C (starting with the first degree) and never goes below 30 %. So a mild cooling fault
# settles just above max operating, and a severe one overshoots into HW slowdown as real GPUs do.
SW_THERMAL_GAIN_PER_C = 0.15
SW_THERMAL_FLOOR = 0.3
# HW thermal slowdown cuts clocks "by a factor of 2 or more" (nvidia-smi --help-query-gpu,
# H100-80GB-HBM3_driver590_idle-and-load_capture.txt:553).
HW_SLOWDOWN_FACTOR = 0.5
# Modelling assumption: the hardware releases the slowdown once 3 °C below its threshold, so the
# clamp does not chatter step by step at the threshold.
HW_SLOWDOWN_RELEASE_C = 3.0

_THERMAL_BITS = ClockEventReason.HW_SLOWDOWN | ClockEventReason.HW_THERMAL_SLOWDOWN


@dataclass(frozen=True, slots=True)
class Conditions:
    """What the GPU's surroundings impose over a step."""

    jobs: int
    inlet_c: float
    power_limit_w: float  # enforced limit, W
    # Multiplies R (and so tau = R*C): 1 = healthy, 2 = a failed fan halves the heat removed per °C.
    cooling_factor: float = 1.0


@dataclass(frozen=True, slots=True)
class GpuState:
    """The continuous state of one GPU: temperatures, the HW slowdown latch and the counters."""

    temperature_c: float
    memory_temperature_c: float
    energy_j: float = 0.0
    hw_slowdown: bool = False
    sw_power_cap_s: float = 0.0
    sw_thermal_slowdown_s: float = 0.0
    hw_thermal_slowdown_s: float = 0.0


@dataclass(frozen=True, slots=True)
class OperatingPoint:
    """What the GPU does in a given state and conditions: its draw, clocks and why."""

    power_w: float
    sm_clock_mhz: float
    utilization: float  # ratio 0-1
    memory_utilization: float  # ratio 0-1
    reasons: int  # ClockEventReason bitmask


def demand_w(profile: SkuProfile, jobs: int) -> float:
    """Board power the jobs would draw at full clocks, before any limit, W."""
    return profile.power_idle_w + jobs * profile.job.power_w


def steady_temperature_c(profile: SkuProfile, conditions: Conditions, power_w: float) -> float:
    """Die temperature at which `power_w` flows out as fast as it comes in: T_inlet + R*P."""
    resistance = profile.thermal.resistance_c_per_w * conditions.cooling_factor
    return conditions.inlet_c + resistance * power_w


def steady_memory_temperature_c(profile: SkuProfile, conditions: Conditions, power_w: float) -> float:
    """HBM temperature held at constant `power_w`; a cooling fault scales its rise too."""
    model = profile.thermal
    rise = model.memory_offset_c + model.memory_resistance_c_per_w * power_w
    return conditions.inlet_c + conditions.cooling_factor * rise


def latch(profile: SkuProfile, state: GpuState) -> GpuState:
    """The state with the HW slowdown latch set at the threshold and released below it."""
    threshold = profile.slowdown_temperature_c
    engaged = state.temperature_c >= threshold or (
        state.hw_slowdown and state.temperature_c > threshold - HW_SLOWDOWN_RELEASE_C
    )
    return state if engaged == state.hw_slowdown else dataclasses.replace(state, hw_slowdown=engaged)


def operating_point(profile: SkuProfile, state: GpuState, conditions: Conditions) -> OperatingPoint:
    """Power, clocks and clock-event reasons of a GPU in `state` (already latched)."""
    idle_w = profile.power_idle_w
    dynamic_w = demand_w(profile, conditions.jobs) - idle_w
    clock_ratio, reasons = _clock_ratio(profile, state, conditions)
    if conditions.jobs == 0:
        reasons |= ClockEventReason.GPU_IDLE
        sm_clock_mhz = profile.sm_clock_idle_mhz
    else:
        sm_clock_mhz = max(profile.sm_clock_idle_mhz, profile.sm_clock_max_mhz * clock_ratio)
    return OperatingPoint(
        power_w=idle_w + clock_ratio * dynamic_w,
        sm_clock_mhz=sm_clock_mhz,
        utilization=min(1.0, conditions.jobs * profile.job.utilization),
        memory_utilization=min(1.0, conditions.jobs * profile.job.memory_utilization),
        reasons=int(reasons),
    )


def _clock_ratio(
    profile: SkuProfile, state: GpuState, conditions: Conditions
) -> tuple[float, ClockEventReason]:
    """The fraction of full clocks the GPU runs at, and the reasons holding it below 1.

    The SW power cap and the SW thermal controller each ask for a ratio and the lower one
    rules; the power cap is reported only while it is the one that binds (a GPU slowed for heat
    draws less than its limit). HW slowdown halves whatever is left.
    """
    reasons = ClockEventReason(0)
    idle_w = profile.power_idle_w
    dynamic_w = demand_w(profile, conditions.jobs) - idle_w
    # The SW power cap lowers clocks until the board draws exactly the enforced limit.
    cap_ratio = 1.0
    if idle_w + dynamic_w > conditions.power_limit_w:
        cap_ratio = max(0.0, conditions.power_limit_w - idle_w) / dynamic_w
    thermal_ratio = 1.0
    overshoot_c = state.temperature_c - profile.max_operating_temperature_c
    if overshoot_c >= 0:
        thermal_ratio = max(SW_THERMAL_FLOOR, 1.0 - SW_THERMAL_GAIN_PER_C * (overshoot_c + 1.0))
        reasons |= ClockEventReason.SW_THERMAL_SLOWDOWN
    if cap_ratio < 1.0 and cap_ratio <= thermal_ratio and not state.hw_slowdown:
        reasons |= ClockEventReason.SW_POWER_CAP
    ratio = min(cap_ratio, thermal_ratio)
    if state.hw_slowdown:
        ratio *= HW_SLOWDOWN_FACTOR
        reasons |= _THERMAL_BITS
    return ratio, reasons


def step(profile: SkuProfile, state: GpuState, conditions: Conditions, dt_s: float) -> GpuState:
    """The state `dt_s` seconds later, exact for the power held constant over the step.

    T(t + dt) = T_ss + (T - T_ss) * exp(-dt / tau): unconditionally stable, so a long step
    lands on the same curve as many short ones while the operating point does not change.
    """
    now = latch(profile, state)
    point = operating_point(profile, now, conditions)
    model = profile.thermal
    die_decay = math.exp(-dt_s / (model.time_constant_s * conditions.cooling_factor))
    memory_decay = math.exp(-dt_s / (model.memory_time_constant_s * conditions.cooling_factor))
    die_ss = steady_temperature_c(profile, conditions, point.power_w)
    memory_ss = steady_memory_temperature_c(profile, conditions, point.power_w)
    return GpuState(
        temperature_c=die_ss + (now.temperature_c - die_ss) * die_decay,
        memory_temperature_c=memory_ss + (now.memory_temperature_c - memory_ss) * memory_decay,
        energy_j=now.energy_j + point.power_w * dt_s,
        hw_slowdown=now.hw_slowdown,
        sw_power_cap_s=now.sw_power_cap_s + _active_for(point, ClockEventReason.SW_POWER_CAP, dt_s),
        sw_thermal_slowdown_s=now.sw_thermal_slowdown_s
        + _active_for(point, ClockEventReason.SW_THERMAL_SLOWDOWN, dt_s),
        hw_thermal_slowdown_s=now.hw_thermal_slowdown_s
        + _active_for(point, ClockEventReason.HW_THERMAL_SLOWDOWN, dt_s),
    )


def _active_for(point: OperatingPoint, reason: ClockEventReason, dt_s: float) -> float:
    """Seconds `reason` held clocks down during a step: all of it or none."""
    return dt_s if point.reasons & reason else 0.0


def settled_state(profile: SkuProfile, conditions: Conditions) -> GpuState:
    """A cool-headed start: both temperatures at the steady state of the jobs' capped power.

    Thermal slowdown is not anticipated here; stepping on from this state brings it in.
    """
    cool = GpuState(temperature_c=conditions.inlet_c, memory_temperature_c=conditions.inlet_c)
    power_w = operating_point(profile, cool, conditions).power_w
    return GpuState(
        temperature_c=steady_temperature_c(profile, conditions, power_w),
        memory_temperature_c=steady_memory_temperature_c(profile, conditions, power_w),
    )
