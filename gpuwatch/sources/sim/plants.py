"""A wide family of thermal plants: boards a decade either side of the shipped profiles, drawn seeded.

The shipped profiles rest on one A100 trace (a die that settles in 0.25 s) and one H100 step (a
sink that climbs for minutes); real boards differ by far more than a fleet's spread. Each family
keeps the SKU's limits and power, draws the rest, and says why a real board could look like it:

- `wide-two-node`: die and sink with time constants drawn log-uniformly, die 0.2-10 s (thin
  solder to thick paste and a sensor away from the hot spot) and sink 20-900 s (a liquid cold
  plate to a heavy air-cooled sink in a warm chassis), the die's share of the resistance 10-60 %.
- `three-node`: a heat spreader or vapour chamber between them (die 0.2-3 s, spreader 3-60 s,
  sink 60-900 s): the step response has a middle part neither a die nor a sink explains.
- `lagged-sensor`: a wide two-node plant whose sensor follows the die 0.5-3 s late and reads with
  noise of 0.1-0.5 °C before NVML's whole degrees (a sensor beside the hot spot, not on it).
- `fan-curve`: a wide two-node plant whose fan slows on a cool sink (R_sa up to 1.5-3x) and reaches
  full speed once the sink is 40-90 % of its full-load rise over the inlet; a failed fan stays flat.
- `first-order`: one RC node (tau 20 s, the design priors) with every R, C and the job power
  within ±30 %: the forecast's own family, kept as a check.

Every family also draws the die-to-inlet resistance within ±30 % of the profile's and the power
per job within ±30 %.
"""

from __future__ import annotations

import dataclasses
import math
import random

from gpuwatch.sources.sim.profiles import SkuProfile, ThermalModel, first_order, with_spread

WIDE = "wide"  # each GPU's plant from one of FAMILIES, drawn with the rest
FAMILIES = ("wide-two-node", "three-node", "lagged-sensor", "fan-curve", "first-order")
# Every family's draws of the die-to-inlet resistance and the power per job: ±this ratio.
SPREAD = 0.3
DIE_TAU_S = (0.2, 10.0)
SINK_TAU_S = (20.0, 900.0)
DIE_SHARE = (0.1, 0.6)
CHAIN_DIE_TAU_S = (0.2, 3.0)
CHAIN_SPREADER_TAU_S = (3.0, 60.0)
CHAIN_SINK_TAU_S = (60.0, 900.0)
CHAIN_DIE_SHARE = (0.1, 0.4)
CHAIN_SPREADER_SHARE = (0.1, 0.3)
SENSOR_LAG_S = (0.5, 3.0)
SENSOR_NOISE_C = (0.1, 0.5)
FAN_SLOW_RATIO = (1.5, 3.0)
FAN_FULL_SHARE = (0.4, 0.9)  # of the sink's rise over the inlet at the power limit


def draw_plant(profile: SkuProfile, rng: random.Random, family: str) -> SkuProfile:
    """`profile` with a plant of `family` (one of FAMILIES, or WIDE: any of them) drawn from `rng`."""
    if family == WIDE:
        family = rng.choice(FAMILIES)
    if family == "first-order":
        return with_spread(first_order(profile), rng, SPREAD)
    if family not in FAMILIES:
        msg = f"unknown plant family {family!r}; families: {', '.join((WIDE, *FAMILIES))}"
        raise ValueError(msg)
    resistance = profile.thermal.resistance_c_per_w * rng.uniform(1 - SPREAD, 1 + SPREAD)
    thermal = (
        _chain(profile.thermal, resistance, rng)
        if family == "three-node"
        else _two_node(profile.thermal, resistance, rng)
    )
    if family == "lagged-sensor":
        thermal = dataclasses.replace(
            thermal, sensor_lag_s=rng.uniform(*SENSOR_LAG_S), sensor_noise_c=rng.uniform(*SENSOR_NOISE_C)
        )
    if family == "fan-curve":
        full_load_rise_c = thermal.sink_resistance_c_per_w * profile.power_default_limit_w
        thermal = dataclasses.replace(
            thermal,
            fan_slow_ratio=rng.uniform(*FAN_SLOW_RATIO),
            fan_full_rise_c=full_load_rise_c * rng.uniform(*FAN_FULL_SHARE),
        )
    job = dataclasses.replace(profile.job, power_w=profile.job.power_w * rng.uniform(1 - SPREAD, 1 + SPREAD))
    return dataclasses.replace(profile, thermal=thermal, job=job)


def _log_uniform(rng: random.Random, bounds: tuple[float, float]) -> float:
    low, high = bounds
    return math.exp(rng.uniform(math.log(low), math.log(high)))


def _two_node(model: ThermalModel, resistance: float, rng: random.Random) -> ThermalModel:
    """Die and sink splitting `resistance`, °C/W, with time constants drawn log-uniformly."""
    die_r = resistance * rng.uniform(*DIE_SHARE)
    sink_r = resistance - die_r
    return dataclasses.replace(
        model,
        die_resistance_c_per_w=die_r,
        die_capacity_j_per_c=_log_uniform(rng, DIE_TAU_S) / die_r,
        sink_resistance_c_per_w=sink_r,
        sink_capacity_j_per_c=_log_uniform(rng, SINK_TAU_S) / sink_r,
    )


def _chain(model: ThermalModel, resistance: float, rng: random.Random) -> ThermalModel:
    """Die, spreader and sink splitting `resistance`, °C/W, each with its own time constant."""
    die_r = resistance * rng.uniform(*CHAIN_DIE_SHARE)
    spreader_r = resistance * rng.uniform(*CHAIN_SPREADER_SHARE)
    sink_r = resistance - die_r - spreader_r
    return dataclasses.replace(
        model,
        die_resistance_c_per_w=die_r,
        die_capacity_j_per_c=_log_uniform(rng, CHAIN_DIE_TAU_S) / die_r,
        spreader_resistance_c_per_w=spreader_r,
        spreader_capacity_j_per_c=_log_uniform(rng, CHAIN_SPREADER_TAU_S) / spreader_r,
        sink_resistance_c_per_w=sink_r,
        sink_capacity_j_per_c=_log_uniform(rng, CHAIN_SINK_TAU_S) / sink_r,
    )
