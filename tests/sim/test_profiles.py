"""Tests of the SKU profiles against the real nvidia-smi captures they cite."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from gpuwatch.sources.model import ThermalLimits, ThermalScale
from gpuwatch.sources.sim.profiles import A100_SXM, H100_SXM, H200_SXM, PROFILES, SkuProfile, find_profile

CAPTURES = Path(__file__).parent.parent / "data" / "nvidia-smi-q"
MIB = 1024 * 1024


def values(capture: str, label: str, section: str | None = None) -> list[str]:
    """Every value of `label` in a capture (only the first one after each `section` header if given)."""
    lines = (CAPTURES / capture).read_text(encoding="utf-8").splitlines()
    pattern = re.compile(rf"^\s*{re.escape(label)}\s*:\s*(.*?)\s*$")
    if section is None:
        return [m.group(1) for line in lines if (m := pattern.match(line))]
    found = []
    for i, line in enumerate(lines):
        if line.strip() == section:
            found.append(next(m.group(1) for later in lines[i + 1 :] if (m := pattern.match(later))))
    return found


def number(text: str) -> float:
    return float(text.split(maxsplit=1)[0])


CASES = [
    (H100_SXM, "H100SXMx8_nvidia-smi-a.txt"),
    (H200_SXM, "H200_nvidia-smi-a.txt"),
    (A100_SXM, "A100SXMx4_nvidia-smi-a.txt"),
]


class TestProfilesMatchCaptures:
    """Each profile's identity, power limits, clocks and memory are the values its capture reports."""

    @pytest.mark.parametrize(("profile", "capture"), CASES)
    def test_identity_limits_clocks_memory(self, profile: SkuProfile, capture: str):
        assert set(values(capture, "Product Name")) == {profile.name}
        assert number(values(capture, "Default Power Limit")[0]) == profile.power_default_limit_w
        assert number(values(capture, "Min Power Limit")[0]) == profile.power_min_limit_w
        assert number(values(capture, "Max Power Limit")[0]) == profile.power_max_limit_w
        assert number(values(capture, "SM", section="Max Clocks")[0]) == profile.sm_clock_max_mhz
        assert number(values(capture, "Memory", section="Max Clocks")[0]) == profile.memory_clock_max_mhz
        total_mib = number(values(capture, "Total", section="FB Memory Usage")[0])
        assert total_mib * MIB == profile.memory_total_bytes

    @pytest.mark.parametrize(("profile", "capture"), CASES)
    def test_idle_power_is_within_the_captured_idle_draws(self, profile: SkuProfile, capture: str):
        draws = [number(v) for v in values(capture, "Power Draw") if v != "N/A"]
        board_draws = draws[::2] if profile is not A100_SXM else draws
        assert min(board_draws) - 5 <= profile.power_idle_w <= max(board_draws) + 5


class TestThermalScales:
    """Hopper limits are T.Limit offsets around the implied 87 °C; A100 limits are absolute."""

    @pytest.mark.parametrize("capture", ["H100SXMx8_nvidia-smi-a.txt", "H200_nvidia-smi-a.txt"])
    def test_hopper_gpus_imply_87_c(self, capture):
        currents = [number(v) for v in values(capture, "GPU Current Temp")]
        margins = [number(v) for v in values(capture, "GPU T.Limit Temp")]
        implied = [c + m for c, m in zip(currents, margins, strict=True)]
        # All but one GPU of the x8 capture imply 87 °C; GPU 6 implies 83 (its T.Limit follows
        # another sensor), so the profile takes the value the majority shows.
        assert max(set(implied), key=implied.count) == H100_SXM.max_operating_temperature_c == 87.0
        assert implied.count(87.0) >= len(implied) - 1
        assert number(values(capture, "GPU Shutdown T.Limit Temp")[0]) == H100_SXM.shutdown_c
        assert number(values(capture, "GPU Slowdown T.Limit Temp")[0]) == H100_SXM.slowdown_c

    def test_hopper_profiles_report_offsets(self):
        for profile in (H100_SXM, H200_SXM):
            assert profile.thermal_limits() == ThermalLimits(ThermalScale.TLIMIT, -8.0, -2.0, 0.0, 0.0)
            assert profile.max_operating_temperature_c == 87.0

    def test_a100_reports_absolute_limits_from_its_capture(self):
        capture = "A100SXMx4_nvidia-smi-a.txt"
        limits = A100_SXM.thermal_limits()
        assert limits.scale is ThermalScale.ABSOLUTE
        assert limits.shutdown_c == number(values(capture, "GPU Shutdown Temp")[0]) == 92.0
        assert limits.slowdown_c == number(values(capture, "GPU Slowdown Temp")[0]) == 89.0
        assert limits.max_operating_c == number(values(capture, "GPU Max Operating Temp")[0]) == 85.0
        memory_max_c = number(values(capture, "Memory Max Operating Temp")[0])
        assert limits.memory_max_operating_c == memory_max_c == 95.0


class TestFindProfile:
    """SKU names are found in any case; unknown names give None."""

    @pytest.mark.parametrize(("name", "sku"), [("H100", "H100"), ("h200", "H200"), (" a100 ", "A100")])
    def test_known(self, name, sku):
        profile = find_profile(name)
        assert profile is not None
        assert profile.sku == sku

    @pytest.mark.parametrize("name", ["B200", "", "H100SXM", "V100"])
    def test_unknown(self, name):
        assert find_profile(name) is None

    def test_catalogue(self):
        assert sorted(PROFILES) == ["A100", "H100", "H200"]
