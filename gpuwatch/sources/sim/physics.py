"""Per-GPU physics: an exact RC thermal step (die and heat sink, or three nodes), power capping and slowdown.

The die (small heat capacity) sits on a heat sink (large capacity) that the inlet air cools:

    C_d dT_d/dt = P - (T_d - T_s)/R_ds
    C_s dT_s/dt = (T_d - T_s)/R_ds - (T_s - T_inlet)/R_sa

so a power step moves the die most of its own way in seconds and the rest over minutes, with the
sink. A cooling fault multiplies R_sa (a failed fan removes less heat per °C of sink above the
inlet). At constant power the die settles at T_inlet + (R_ds + R_sa)*P. HBM follows the sink. A
profile with R_ds = 0 is the first-order plant (die and sink one node), kept for tests.

Boards unlike the shipped ones (plants.py) may add a heat spreader between die and sink (a third
node, solved exactly by chain.py), a fan curve (R_sa rises on a cool sink; it is read at the
start of each step, which the sim keeps short, and a fault holds it flat at the faulted value),
and a sensor that follows the die with a first-order lag: its path is exact too, each of the
die's modes e^(rt) passing through the lag scaled by 1/(1 + r*lag), plus the lag's own mode.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from gpuwatch.sources.model import ClockEventReason
from gpuwatch.sources.sim.chain import ChainResponse, chain_response
from gpuwatch.sources.sim.profiles import SkuProfile, ThermalModel

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
    """The continuous state of one GPU: die and sink temperatures, the HW slowdown latch, counters."""

    temperature_c: float  # die (what the sensor reads, unless the plant's sensor lags)
    sink_temperature_c: float  # heat sink; HBM follows it
    energy_j: float = 0.0
    hw_slowdown: bool = False
    sw_power_cap_s: float = 0.0
    sw_thermal_slowdown_s: float = 0.0
    hw_thermal_slowdown_s: float = 0.0
    spreader_temperature_c: float | None = None  # the three-node plant's middle node, else None
    sensor_temperature_c: float | None = None  # a lagging sensor's reading before noise, else None


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


def sink_resistance_c_per_w(
    profile: SkuProfile, conditions: Conditions, sink_c: float | None = None
) -> float:
    """R_sa with the cooling as it is now, °C/W: a cooling fault multiplies it.

    With a fan curve and healthy cooling, a sink at `sink_c` cooler than the fan's full-speed
    point has a slower fan: R_sa rises linearly to `fan_slow_ratio` times at the inlet's
    temperature. None: the fan at full speed.
    """
    model = profile.thermal
    resistance = model.sink_resistance_c_per_w * conditions.cooling_factor
    if sink_c is None or not _fan_turns(model, conditions):
        return resistance
    return resistance * _fan_ratio(model, sink_c - conditions.inlet_c)


def _fan_turns(model: ThermalModel, conditions: Conditions) -> bool:
    """Whether the fan follows its curve: it has one and the cooling is healthy (a failed fan stays flat)."""
    return model.fan_slow_ratio != 1.0 and conditions.cooling_factor == 1.0


def _fan_ratio(model: ThermalModel, rise_c: float) -> float:
    """R_sa over its full-speed value with the sink `rise_c` above the inlet."""
    slow_share = min(1.0, max(0.0, 1.0 - rise_c / model.fan_full_rise_c))
    return 1.0 + (model.fan_slow_ratio - 1.0) * slow_share


def steady_sink_c(profile: SkuProfile, conditions: Conditions, power_w: float) -> float:
    """Sink temperature held at constant `power_w`: T_inlet + R_sa*P, R_sa where the fan settles."""
    model = profile.thermal
    full_speed = sink_resistance_c_per_w(profile, conditions) * power_w
    if not _fan_turns(model, conditions) or power_w <= 0:
        return conditions.inlet_c + full_speed
    # The rise solves rise = R_sa(rise)*P; R_sa falls as the sink warms, so there is one crossing.
    low, high = full_speed, full_speed * model.fan_slow_ratio
    for _ in range(60):
        middle = (low + high) / 2
        if middle < full_speed * _fan_ratio(model, middle):
            low = middle
        else:
            high = middle
    return conditions.inlet_c + (low + high) / 2


def steady_temperature_c(profile: SkuProfile, conditions: Conditions, power_w: float) -> float:
    """Die temperature at which `power_w` flows out as fast as it comes in: T_inlet + R*P."""
    model = profile.thermal
    if _fan_turns(model, conditions):
        return steady_sink_c(profile, conditions, power_w) + model.fixed_resistance_c_per_w * power_w
    resistance = model.fixed_resistance_c_per_w + sink_resistance_c_per_w(profile, conditions)
    return conditions.inlet_c + resistance * power_w


def memory_temperature_c(profile: SkuProfile, conditions: Conditions, sink_c: float) -> float:
    """HBM temperature beside a sink at `sink_c`: its own offset, plus a share of the sink's rise.

    The share is the profile's HBM rise per W over R_sa, so with healthy cooling HBM settles at
    `T_inlet + offset + memory_resistance*P`. A cooling fault reaches HBM through the sink: it
    warms as the sink does, over minutes, never in a step when the fan fails.
    """
    model = profile.thermal
    share = model.memory_resistance_c_per_w / model.sink_resistance_c_per_w
    return conditions.inlet_c + model.memory_offset_c + share * (sink_c - conditions.inlet_c)


def steady_memory_temperature_c(profile: SkuProfile, conditions: Conditions, power_w: float) -> float:
    """HBM temperature held at constant `power_w`."""
    return memory_temperature_c(profile, conditions, steady_sink_c(profile, conditions, power_w))


@dataclass(frozen=True, slots=True)
class Response:
    """Die and sink temperatures over a stretch of constant power: steady point plus two decaying modes.

    deviation(t) = (T_d, T_s)(t) - steady = mode_fast * e^(rate_fast*t) + mode_slow * e^(rate_slow*t)
    (rates in 1/s, < 0). The first-order plant has one mode; its fast mode is zero.
    """

    steady_die_c: float
    steady_sink_c: float
    rate_fast: float
    rate_slow: float
    fast: tuple[float, float]  # (die, sink) amplitude of the fast mode, °C
    slow: tuple[float, float]

    def at(self, seconds: float) -> tuple[float, float]:
        """(die, sink) °C after `seconds`."""
        fast, slow = math.exp(self.rate_fast * seconds), math.exp(self.rate_slow * seconds)
        return (
            self.steady_die_c + self.fast[0] * fast + self.slow[0] * slow,
            self.steady_sink_c + self.fast[1] * fast + self.slow[1] * slow,
        )

    def spreader_at(self, _seconds: float) -> None:
        """Two nodes: no spreader."""
        return

    def die_modes(self) -> tuple[float, tuple[tuple[float, float], ...]]:
        """The die's steady °C and its (rate, amplitude) per mode."""
        return self.steady_die_c, ((self.rate_fast, self.fast[0]), (self.rate_slow, self.slow[0]))

    def die_peak_c(self, seconds: float) -> float:
        """The highest die temperature over [0, seconds]: at an end, or where its one turn lies."""
        peak = max(self.at(0.0)[0], self.at(seconds)[0])
        a, b = self.fast[0] * self.rate_fast, self.slow[0] * self.rate_slow
        # d(die)/dt = a e^(rf t) + b e^(rs t) is zero at most once: e^((rf - rs) t) = -b/a.
        if a != 0 and -b / a > 0 and self.rate_fast != self.rate_slow:
            turn_s = math.log(-b / a) / (self.rate_fast - self.rate_slow)
            if 0 < turn_s < seconds:
                peak = max(peak, self.at(turn_s)[0])
        return peak


