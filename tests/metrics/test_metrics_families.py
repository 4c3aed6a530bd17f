"""The policy's families, HELP wording, freshness per scrape, live families, one render per decision."""

from __future__ import annotations

import dataclasses

import prometheus_client
import pytest
from collector_builders import LABELS, collected, reading, sample, snapshot
from metrics_helpers import families
from prometheus_client import CollectorRegistry, generate_latest
from serve_helpers import gpu, node

from gpuwatch.exposure.board import Board
from gpuwatch.exposure.metrics.collector import GpuwatchCollector, Observation
from gpuwatch.exposure.metrics.exposition import MetricsExposition
from gpuwatch.exposure.metrics.live import LiveCollector
from gpuwatch.exposure.publication import Publication
from gpuwatch.exposure.reservations import ReservationBook
from gpuwatch.exposure.tally import AdmissionTally, tally_slot
from gpuwatch.policy.decision import PriorityClass, Slots, ThermalState


class TestDecision:
    """The policy's verdict per GPU and node: a state set, pressure, predictions (absent when unknown)."""

    def test_state_set_has_one_current_state(self):
        decision = node(gpu(0, ThermalState.HOT, pressure=0.8), gpu(1))
        got = collected(snapshot(sample(0), sample(1)), decision)
        states = {
            state.value: got.get_sample_value("gpuwatch_gpu_state", {**LABELS, "state": state.value})
            for state in ThermalState
        }
        assert states == {state.value: float(state is ThermalState.HOT) for state in ThermalState}
        assert got.get_sample_value("gpuwatch_node_state", {"state": "hot"}) == 1.0
        assert got.get_sample_value("gpuwatch_gpu_pressure_ratio", LABELS) == 0.8
        assert got.get_sample_value("gpuwatch_node_pressure_ratio") == 0.8

    def test_predictions(self):
        hot = gpu(
            0, ThermalState.HOT, predicted_margin_c=-3.5, time_to_slowdown_s=27.0, sustainable_power_w=410.0
        )
        got = collected(snapshot(sample(0)), node(hot, gpu(1)))
        assert got.get_sample_value("gpuwatch_gpu_predicted_margin_celsius", LABELS) == -3.5
        assert got.get_sample_value("gpuwatch_gpu_time_to_slowdown_seconds", LABELS) == 27.0
        assert got.get_sample_value("gpuwatch_gpu_sustainable_power_watts", LABELS) == 410.0
        cool = {"gpu": "1", "uuid": "GPU-test-0001"}
        assert got.get_sample_value("gpuwatch_gpu_time_to_slowdown_seconds", cool) is None


class TestHelp:
    """HELP names the unit and says values come from the latest sample at the sampling interval."""

    @pytest.mark.parametrize(
        ("name", "unit"),
        [
            ("gpuwatch_gpu_temperature_celsius", "degrees Celsius"),
            ("gpuwatch_gpu_power_watts", "watts"),
            ("gpuwatch_gpu_sm_clock_hertz", "hertz"),
            ("gpuwatch_gpu_utilization_ratio", "ratio 0-1"),
            ("gpuwatch_gpu_energy_joules", "joules"),
            ("gpuwatch_gpu_predicted_margin_celsius", "degrees Celsius"),
            ("gpuwatch_gpu_time_to_slowdown_seconds", "seconds"),
        ],
    )
    def test_help(self, name, unit):
        values = reading(
            temperature_c=50.0, power_w=1.0, sm_clock_hz=1.0, utilization_ratio=0.5, energy_j=1.0
        )
        decision = node(gpu(0, predicted_margin_c=1.0, time_to_slowdown_s=9.0), gpu(1))
        documentation = families(generate_latest(collected(snapshot(sample(0, values)), decision)))[
            name
        ].documentation
        assert f"in {unit};" in documentation
        assert "latest sample (every --interval seconds)" in documentation


class TestFreshness:
    """Every collection is built from the observation of that moment: nothing is kept between scrapes."""

    def test_a_gpu_that_leaves_leaves_the_output(self):
        current = Observation(snapshot(sample(0), sample(1)), node(gpu(0), gpu(1)))
        fresh = CollectorRegistry()
        fresh.register(GpuwatchCollector(lambda: current, 1.0))
        one = {"gpu": "1", "uuid": "GPU-test-0001"}
        assert fresh.get_sample_value("gpuwatch_gpu_up", one) == 1.0
        current = Observation(snapshot(sample(0)), node(gpu(0)))
        assert fresh.get_sample_value("gpuwatch_gpu_up", one) is None
        assert fresh.get_sample_value("gpuwatch_gpu_state", {**one, "state": "ok"}) is None

    def test_nothing_registered_globally(self):
        before = set(prometheus_client.REGISTRY._names_to_collectors)
        board = Board("sim:test", lambda d, _n: d)
        exposition = MetricsExposition(board, 1.0)
        exposition.body()
        assert set(prometheus_client.REGISTRY._names_to_collectors) == before
        assert b"process_" not in exposition.body()
        assert b"python_" not in exposition.body()


