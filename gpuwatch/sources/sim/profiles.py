"""SKU profiles of the simulated GPUs (H100 SXM, H200 SXM, A100 SXM) as frozen data."""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from gpuwatch.sources.model import ThermalLimits, ThermalScale

# Captures cited below live in tests/data/nvidia-smi-q/; "file:line" points at the value.
_MIB = 1024 * 1024
_GIB = 1024 * _MIB


@dataclass(frozen=True, slots=True)
class ThermalModel:
    """Parameters of the RC model of one GPU with healthy cooling (physics.py's equations).

    The die (capacity C_d) heats through R_ds into the heat sink (C_s), which the inlet air cools
    through R_sa. HBM follows the sink: `T_inlet + memory_offset_c + share*(T_s - T_inlet)` with
    `share = memory_resistance_c_per_w / R_sa`, so at steady power P it sits
    `memory_offset_c + memory_resistance_c_per_w*P` above the inlet. R_ds = 0 makes the
    first-order plant: one node of capacity C_s behind R_sa.

    The rest describes boards unlike the shipped ones (plants.py draws them), each off by default:
    a heat spreader or vapour chamber between die and sink (a third node: the die heats it through
    R_ds, it heats the sink through R_ps); a temperature sensor that follows the die with a lag
    and reads with noise before NVML's whole degrees; and a fan curve, R_sa at full fan speed
    times up to `fan_slow_ratio` while the sink is cooler than `fan_full_rise_c` above the inlet.
    """

    die_resistance_c_per_w: float  # R_ds, die to sink (or to the spreader), °C/W
    die_capacity_j_per_c: float  # C_d, J/°C
    sink_resistance_c_per_w: float  # R_sa, sink to inlet air (the fan at full speed), °C/W
    sink_capacity_j_per_c: float  # C_s, J/°C
    memory_offset_c: float  # HBM above inlet at zero board power, °C
    memory_resistance_c_per_w: float  # HBM rise per W of board power at steady state, °C/W
    spreader_resistance_c_per_w: float = 0.0  # R_ps, spreader to sink, °C/W; 0: no spreader node
    spreader_capacity_j_per_c: float = 0.0  # C_p, J/°C
    sensor_lag_s: float = 0.0  # the reading follows the die with this time constant, s
    sensor_noise_c: float = 0.0  # standard deviation of a reading's noise before rounding, °C
    fan_slow_ratio: float = 1.0  # R_sa with the sink at the inlet over R_sa at full speed (1: no curve)
    fan_full_rise_c: float = 0.0  # sink rise over the inlet from which the fan runs at full speed, °C

    @property
    def resistance_c_per_w(self) -> float:
        """Die to inlet at steady state with the fan at full speed, R_ds + R_ps + R_sa, °C/W."""
        return self.fixed_resistance_c_per_w + self.sink_resistance_c_per_w

    @property
    def fixed_resistance_c_per_w(self) -> float:
        """Die to sink, R_ds + R_ps: the part that neither a fan nor a fault changes, °C/W."""
        return self.die_resistance_c_per_w + self.spreader_resistance_c_per_w

    @property
    def three_node(self) -> bool:
        """Whether a spreader sits between die and sink."""
        return self.spreader_resistance_c_per_w > 0

    @property
    def die_time_constant_s(self) -> float:
        """R_ds*C_d: how fast the die moves over the sink, s (0 for the first-order plant)."""
        return self.die_resistance_c_per_w * self.die_capacity_j_per_c

    @property
    def sink_time_constant_s(self) -> float:
        """R_sa*C_s: how fast the sink moves over the inlet, s."""
        return self.sink_resistance_c_per_w * self.sink_capacity_j_per_c


@dataclass(frozen=True, slots=True)
class Workload:
    """What one job (an image generation, an inference batch) adds to a GPU; modelling assumptions."""

    power_w: float  # board power one job adds at full clocks, W
    utilization: float  # SM utilization one job adds, ratio 0-1 (sums cap at 1)
    memory_utilization: float  # memory-bandwidth utilization one job adds, ratio 0-1
    memory_bytes: int  # framebuffer one job holds


