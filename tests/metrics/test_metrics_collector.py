"""The gpuwatch_* collector (DESIGN §4): names, types, base units, labels, absence, self-health."""

from __future__ import annotations

from collector_builders import LABELS, collected, reading, registry, sample, snapshot
from metrics_helpers import families, samples
from prometheus_client import generate_latest

from gpuwatch.exposure.board import Board
from gpuwatch.exposure.metrics.collector import Observation
from gpuwatch.sources.model import ClockEventReason, GpuHealth, SampleHealth, SlowdownCounters, frozen_counts


class TestReadings:
    """Per-GPU readings come out in base units, under the names of DESIGN §4."""

    def test_base_units(self):
        values = reading(
            temperature_c=61.0,
            memory_temperature_c=55.0,
            margin_c=26.0,
            slowdown_margin_c=28.0,
            power_w=631.95,
            power_limit_w=700.0,
            energy_j=12_345.5,
            utilization_ratio=0.97,
            memory_used_bytes=20_780_679_168,
            sm_clock_hz=1.755e9,
        )
        got = collected(snapshot(sample(0, values)))
        expected = {
            "gpuwatch_gpu_temperature_celsius": 61.0,
            "gpuwatch_gpu_memory_temperature_celsius": 55.0,
            "gpuwatch_gpu_thermal_margin_celsius": 26.0,
            "gpuwatch_gpu_slowdown_margin_celsius": 28.0,
            "gpuwatch_gpu_power_watts": 631.95,
            "gpuwatch_gpu_power_limit_watts": 700.0,
            "gpuwatch_gpu_energy_joules_total": 12_345.5,
            "gpuwatch_gpu_utilization_ratio": 0.97,
            "gpuwatch_gpu_memory_used_bytes": 20_780_679_168,
            "gpuwatch_gpu_memory_total_bytes": 85_520_809_984,
            "gpuwatch_gpu_sm_clock_hertz": 1.755e9,
            "gpuwatch_gpu_sm_clock_max_hertz": 1.98e9,
        }
        assert {name: got.get_sample_value(name, LABELS) for name in expected} == expected

    def test_unsupported_fields_are_absent_never_zero(self):
        text = generate_latest(collected(snapshot(sample(0, reading(temperature_c=40.0)))))
        assert b"gpuwatch_gpu_temperature_celsius{" in text
        for name in (
            b"gpuwatch_gpu_memory_temperature_celsius",
            b"gpuwatch_gpu_power_watts",
            b"energy_joules",
        ):
            assert name not in text  # neither a sample nor an empty HELP/TYPE block
        assert b"gpuwatch_gpu_clock_event_active" not in text  # no mask: reasons unknown, not inactive

    def test_counters_are_typed_counters(self):
        values = reading(
            energy_j=10.0, pcie_replay_count=3, slowdown_counters=SlowdownCounters(sw_power_cap_s=4.0)
        )
        shot = snapshot(sample(0, values, xid_errors=frozen_counts({"79": 1})))
        parsed = families(generate_latest(collected(shot)))
        counters = {name for name, family in parsed.items() if family.type == "counter"}
        # sample_dropped_values is a counter too; nothing was dropped here, so it is absent.
        assert counters == {
            "gpuwatch_samples",
            "gpuwatch_sample_errors",
            "gpuwatch_gpu_energy_joules",
            "gpuwatch_gpu_pcie_replays",
            "gpuwatch_gpu_clock_event_seconds",
            "gpuwatch_gpu_xid_errors",
        }
        text = generate_latest(collected(shot))
        for name in counters:  # as written, not as a parser reads them back
            assert samples(text, name + "_total")
            assert not samples(text, name)
            assert f"# TYPE {name}_total counter\n".encode() in text

    def test_clock_events_by_reason(self):
        mask = ClockEventReason.SW_POWER_CAP | ClockEventReason.SW_THERMAL_SLOWDOWN
        counters = SlowdownCounters(sw_power_cap_s=120.5, sw_thermal_slowdown_s=3.25)
        got = collected(
            snapshot(sample(0, reading(clock_event_reasons=int(mask), slowdown_counters=counters)))
        )
        active = {
            reason: got.get_sample_value("gpuwatch_gpu_clock_event_active", {**LABELS, "reason": reason})
            for reason in ("sw_power_cap", "sw_thermal_slowdown", "hw_thermal_slowdown", "idle")
        }
        assert active == {
            "sw_power_cap": 1.0,
            "sw_thermal_slowdown": 1.0,
            "hw_thermal_slowdown": 0.0,
            "idle": 0.0,
        }
        seconds = "gpuwatch_gpu_clock_event_seconds_total"
        assert got.get_sample_value(seconds, {**LABELS, "reason": "sw_power_cap"}) == 120.5
        assert got.get_sample_value(seconds, {**LABELS, "reason": "sw_thermal_slowdown"}) == 3.25
        assert got.get_sample_value(seconds, {**LABELS, "reason": "hw_thermal_slowdown"}) is None

    def test_xids_by_code(self):
        shot = snapshot(sample(0, xid_errors=frozen_counts({"79": 1, "13": 4}), last_xid=79))
        got = collected(shot)
        assert got.get_sample_value("gpuwatch_gpu_xid_errors_total", {**LABELS, "xid": "13"}) == 4
        assert got.get_sample_value("gpuwatch_gpu_xid_errors_total", {**LABELS, "xid": "79"}) == 1
        assert got.get_sample_value("gpuwatch_gpu_last_xid", LABELS) == 79


