"""The oracle's look ahead: a GPU's exact temperature path while the jobs it would run play out.

The sim's physics is two linear RC nodes (die and sink) with power constant between load
changes, so the path is exact in closed form, two exponentials per stretch of constant power: no
stepping. Power changes only when a job ends (on the tick after its work is done, as the engine
ends it) or when a scheduled event changes the inlet or the cooling. Within a stretch the die
turns at most once, so its peak is at a stretch's end or at that turn (physics.Response).
A three-node plant (plants.py) is exact too, by its three modes (chain.py). A fan curve's R_sa
follows the sink, which the sim reads afresh at every step of at most FAN_STEP_S; the look ahead
does the same, so it stays as close to the sim as the sim is to a continuous fan.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass

from gpuwatch.sources.sim import physics
from gpuwatch.sources.sim.source import GpuPhysics

# Job ends and event times closer than this are the same instant, s.
_EPSILON_S = 1e-9
# The longest stretch over which a fan curve's R_sa is held: the sim's own longest step, s.
FAN_STEP_S = 1.0


@dataclass(frozen=True, slots=True)
class Change:
    """A scheduled change to one GPU's surroundings, `after_s` seconds from now."""

    after_s: float
    inlet_c: float | None = None
    cooling_factor: float | None = None


def peak_temperature_c(
    gpu: GpuPhysics, works_s: Sequence[float], changes: Sequence[Change], tick_s: float, horizon_s: float
) -> float:
    """The highest die temperature from now until the jobs (work left, full-clock s) end or the horizon.

    Assumes no thermal slowdown on the way (clocks held only by the power cap): if the peak is
    below the max-operating temperature, that assumption holds and the answer is exact.
    """
    conditions = gpu.conditions
    die_c, sink_c = gpu.state.temperature_c, gpu.state.sink_temperature_c
    spreader_c = gpu.state.spreader_temperature_c
    step_s = FAN_STEP_S if gpu.profile.thermal.fan_slow_ratio != 1.0 else math.inf
    peak_c, t_s = die_c, 0.0
    works = sorted(works_s)
    pending = sorted(changes, key=lambda change: change.after_s)
    cool = dataclasses.replace(gpu.state, temperature_c=-math.inf, hw_slowdown=False)
    while works and t_s < horizon_s:
        conditions = dataclasses.replace(conditions, jobs=len(works))
        point = physics.operating_point(gpu.profile, cool, conditions)
        ratio = point.sm_clock_mhz / gpu.profile.sm_clock_max_mhz
        next_end_s = math.ceil((t_s + works[0] / ratio) / tick_s - _EPSILON_S) * tick_s
        next_change_s = pending[0].after_s if pending else math.inf
        until_s = min(next_end_s, next_change_s, horizon_s, t_s + step_s)
        path = physics.response(gpu.profile, conditions, die_c, sink_c, point.power_w, spreader_c=spreader_c)
        peak_c = max(peak_c, path.die_peak_c(until_s - t_s))
        die_c, sink_c = path.at(until_s - t_s)
        spreader_c = path.spreader_at(until_s - t_s)
        works = [w - ratio * (until_s - t_s) for w in works]
        works = [w for w in works if w > _EPSILON_S]
        while pending and pending[0].after_s <= until_s + _EPSILON_S:
            conditions = _changed(conditions, pending.pop(0))
        t_s = until_s
    return peak_c


def _changed(conditions: physics.Conditions, change: Change) -> physics.Conditions:
    return dataclasses.replace(
        conditions,
        inlet_c=conditions.inlet_c if change.inlet_c is None else change.inlet_c,
        cooling_factor=conditions.cooling_factor if change.cooling_factor is None else change.cooling_factor,
    )