@dataclass(frozen=True, slots=True)
class SkuProfile:
    """One GPU model: identity and limits as the driver reports them, and its simulated physics.

    `shutdown_c`, `slowdown_c`, `max_operating_c` and `memory_max_operating_c` are on the
    scale `thermal_scale` names, exactly as the driver states them (T.Limit offsets on Hopper,
    absolute °C on A100). `max_operating_temperature_c` and `memory_max_temperature_c` are the
    absolute temperatures the physics needs on both scales.
    """

    sku: str  # short name used in specs: "H100"
    name: str  # product name as the driver reports it
    thermal_scale: ThermalScale
    shutdown_c: float
    slowdown_c: float
    max_operating_c: float
    memory_max_operating_c: float
    max_operating_temperature_c: float  # absolute, °C
    memory_max_temperature_c: float  # absolute, °C
    power_idle_w: float
    power_default_limit_w: float
    power_min_limit_w: float
    power_max_limit_w: float
    sm_clock_idle_mhz: float
    sm_clock_max_mhz: float
    memory_clock_max_mhz: float
    memory_total_bytes: int
    thermal: ThermalModel
    job: Workload

    def _absolute(self, reported_c: float) -> float:
        """A threshold as an absolute temperature; T.Limit offsets count down from max operating."""
        if self.thermal_scale is ThermalScale.TLIMIT:
            return self.max_operating_temperature_c - reported_c
        return reported_c

    @property
    def slowdown_temperature_c(self) -> float:
        """Absolute temperature at which HW thermal slowdown engages, °C."""
        return self._absolute(self.slowdown_c)

    @property
    def shutdown_temperature_c(self) -> float:
        """Absolute temperature at which the GPU shuts down, °C."""
        return self._absolute(self.shutdown_c)

    def thermal_limits(self) -> ThermalLimits:
        """The limits in the scale the real driver uses for this SKU."""
        return ThermalLimits(
            scale=self.thermal_scale,
            shutdown_c=self.shutdown_c,
            slowdown_c=self.slowdown_c,
            max_operating_c=self.max_operating_c,
            memory_max_operating_c=self.memory_max_operating_c,
        )


# The die and its sink, the same assembly class on every SXM board here (no per-SKU split is
# published). Where each number comes from:
# - R_ds + R_sa = 0.05 °C/W, the design prior: a 700 W H100 at a 25 °C inlet settles at 60 °C,
#   near the 59-65 °C of the ~630 W capture (H100-80GB-HBM3_driver590_idle-and-load_capture.txt
#   :2009, dmon at :2164-2168) still rising.
# - R_ds = 0.02 °C/W and a die time constant R_ds*C_d = 0.25 s: fitted to a real A100
#   (../shared/data/traces/a100_serving_250ms_excerpt.csv, 40 s of 250 ms samples of bursts of
#   85-509 W): `bench/step_response.py` replays its power through the two-node model and the best
#   RMS fit lies at R_ds 0.02-0.025 °C/W and 0.2-0.3 s (2.9 °C RMS, against 3.5 °C for 2-4 s; the
#   readings lead the power column by one sample, as nvidia-smi's averaged power.draw does). A
#   ~410 W burst lifts the reading 8-12 °C within one sample and it is back within 0.5 s after
#   (16:09:47.503-48.253, 16:09:53.570-54.070). So a step's die part shows at the next 1 s reading.
# - R_sa*C_s = 120 s: modelling assumption for "the sink over minutes" (an SXM heat sink and the
#   board, C_s = 4 kJ/°C, about 4.5 kg of aluminium); the slow part of a step is R_sa/(R_ds+R_sa)
#   = 60 % of the rise.
_AIR_COOLED_SXM = ThermalModel(
    die_resistance_c_per_w=0.02,
    die_capacity_j_per_c=12.5,  # 0.25 s / R_ds
    sink_resistance_c_per_w=0.03,
    sink_capacity_j_per_c=4000.0,
    # HBM fit to the idle captures (H100SXMx8:172/178/405, 30 °C die, 36 °C HBM at 83 W;
    # driver590 capture :1663/:1669/:1672, 41/48 °C at 70 W): +9.5 °C and 0.016 °C/W, which
    # predicts the 55-59 °C HBM of the load capture (:2015, dmon).
    memory_offset_c=9.5,
    memory_resistance_c_per_w=0.016,
)

