"""Tests of the simulated source: readings as NVML gives them, control, events, determinism."""

from __future__ import annotations

import math
import re
import statistics
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gpuwatch.sources.base import SourceReading
from gpuwatch.sources.clock import ManualClock
from gpuwatch.sources.model import ClockEventReason, ThermalScale
from gpuwatch.sources.plausible import screen
from gpuwatch.sources.sim import SimSource, open_sim
from gpuwatch.sources.sim.profiles import H100_SXM
from gpuwatch.sources.sim.scenario import ScenarioError, parse_scenario

SCENARIOS = Path(__file__).parent.parent.parent / "gpuwatch" / "sources" / "sim" / "scenarios"
UUID = re.compile(r"^GPU-5e7f0000-[0-9a-f]{4}-[0-9a-f]{4}-0000-[0-9a-f]{12}$")


def quiet(skus: str = 'sku = "H100"\ncount = 2', *, jobs: int = 0, inlet_c: float = 25.0, events: str = ""):
    """A scenario with held jobs only (no random arrivals) and no spread, so the physics can be predicted."""
    load = f"[load]\njobs = {jobs}\narrival_per_s = 0"
    text = f"inlet_c = {inlet_c}\nspread = 0\n{load}\n[[gpus]]\n{skus}\n{events}"
    return parse_scenario(text, "quiet.toml")


def temperatures(reading: SourceReading) -> list[float]:
    return [sample.reading.temperature_c for sample in reading.gpus if sample.reading]


class TestIdentity:
    """GPUs carry stable uuids from seed and index, HGX bus ids, driver "sim" and the SKU's limits."""

    def test_identities(self):
        identities = [s.identity for s in open_sim("2xH100,2xA100", ManualClock(), seed=5).read().gpus]
        assert [i.index for i in identities] == [0, 1, 2, 3]
        assert all(UUID.match(i.uuid) for i in identities)
        assert len({i.uuid for i in identities}) == len({i.pci_bus_id for i in identities}) == 4
        assert identities[0].pci_bus_id == "00000000:18:00.0"
        assert {i.driver_version for i in identities} == {"sim"}
        assert [i.sku for i in identities] == ["H100", "H100", "A100", "A100"]
        assert identities[0].name == "NVIDIA H100 80GB HBM3"
        assert identities[0].thermal_limits.scale is ThermalScale.TLIMIT
        assert identities[0].thermal_limits.slowdown_c == -2.0
        assert identities[2].thermal_limits.scale is ThermalScale.ABSOLUTE
        assert identities[2].thermal_limits.max_operating_c == 85.0
        assert identities[0].power_default_limit_w == 700.0

    def test_uuid_depends_on_seed(self):
        first = open_sim("1xH100", ManualClock(), seed=1).read().gpus[0].identity.uuid
        second = open_sim("1xH100", ManualClock(), seed=2).read().gpus[0].identity.uuid
        assert first != second

    def test_ninth_gpu_is_on_the_next_pci_domain(self):
        identities = [s.identity for s in open_sim("9xH200", ManualClock()).read().gpus]
        assert identities[8].pci_bus_id == "00000001:18:00.0"


class TestReadings:
    """Readings are NVML-like: integer °C, margins from the SKU limits, base units, clock times."""

    def test_margins_follow_the_driver(self):
        clock = ManualClock()
        source = SimSource(quiet('sku = "H100"\n[[gpus]]\nsku = "A100"', jobs=3), clock)
        h100, a100 = (s.reading for s in source.read().gpus)
        assert h100
        assert a100
        for reading, max_op, slowdown, shutdown in ((h100, 87, 89, 95), (a100, 85, 89, 92)):
            assert reading.temperature_c == math.floor(reading.temperature_c)
            assert reading.margin_c == max_op - reading.temperature_c
            assert reading.slowdown_margin_c == slowdown - reading.temperature_c
            assert reading.shutdown_margin_c == shutdown - reading.temperature_c
            assert reading.memory_margin_c == 95 - reading.memory_temperature_c

    def test_times_come_from_the_clock(self):
        clock = ManualClock(start_monotonic=100.0, wall_offset=1_000.0)
        source = open_sim("1xH100", clock)
        clock.advance(7.5)
        reading = source.read().gpus[0].reading
        assert reading
        assert (reading.monotonic, reading.taken_at) == (107.5, 1_107.5)

    @pytest.mark.parametrize("spec", ["8xH100", "2xH200,2xA100", str(SCENARIOS / "cooling-fault.toml")])
    def test_an_hour_passes_the_plausibility_screen(self, spec):
        clock = ManualClock()
        source = open_sim(spec, clock, seed=11)
        for _ in range(120):
            clock.advance(30.0)
            for sample in source.read().gpus:
                assert sample.reading
                assert screen(sample.reading)[1] == ()

    def test_sw_thermal_bit_exactly_when_reported_margin_is_not_positive(self):
        clock = ManualClock()
        source = open_sim(str(SCENARIOS / "cooling-fault.toml"), clock)
        seen_hot = False
        for _ in range(900):
            clock.advance(1.0)
            reading = source.read().gpus[3].reading
            assert reading
            hot = reading.margin_c is not None and reading.margin_c <= 0
            seen_hot |= hot
            assert hot == reading.has_reason(ClockEventReason.SW_THERMAL_SLOWDOWN)
        assert seen_hot


