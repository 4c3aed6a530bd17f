"""SKU presets for the fake NVML library, with values taken from real nvidia-smi captures.

Every number cites the capture in tests/data/nvidia-smi-q/ it comes from (file:line). Values a
capture does not show (energy counter, slowdown counters) start at zero: the driver starts them
there at load.
"""

from __future__ import annotations

from dataclasses import dataclass

MIB = 1024 * 1024
CLOCK_EVENT_GPU_IDLE = 0x1  # nvmlClocksEventReasonGpuIdle: "Idle : Active" in every capture


@dataclass(frozen=True, slots=True)
class TLimitOffsets:
    """Limits as offsets on the T.Limit scale (fields 193-196), °C; 0 = max operating."""

    shutdown_c: int
    slowdown_c: int
    memory_max_c: int
    gpu_max_c: int


@dataclass(frozen=True, slots=True)
class AbsoluteThresholds:
    """Limits as absolute temperatures (nvmlDeviceGetTemperatureThreshold), °C."""

    shutdown_c: int
    slowdown_c: int
    gpu_max_c: int
    memory_max_c: int


@dataclass(frozen=True, slots=True)
class SkuProfile:
    """What one GPU model reports through NVML at idle, in NVML's own units (mW, MiB, MHz, %)."""

    name: str
    driver_version: str
    temperature_c: int
    margin_c: int | None  # nvmlDeviceGetMarginTemperature; None = NOT_SUPPORTED
    tlimit: TLimitOffsets | None  # None = fields 193-196 NOT_SUPPORTED
    thresholds: AbsoluteThresholds | None  # None = every threshold NOT_SUPPORTED
    memory_temperature_c: int
    power_mw: int
    power_limit_mw: int
    default_limit_mw: int
    min_limit_mw: int
    max_limit_mw: int
    utilization_gpu_pct: int
    utilization_memory_pct: int
    memory_total_mib: int
    memory_used_mib: int
    memory_free_mib: int
    sm_clock_mhz: int
    memory_clock_mhz: int
    max_sm_clock_mhz: int
    max_memory_clock_mhz: int
    pstate: int
    pcie_replays: int
    recovery_action: int | None  # field 230; None = NOT_SUPPORTED (older driver: no line shown)
    clock_event_reasons: int = CLOCK_EVENT_GPU_IDLE


# tests/data/nvidia-smi-q/H100SXMx8_nvidia-smi-a.txt, first GPU (lines 4-212).
H100_SXM = SkuProfile(
    name="NVIDIA H100 80GB HBM3",  # :9
    driver_version="565.57.01",  # :4
    temperature_c=30,  # :172
    margin_c=57,  # :173 GPU T.Limit Temp
    tlimit=TLimitOffsets(shutdown_c=-8, slowdown_c=-2, memory_max_c=0, gpu_max_c=0),  # :174-176, :179
    thresholds=None,  # the capture states only T.Limit offsets
    memory_temperature_c=36,  # :178
    power_mw=100_890,  # :181
    power_limit_mw=700_000,  # :182
    default_limit_mw=700_000,  # :184
    min_limit_mw=200_000,  # :185
    max_limit_mw=700_000,  # :186
    utilization_gpu_pct=0,  # :119
    utilization_memory_pct=0,  # :120
    memory_total_mib=81_559,  # :105
    memory_used_mib=1,  # :107
    memory_free_mib=81_106,  # :108
    sm_clock_mhz=345,  # :198
    memory_clock_mhz=2619,  # :199
    max_sm_clock_mhz=1980,  # :211
    max_memory_clock_mhz=2619,  # :212
    pstate=0,  # :92
    pcie_replays=7,  # :85
    recovery_action=0,  # :59 "None"
)

# tests/data/nvidia-smi-q/A100SXMx4_nvidia-smi-a.txt, first GPU (lines 4-205).
A100_SXM4_80GB = SkuProfile(
    name="NVIDIA A100-SXM4-80GB",  # :9
    driver_version="555.42.02",  # :4
    temperature_c=25,  # :165
    margin_c=None,  # :166 GPU T.Limit Temp N/A
    tlimit=None,
    thresholds=AbsoluteThresholds(shutdown_c=92, slowdown_c=89, gpu_max_c=85, memory_max_c=95),  # :167-172
    memory_temperature_c=43,  # :171
    power_mw=59_770,  # :174
    power_limit_mw=500_000,  # :175
    default_limit_mw=500_000,  # :177
    min_limit_mw=100_000,  # :178
    max_limit_mw=500_000,  # :179
    utilization_gpu_pct=0,  # :112
    utilization_memory_pct=0,  # :113
    memory_total_mib=81_920,  # :98
    memory_used_mib=1,  # :100
    memory_free_mib=81_158,  # :101
    sm_clock_mhz=210,  # :191
    memory_clock_mhz=1593,  # :192
    max_sm_clock_mhz=1410,  # :204
    max_memory_clock_mhz=1593,  # :205
    pstate=0,  # :85
    pcie_replays=0,  # :78
    recovery_action=None,  # no "GPU Recovery Action" line in this capture
)

# tests/data/nvidia-smi-q/H200_nvidia-smi-a.txt (lines 4-205).
H200 = SkuProfile(
    name="NVIDIA H200",  # :9
    driver_version="550.90.12",  # :4
    temperature_c=28,  # :165
    margin_c=59,  # :166 GPU T.Limit Temp
    tlimit=TLimitOffsets(shutdown_c=-8, slowdown_c=-2, memory_max_c=0, gpu_max_c=0),  # :167-169, :172
    thresholds=None,
    memory_temperature_c=25,  # :171
    power_mw=74_580,  # :174
    power_limit_mw=700_000,  # :175
    default_limit_mw=700_000,  # :177
    min_limit_mw=200_000,  # :178
    max_limit_mw=700_000,  # :179
    utilization_gpu_pct=0,  # :112
    utilization_memory_pct=0,  # :113
    memory_total_mib=143_771,  # :98
    memory_used_mib=1,  # :100
    memory_free_mib=143_072,  # :101
    sm_clock_mhz=345,  # :191
    memory_clock_mhz=3199,  # :192
    max_sm_clock_mhz=1980,  # :204
    max_memory_clock_mhz=3201,  # :205
    pstate=0,  # :85
    pcie_replays=0,  # :78
    recovery_action=None,  # no "GPU Recovery Action" line in this capture
)

PROFILES: dict[str, SkuProfile] = {"H100": H100_SXM, "A100": A100_SXM4_80GB, "H200": H200}