# Modelling assumption: a diffusion image or an inference batch draws ~200 W and a third of the
# SMs on Hopper, so three or four jobs reach the 700 W cap (gpu-burn at 100 % draws ~630 W,
# driver590 capture :2018), 4 % memory bandwidth (11 % there at full load, :1951) and 15 GiB
# each, like the 15690 MiB gpu_burn process there (:2094).
_HOPPER_JOB = Workload(power_w=200.0, utilization=0.35, memory_utilization=0.04, memory_bytes=15 * _GIB)

H100_SXM = SkuProfile(
    sku="H100",
    name="NVIDIA H100 80GB HBM3",  # H100SXMx8_nvidia-smi-a.txt:9
    thermal_scale=ThermalScale.TLIMIT,
    shutdown_c=-8.0,  # H100SXMx8:174
    slowdown_c=-2.0,  # H100SXMx8:175
    max_operating_c=0.0,  # H100SXMx8:176
    memory_max_operating_c=0.0,  # H100SXMx8:179
    # 30 °C (H100SXMx8:172) + 57 margin (:173), as 7 of its 8 GPUs and the driver590 capture
    # (41 + 46, :1663-1664); GPU 6 implies 83 (:1516-1517), its T.Limit following another sensor.
    max_operating_temperature_c=87.0,
    memory_max_temperature_c=95.0,  # assumption: HBM3 limit, as A100's HBM2e (A100SXMx4:172)
    power_idle_w=85.0,  # H100SXMx8:405, :629, :853 (idle 83-86 W)
    power_default_limit_w=700.0,  # H100SXMx8:184
    power_min_limit_w=200.0,  # H100SXMx8:185
    power_max_limit_w=700.0,  # H100SXMx8:186
    sm_clock_idle_mhz=345.0,  # H100SXMx8:198
    sm_clock_max_mhz=1980.0,  # H100SXMx8:211
    memory_clock_max_mhz=2619.0,  # H100SXMx8:212
    memory_total_bytes=81559 * _MIB,  # H100SXMx8:105
    thermal=_AIR_COOLED_SXM,
    job=_HOPPER_JOB,
)

H200_SXM = SkuProfile(
    sku="H200",
    name="NVIDIA H200",  # H200_nvidia-smi-a.txt:9
    thermal_scale=ThermalScale.TLIMIT,
    shutdown_c=-8.0,  # H200:167
    slowdown_c=-2.0,  # H200:168
    max_operating_c=0.0,  # H200:169
    memory_max_operating_c=0.0,  # H200:172
    max_operating_temperature_c=87.0,  # 28 °C (H200:165) + 59 margin (H200:166)
    memory_max_temperature_c=95.0,  # assumption, as for H100
    power_idle_w=75.0,  # H200:174 (74.58 W)
    power_default_limit_w=700.0,  # H200:177
    power_min_limit_w=200.0,  # H200:178
    power_max_limit_w=700.0,  # H200:179
    sm_clock_idle_mhz=345.0,  # H200:191
    sm_clock_max_mhz=1980.0,  # H200:204
    memory_clock_max_mhz=3201.0,  # H200:205
    memory_total_bytes=143771 * _MIB,  # H200:98
    # HBM3e read 25 °C beside a 28 °C die at 75 W (H200:165/171): no offset over inlet.
    thermal=dataclasses.replace(_AIR_COOLED_SXM, memory_offset_c=0.0),
    job=_HOPPER_JOB,
)