class TestLabels:
    """Identity lives only in gpuwatch_gpu_info; no family carries a host name."""

    def test_identity_only_in_info(self):
        text = generate_latest(collected(snapshot(sample(0), sample(1))))
        info = samples(text, "gpuwatch_gpu_info")
        assert info == {
            (
                ("driver", "590.48.01"),
                ("gpu", str(n)),
                ("name", "NVIDIA H100 80GB HBM3"),
                ("pci_bus_id", f"00000000:1{n}:00.0"),
                ("uuid", f"GPU-test-{n:04d}"),
            ): 1.0
            for n in (0, 1)
        }
        per_family = {"state", "reason", "xid", "code", "field", "version"}
        for family in families(text).values():
            if family.name == "gpuwatch_gpu_info":
                continue
            for found in family.samples:
                assert set(found.labels) <= {"gpu", "uuid", *per_family}, found

    def test_no_hostname_label_anywhere(self):
        text = generate_latest(collected(snapshot(sample(0))))
        assert b"host" not in text.lower()


class TestHealth:
    """Self-health: up, gpu_up, last sample, duration, errors; a GPU that cannot be read is not repeated."""

    def test_lost_gpu_is_down_and_shows_no_stale_values(self):
        old = reading(temperature_c=70.0, power_w=600.0)
        shot = snapshot(sample(0), sample(1, old, health=GpuHealth.UNAVAILABLE, error="timed out"))
        got = collected(shot)
        one = {"gpu": "1", "uuid": "GPU-test-0001"}
        assert got.get_sample_value("gpuwatch_gpu_up", LABELS) == 1.0
        assert got.get_sample_value("gpuwatch_gpu_up", one) == 0.0
        assert got.get_sample_value("gpuwatch_gpu_temperature_celsius", one) is None
        assert got.get_sample_value("gpuwatch_gpu_power_watts", one) is None
        assert (
            got.get_sample_value(
                "gpuwatch_gpu_info",
                {
                    **one,
                    "name": "NVIDIA H100 80GB HBM3",
                    "pci_bus_id": "00000000:11:00.0",
                    "driver": "590.48.01",
                },
            )
            == 1.0
        )

    def test_sampling_health(self):
        health = SampleHealth(
            attempts=9,
            failures=frozen_counts({"GPU_IS_LOST": 2}),
            dropped_values=frozen_counts({"temperature_c": 1}),
            last_success=1_700_000_090.0,
            duration_s=0.0125,
        )
        got = collected(snapshot(sample(0), health=health))
        assert got.get_sample_value("gpuwatch_up") == 1.0
        assert got.get_sample_value("gpuwatch_samples_total") == 9
        assert got.get_sample_value("gpuwatch_last_sample_timestamp_seconds") == 1_700_000_090.0
        assert got.get_sample_value("gpuwatch_sample_duration_seconds") == 0.0125
        errors = {
            code: got.get_sample_value("gpuwatch_sample_errors_total", {"code": code})
            for code in ("GPU_IS_LOST", "TIMEOUT", "EXCEPTION")
        }
        assert errors == {"GPU_IS_LOST": 2, "TIMEOUT": 0, "EXCEPTION": 0}
        assert got.get_sample_value("gpuwatch_sample_dropped_values_total", {"field": "temperature_c"}) == 1

    def test_source_down(self):
        health = SampleHealth(attempts=3, source_error="NVML is gone")
        got = collected(snapshot(health=health))
        assert got.get_sample_value("gpuwatch_up") == 0.0
        assert got.get_sample_value("gpuwatch_last_sample_timestamp_seconds") is None

    def test_before_the_first_sample(self):
        got = registry(Observation(None, Board("sim:test", lambda d, _n: d).current.decision))
        assert got.get_sample_value("gpuwatch_up") == 0.0
        assert got.get_sample_value("gpuwatch_node_state", {"state": "unknown"}) == 1.0
        assert got.get_sample_value("gpuwatch_gpu_up", LABELS) is None