class TestStartup:
    """The first read looks like a server that has been busy for a while, not one just switched on."""

    def test_first_read_is_at_the_steady_state_of_the_load(self):
        source = SimSource(quiet(jobs=3), ManualClock())
        # 25 °C inlet + 0.05 °C/W * (85 W idle + 3 * 200 W) = 59.25 °C, reported as 59.
        assert temperatures(source.read()) == [59.0, 59.0]

    def test_demo_gpus_differ(self):
        reading = open_sim("8xH100", ManualClock()).read()
        powers = {sample.reading.power_w for sample in reading.gpus if sample.reading}
        assert len(set(temperatures(reading))) >= 3
        assert len(powers) >= 3
        assert max(temperatures(reading)) >= 40.0


class TestControl:
    """Jobs, inlet and cooling set through the source act from the moment they are set."""

    def test_set_jobs_heats_to_the_new_steady_state(self):
        clock = ManualClock()
        source = SimSource(quiet(), clock)
        source.set_jobs(0, 3)
        clock.advance(600.0)
        assert source.jobs(0) == 3
        assert temperatures(source.read()) == [59.0, 29.0]

    def test_change_counts_from_when_it_was_made(self):
        clock = ManualClock()
        source = SimSource(quiet(), clock)
        clock.advance(100.0)
        source.set_jobs(0, 3)
        clock.advance(20.0)
        reading = source.read().gpus[0].reading
        assert reading
        # From 29.25 towards 59.25 °C: the die's fast part (0.02 °C/W * 600 W) within seconds and
        # 20 s of the sink's slow climb give 43.4 °C, not the 59 that 600 s would give.
        assert reading.temperature_c == 43.0

    def test_start_and_finish_job(self):
        source = SimSource(quiet(), ManualClock())
        source.start_job(1)
        source.start_job(1)
        source.finish_job(1)
        assert (source.jobs(0), source.jobs(1)) == (0, 1)
        source.finish_job(1)
        with pytest.raises(ValueError, match="GPU 1 holds no job"):
            source.finish_job(1)
        with pytest.raises(IndexError, match="indexes are 0 to 1"):
            source.start_job(2)

    def test_cooling_and_inlet(self):
        clock = ManualClock()
        source = SimSource(quiet(jobs=2), clock)
        source.set_cooling(2.0, gpu=1)
        source.set_inlet(35.0)
        clock.advance(900.0)
        # 35 + 0.05 * 485 = 59.25; with R_sa doubled 35 + (0.02 + 0.06) * 485 = 73.8 °C, which the
        # sink (now twice as slow, ~250 s) nearly reaches in 900 s.
        assert temperatures(source.read()) == [59.0, 73.0]

    def test_clock_ratio_falls_under_the_power_cap(self):
        source = SimSource(quiet(jobs=1), ManualClock())
        assert source.clock_ratio(0) == 1.0
        source.set_jobs(0, 5)
        assert source.clock_ratio(0) == pytest.approx(615 / 1000)

    def test_background_arrivals_start_jobs(self):
        clock = ManualClock()
        source = SimSource(quiet(), clock, seed=1)
        source.set_background(0.5, mean_job_s=60.0, gpu=0)
        clock.advance(600.0)
        assert source.jobs(0) > 5
        assert source.jobs(1) == 0


class TestScenarioEvents:
    """Scenario events act at their time on the GPUs they name, however far the clock jumps."""

    EVENTS = "[[events]]\nat_s = 60\ngpus = [1]\ncooling_factor = 3.0\n[[events]]\nat_s = 400\njobs = 0\n"

    def test_cooling_fault_on_one_gpu(self):
        clock = ManualClock()
        source = SimSource(quiet(jobs=2, events=self.EVENTS), clock)
        clock.advance(59.0)
        before = temperatures(source.read())
        clock.advance(241.0)
        after = temperatures(source.read())
        assert before[0] == before[1]
        # R_sa x3: towards 25 + (0.02 + 0.09) * 485 = 78.4 °C, over minutes (tau ~ 360 s).
        assert after[1] - after[0] > 10.0
        clock.advance(600.0)
        assert source.jobs(0) == source.jobs(1) == 0

    def test_one_jump_equals_many_small_reads(self):
        jumping, stepping = ManualClock(), ManualClock()
        jumper = SimSource(quiet(jobs=2, events=self.EVENTS), jumping)
        stepper = SimSource(quiet(jobs=2, events=self.EVENTS), stepping)
        for _ in range(700):
            stepping.advance(1.0)
            stepper.read()
        jumping.advance(700.0)
        assert jumper.read() == stepper.read()