A100_SXM = SkuProfile(
    sku="A100",
    name="NVIDIA A100-SXM4-80GB",  # A100SXMx4_nvidia-smi-a.txt:9
    thermal_scale=ThermalScale.ABSOLUTE,
    shutdown_c=92.0,  # A100SXMx4:167
    slowdown_c=89.0,  # A100SXMx4:168
    max_operating_c=85.0,  # A100SXMx4:169
    memory_max_operating_c=95.0,  # A100SXMx4:172
    max_operating_temperature_c=85.0,  # A100SXMx4:169
    memory_max_temperature_c=95.0,  # A100SXMx4:172
    power_idle_w=60.0,  # A100SXMx4:174, :391, :608 (58.8-62.2 W)
    power_default_limit_w=500.0,  # A100SXMx4:177
    power_min_limit_w=100.0,  # A100SXMx4:178
    power_max_limit_w=500.0,  # A100SXMx4:179
    sm_clock_idle_mhz=210.0,  # A100SXMx4:191
    sm_clock_max_mhz=1410.0,  # A100SXMx4:204
    memory_clock_max_mhz=1593.0,  # A100SXMx4:205
    memory_total_bytes=81920 * _MIB,  # A100SXMx4:98
    # HBM2e idles ~21 °C above the inlet the die implies (A100SXMx4:165/171, :382/388).
    thermal=dataclasses.replace(_AIR_COOLED_SXM, memory_offset_c=20.0),
    # Modelling assumption: an Ampere job draws ~150 W and 40 % of the SMs.
    job=Workload(power_w=150.0, utilization=0.4, memory_utilization=0.05, memory_bytes=15 * _GIB),
)

PROFILES: Mapping[str, SkuProfile] = MappingProxyType({p.sku: p for p in (H100_SXM, H200_SXM, A100_SXM)})


def find_profile(sku: str) -> SkuProfile | None:
    """The profile for a short SKU name, any case ("h100", "H100"), or None if unknown."""
    return PROFILES.get(sku.strip().upper())


# The first-order plant (one RC node, tau = 20 s, R = 0.05 °C/W: the design priors), a profile
# option for tests and for judging the forecast on a plant of its own family.
FIRST_ORDER_TAU_S = 20.0


def first_order(profile: SkuProfile) -> SkuProfile:
    """`profile` with a first-order plant of the same steady-state resistance, tau = 20 s."""
    resistance = profile.thermal.resistance_c_per_w
    thermal = dataclasses.replace(
        profile.thermal,
        die_resistance_c_per_w=0.0,
        sink_resistance_c_per_w=resistance,
        sink_capacity_j_per_c=FIRST_ORDER_TAU_S / resistance,
    )
    return dataclasses.replace(profile, thermal=thermal)


def with_spread(profile: SkuProfile, rng: random.Random, ratio: float) -> SkuProfile:
    """`profile` with each R, each C and the power per job scaled by its own draw in [1-ratio, 1+ratio].

    One board is never quite its datasheet: a few percent (the default) is the spread of one
    fleet; 0.3 is a plant the forecast was not fitted to.
    """
    if not 0 <= ratio < 1:
        msg = f"physics spread must be in [0, 1), got {ratio}"
        raise ValueError(msg)

    def draw(value: float) -> float:
        return value * (1.0 + rng.uniform(-ratio, ratio))

    model = profile.thermal
    thermal = dataclasses.replace(
        model,
        die_resistance_c_per_w=draw(model.die_resistance_c_per_w),
        die_capacity_j_per_c=draw(model.die_capacity_j_per_c),
        sink_resistance_c_per_w=draw(model.sink_resistance_c_per_w),
        sink_capacity_j_per_c=draw(model.sink_capacity_j_per_c),
    )
    job = dataclasses.replace(profile.job, power_w=draw(profile.job.power_w))
    return dataclasses.replace(profile, thermal=thermal, job=job)