def response(  # noqa: PLR0913 - the plant, its surroundings, its nodes and its power
    profile: SkuProfile,
    conditions: Conditions,
    die_c: float,
    sink_c: float,
    power_w: float,
    *,
    spreader_c: float | None = None,
) -> Response | ChainResponse:
    """How die and sink move from (die_c, sink_c) while the GPU draws `power_w` under `conditions`.

    The 2x2 system x' = A x on the deviation from steady state is solved exactly by its two
    eigenvalues (both real and negative for any positive R and C). A three-node plant also needs
    the spreader's `spreader_c` (None: midway between die and sink) and is solved by chain.py.
    A fan curve's R_sa is the one at `sink_c`, held over the stretch.
    """
    model = profile.thermal
    r_sa = sink_resistance_c_per_w(profile, conditions, sink_c)
    sink_ss = conditions.inlet_c + r_sa * power_w
    if model.three_node:
        spreader_ss = sink_ss + model.spreader_resistance_c_per_w * power_w
        return chain_response(
            (model.die_resistance_c_per_w, model.spreader_resistance_c_per_w, r_sa),
            (model.die_capacity_j_per_c, model.spreader_capacity_j_per_c, model.sink_capacity_j_per_c),
            (die_c, (die_c + sink_c) / 2 if spreader_c is None else spreader_c, sink_c),
            (spreader_ss + model.die_resistance_c_per_w * power_w, spreader_ss, sink_ss),
        )
    die_ss = sink_ss + model.die_resistance_c_per_w * power_w
    e_die, e_sink = die_c - die_ss, sink_c - sink_ss
    if model.die_resistance_c_per_w == 0:
        # First-order plant: the die is the sink, one node of capacity C_s.
        rate = -1.0 / (r_sa * model.sink_capacity_j_per_c)
        return Response(die_ss, sink_ss, rate, rate, (0.0, 0.0), (e_die, e_die))
    a11 = -1.0 / (model.die_capacity_j_per_c * model.die_resistance_c_per_w)
    a12 = -a11
    a21 = 1.0 / (model.sink_capacity_j_per_c * model.die_resistance_c_per_w)
    a22 = -a21 - 1.0 / (model.sink_capacity_j_per_c * r_sa)
    trace, det = a11 + a22, a11 * a22 - a12 * a21
    root = math.sqrt(trace * trace / 4 - det)
    fast, slow = trace / 2 - root, trace / 2 + root
    # Sylvester: e^(At) = [(e^(fast t) - e^(slow t)) A + (fast e^(slow t) - slow e^(fast t)) I]
    #                    / (fast - slow)
    a_die, a_sink = a11 * e_die + a12 * e_sink, a21 * e_die + a22 * e_sink
    span = fast - slow
    return Response(
        die_ss,
        sink_ss,
        fast,
        slow,
        ((a_die - slow * e_die) / span, (a_sink - slow * e_sink) / span),
        ((fast * e_die - a_die) / span, (fast * e_sink - a_sink) / span),
    )


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

    Both nodes follow the exact solution, so a long step lands on the same curve as many short
    ones while the operating point does not change.
    """
    now = latch(profile, state)
    point = operating_point(profile, now, conditions)
    path = response(
        profile,
        conditions,
        now.temperature_c,
        now.sink_temperature_c,
        point.power_w,
        spreader_c=now.spreader_temperature_c,
    )
    die_c, sink_c = path.at(dt_s)
    sensor_c = now.sensor_temperature_c
    if sensor_c is not None:
        sensor_c = lagged_c(path, sensor_c, profile.thermal.sensor_lag_s, dt_s)
    return GpuState(
        temperature_c=die_c,
        sink_temperature_c=sink_c,
        spreader_temperature_c=path.spreader_at(dt_s),
        sensor_temperature_c=sensor_c,
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


def lagged_c(path: Response | ChainResponse, sensor_c: float, lag_s: float, seconds: float) -> float:
    """A sensor's reading after `seconds`, from `sensor_c`, following the die along `path` with lag `lag_s`.

    s' = (die - s)/lag: each die mode a*e^(rt) shows as a/(1 + r*lag)*e^(rt), and the lag's own
    mode e^(-t/lag) carries whatever the start differs by. A die mode exactly as fast as the lag
    shows as a*t/lag*e^(rt) instead (0 at the start, so it carries nothing).
    """
    steady, modes = path.die_modes()
    lag_rate = -1.0 / lag_s
    reading, carried = steady, steady
    for rate, amplitude in modes:
        gain = 1.0 + rate * lag_s
        if abs(gain) < 1e-12:
            reading += amplitude * seconds / lag_s * math.exp(rate * seconds)
            continue
        share = amplitude / gain
        reading += share * math.exp(rate * seconds)
        carried += share
    return reading + (sensor_c - carried) * math.exp(lag_rate * seconds)


def settled_state(profile: SkuProfile, conditions: Conditions) -> GpuState:
    """A cool-headed start: die and sink at the steady state of the jobs' capped power.

    Thermal slowdown is not anticipated here; stepping on from this state brings it in.
    """
    cool = GpuState(temperature_c=conditions.inlet_c, sink_temperature_c=conditions.inlet_c)
    power_w = operating_point(profile, cool, conditions).power_w
    model = profile.thermal
    die_c = steady_temperature_c(profile, conditions, power_w)
    sink_c = steady_sink_c(profile, conditions, power_w)
    return GpuState(
        temperature_c=die_c,
        sink_temperature_c=sink_c,
        spreader_temperature_c=(
            sink_c + model.spreader_resistance_c_per_w * power_w if model.three_node else None
        ),
        sensor_temperature_c=die_c if model.sensor_lag_s > 0 else None,
    )