class TestDeterminism:
    """The same seed and clock sequence give identical readings; another seed gives other ones."""

    @staticmethod
    def run(seed: int) -> list[SourceReading]:
        clock = ManualClock()
        source = open_sim("8xH100", clock, seed=seed)
        readings = []
        for step in range(60):
            clock.advance(1.0 + step % 7)
            readings.append(source.read())
        return readings

    def test_same_seed_same_readings(self):
        assert self.run(3) == self.run(3)

    def test_other_seed_other_readings(self):
        first, second = self.run(3), self.run(4)
        assert [temperatures(r) for r in first] != [temperatures(r) for r in second]


class TestBoardToBoard:
    """Each GPU is its own board: R, C and power per job drawn around the profile, noisy power readings."""

    def boards(self, spread: str, count: int = 16):
        gpus = f'[[gpus]]\nsku = "H100"\ncount = {count}'
        text = f"seed = 11\nspread = {spread}\n[load]\njobs = 0\narrival_per_s = 0\n{gpus}"
        return [gpu.profile for gpu in SimSource(parse_scenario(text), ManualClock()).physics_now()]

    def test_parameters_spread_within_the_ratio_and_differ(self):
        profiles = self.boards("0.1")
        for name in ("die_resistance_c_per_w", "die_capacity_j_per_c", "sink_resistance_c_per_w"):
            nominal = getattr(H100_SXM.thermal, name)
            values = [getattr(p.thermal, name) for p in profiles]
            assert all(0.9 * nominal <= v <= 1.1 * nominal for v in values)
            assert len(set(values)) == len(values)
        job_w = [p.job.power_w for p in profiles]
        assert all(180.0 <= w <= 220.0 for w in job_w)
        assert len(set(job_w)) == len(job_w)

    def test_no_spread_is_the_profile(self):
        assert {p.thermal for p in self.boards("0")} == {H100_SXM.thermal}

    def test_a_spread_past_its_range_is_refused(self):
        with pytest.raises(ScenarioError, match="spread"):
            parse_scenario('spread = 0.95\n[[gpus]]\nsku = "H100"')

    def test_power_readings_carry_up_to_two_percent_noise_in_whole_watts(self):
        source = SimSource(quiet(jobs=3), ManualClock())
        clock = source._clock
        readings = []
        for _ in range(200):
            clock.advance(1.0)
            readings += [gpu.reading.power_w for gpu in source.read().gpus]
        true_w = 85.0 + 3 * 200.0
        assert all(w == round(w) for w in readings)
        assert all(abs(w - true_w) <= 0.02 * true_w + 0.5 for w in readings)
        spread_w = statistics.pstdev(readings)
        assert 0.005 * true_w < spread_w < 0.015 * true_w  # about 1 %, as the profile says

    def test_chassis_cooling_factor_is_settled_from_the_first_reading(self):
        load = "[load]\njobs = 3\narrival_per_s = 0"
        text = f'inlet_c = 30.0\ncooling_factor = 2.0\nspread = 0\n{load}\n[[gpus]]\nsku = "H100"'
        source = SimSource(parse_scenario(text), ManualClock())
        thermal = H100_SXM.thermal
        steady_c = 30.0 + (thermal.die_resistance_c_per_w + 2.0 * thermal.sink_resistance_c_per_w) * 685.0
        assert source.read().gpus[0].reading.temperature_c == math.floor(steady_c)


class TestVirtualTime:
    """An hour of eight GPUs runs in virtual time far faster than real time."""

    def test_an_hour_of_8_gpus_in_1s_steps(self):
        clock = ManualClock()
        source = open_sim("8xH100", clock)
        started = time.perf_counter()
        for _ in range(3600):
            clock.advance(1.0)
            source.read()
        # Generous bound for a loaded CI machine; it takes well under a second on a laptop.
        assert time.perf_counter() - started < 10.0


class TestCounters:
    """Energy and slowdown counters never go back, however the clock moves."""

    @settings(max_examples=40, deadline=None)
    @given(advances=st.lists(st.floats(0.0, 300.0), min_size=1, max_size=15), seed=st.integers(0, 2**32))
    def test_monotone(self, advances, seed):
        clock = ManualClock()
        source = open_sim("2xH100,1xA100", clock, seed=seed)
        source.set_background(0.1, gpu=0)
        source.set_cooling(3.0, gpu=0)
        previous = source.read()
        for seconds in advances:
            clock.advance(seconds)
            current = source.read()
            for old, new in zip(previous.gpus, current.gpus, strict=True):
                assert old.reading
                assert new.reading
                assert new.reading.energy_j >= old.reading.energy_j
                old_counts, new_counts = old.reading.slowdown_counters, new.reading.slowdown_counters
                assert new_counts.hw_thermal_slowdown_s >= old_counts.hw_thermal_slowdown_s
                assert new_counts.sw_power_cap_s >= old_counts.sw_power_cap_s
            previous = current