class TestLiveFamilies:
    """Admissions and sample age are read at each scrape, between decisions too."""

    def test_admissions_by_decision_and_class(self):
        tally = AdmissionTally()
        tally.counts[tally_slot(PriorityClass.DEFAULT, admitted=True)] += 3
        tally.counts[tally_slot(PriorityClass.SHEDDABLE, admitted=False)] += 2
        decision = node(gpu(0))
        fresh = CollectorRegistry()
        fresh.register(
            LiveCollector(tally, lambda: Publication(decision, "sim:test"), lambda: decision.decided_at)
        )
        got = {
            (d, c): fresh.get_sample_value("gpuwatch_admissions_total", {"decision": d, "class": c})
            for d in ("admit", "deny")
            for c in ("critical", "default", "sheddable")
        }
        assert got == {
            ("admit", "critical"): 0, ("admit", "default"): 3, ("admit", "sheddable"): 0,
            ("deny", "critical"): 0, ("deny", "default"): 0, ("deny", "sheddable"): 2,
        }  # fmt: skip

    def test_sample_age_grows_between_decisions(self):
        decision = dataclasses.replace(node(gpu(0)), sample_age_s=0.5, decided_at=100.0)
        now = [100.0]
        fresh = CollectorRegistry()
        fresh.register(
            LiveCollector(AdmissionTally(), lambda: Publication(decision, "sim:test"), lambda: now[0])
        )
        assert fresh.get_sample_value("gpuwatch_sample_age_seconds") == 0.5
        now[0] = 104.0
        assert fresh.get_sample_value("gpuwatch_sample_age_seconds") == 4.5

    def test_slots_and_reservations_follow_the_admissions_taken(self):
        book = ReservationBook(horizon_s=60.0)
        decision = node(gpu(0, slots=Slots(4, 3, 1), reserved=1), gpu(1, slots=Slots(2, 1, 0)))
        publication = Publication(decision, "sim:test", book)
        fresh = CollectorRegistry()
        fresh.register(LiveCollector(AdmissionTally(), lambda: publication, lambda: decision.decided_at))

        def slots(index: int) -> dict[str, float | None]:
            labels = {"gpu": str(index), "uuid": f"GPU-test-{index:04d}"}
            return {
                cls.value: fresh.get_sample_value("gpuwatch_gpu_slots", {**labels, "class": cls.value})
                for cls in PriorityClass
            }

        def reserved(index: int) -> float | None:
            return fresh.get_sample_value(
                "gpuwatch_gpu_reserved_jobs", {"gpu": str(index), "uuid": f"GPU-test-{index:04d}"}
            )

        assert slots(0) == {"critical": 4, "default": 3, "sheddable": 1}
        assert (reserved(0), reserved(1)) == (1, 0)
        book.take(0)
        book.take(0)
        assert slots(0) == {"critical": 2, "default": 1, "sheddable": 0}
        assert slots(1) == {"critical": 2, "default": 1, "sheddable": 0}
        assert (reserved(0), reserved(1)) == (3, 0)


class TestExposition:
    """The decision families are rendered once per decision, before it is published; scrapes never wait."""

    def test_a_prepared_decision_is_ready_when_published(self):
        board = Board("sim:test", lambda d, _n: d)
        exposition = MetricsExposition(board, 1.0)
        first = node(gpu(0))
        exposition.prepare(snapshot(sample(0)), first)
        assert b"gpuwatch_gpu_up{" not in (exposition.ready_body() or b"")  # not published yet
        board.publish(first)
        ready = exposition.ready_body()
        assert ready is not None
        assert b'gpuwatch_gpu_up{gpu="0",uuid="GPU-test-0000"} 1.0' in ready

    def test_an_unprepared_decision_is_rendered_on_demand(self):
        board = Board("sim:test", lambda d, _n: d)
        exposition = MetricsExposition(board, 1.0)
        exposition.prepare(snapshot(sample(0)), node(gpu(0)))
        board.publish(node(gpu(0, ThermalState.UNKNOWN), sequence=2))  # as the board's expiry does
        assert exposition.ready_body() is None
        body = exposition.body()
        assert b'gpuwatch_gpu_state{gpu="0",state="unknown",uuid="GPU-test-0000"} 1.0' in body
        assert b'gpuwatch_gpu_up{gpu="0",uuid="GPU-test-0000"} 1.0' in body  # the latest snapshot's
        assert exposition.ready_body() is not None

    def test_renders_once_per_decision(self):
        board = Board("sim:test", lambda d, _n: d)
        exposition = MetricsExposition(board, 1.0, monotonic=lambda: 0.0)  # a sample age that holds still
        calls = []
        real_collect = exposition.registry.collect

        def counting_collect():
            calls.append(1)
            return real_collect()

        exposition.registry.collect = counting_collect
        decision = node(gpu(0))
        exposition.prepare(snapshot(sample(0)), decision)
        board.publish(decision)
        first = exposition.body()
        assert exposition.body() == first
        assert len(calls) == 1
        decision = node(gpu(0, ThermalState.ELEVATED), sequence=2)
        exposition.prepare(snapshot(sample(0, reading(temperature_c=77.0))), decision)
        board.publish(decision)
        assert b'gpuwatch_gpu_temperature_celsius{gpu="0",uuid="GPU-test-0000"} 77.0' in exposition.body()
        assert len(calls) == 2
