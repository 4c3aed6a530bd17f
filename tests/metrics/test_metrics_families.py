"""The policy's families, HELP, freshness per scrape, live and lease families, one render per decision."""

from __future__ import annotations

import dataclasses

import prometheus_client
import pytest
from collector_builders import LABELS, collected, reading, sample, snapshot
from metrics_helpers import check_metrics, families, samples
from prometheus_client import CollectorRegistry, generate_latest
from serve_helpers import gpu, node

from gpuwatch.exposure.board import Board
from gpuwatch.exposure.leases import DURATION_BUCKETS_S, LeaseBook
from gpuwatch.exposure.metrics.collector import GpuwatchCollector, Observation
from gpuwatch.exposure.metrics.exposition import MetricsExposition
from gpuwatch.exposure.metrics.live import LiveCollector
from gpuwatch.exposure.publication import Publication
from gpuwatch.exposure.tally import AdmissionTally, tally_slot
from gpuwatch.policy.config import PolicyConfig
from gpuwatch.policy.decision import PriorityClass, Slots, ThermalState

CRITICAL, DEFAULT, SHEDDABLE = PriorityClass.CRITICAL, PriorityClass.DEFAULT, PriorityClass.SHEDDABLE


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

    def test_forecast_error_allowance_by_horizon(self):
        uncertain = gpu(0, ThermalState.HOT, forecast_error_c=((5.0, 0.25), (60.0, 3.5)))
        got = collected(snapshot(sample(0)), node(uncertain, gpu(1)))
        family = "gpuwatch_gpu_forecast_error_celsius"
        assert got.get_sample_value(family, {**LABELS, "horizon": "5"}) == 0.25
        assert got.get_sample_value(family, {**LABELS, "horizon": "60"}) == 3.5
        # A GPU with no forecast (nothing calibrated) has no sample.
        assert got.get_sample_value(family, {"gpu": "1", "uuid": "GPU-test-0001", "horizon": "60"}) is None


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
            ("gpuwatch_gpu_forecast_error_celsius", "degrees Celsius"),
        ],
    )
    def test_help(self, name, unit):
        values = reading(
            temperature_c=50.0, power_w=1.0, sm_clock_hz=1.0, utilization_ratio=0.5, energy_j=1.0
        )
        decision = node(
            gpu(0, predicted_margin_c=1.0, time_to_slowdown_s=9.0, forecast_error_c=((60.0, 1.0),)), gpu(1)
        )
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
        book = LeaseBook(PolicyConfig())
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
        assert (reserved(0), reserved(1)) == (0, 0)  # the book's open leases, not the decision's
        taken = book.take(0, DEFAULT, 10.0)
        book.take(0, CRITICAL, None)
        assert slots(0) == {"critical": 2, "default": 1, "sheddable": 0}
        assert slots(1) == {"critical": 2, "default": 1, "sheddable": 0}
        assert (reserved(0), reserved(1)) == (2, 0)
        book.release(taken.id)
        assert reserved(0) == 1  # at once; the slot comes back with the next decision
        assert slots(0) == {"critical": 2, "default": 1, "sheddable": 0}


class Clock:
    """A monotonic clock the test moves by hand, s."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def leasing(*gpus) -> tuple[MetricsExposition, Board, LeaseBook, Clock]:
    """An exposition of a board with a lease book on a hand-moved clock; `gpus` (else 0 and 1) published."""
    clock = Clock()
    book = LeaseBook(PolicyConfig(), clock=clock)
    board = Board("sim:test", lambda d, _n: d, book=book)
    exposition = MetricsExposition(board, 1.0, monotonic=lambda: 0.0)
    board.publish(node(*(gpus or (gpu(0), gpu(1)))))
    return exposition, board, book, clock


def open_leases(body: bytes) -> dict[tuple[str, str], float]:
    """gpuwatch_gpu_leases by (gpu, class)."""
    return {
        (dict(labels)["gpu"], dict(labels)["class"]): value
        for labels, value in samples(body, "gpuwatch_gpu_leases").items()
    }


def ended(body: bytes) -> dict[tuple[str, str], float]:
    """gpuwatch_leases_ended_total by (class, how)."""
    return {
        (dict(labels)["class"], dict(labels)["how"]): value
        for labels, value in samples(body, "gpuwatch_leases_ended_total").items()
    }


class TestLeaseFamilies:
    """Open leases, leases ended and job durations, read from the book at each scrape."""

    def test_open_leases_follow_takes_and_releases_at_the_next_scrape(self):
        exposition, _board, book, _clock = leasing()
        zero = {(index, cls.value): 0.0 for index in ("0", "1") for cls in PriorityClass}
        assert open_leases(exposition.body()) == zero
        first = book.take(0, DEFAULT, 10.0)
        book.take(0, DEFAULT, None)
        book.take(1, CRITICAL, 3.0)
        assert open_leases(exposition.body()) == {**zero, ("0", "default"): 2, ("1", "critical"): 1}
        assert book.release(first.id) is not None
        # No new decision: the release shows at once.
        assert open_leases(exposition.body()) == {**zero, ("0", "default"): 1, ("1", "critical"): 1}
        series = samples(exposition.body(), "gpuwatch_gpu_leases")
        assert (("class", "critical"), ("gpu", "1"), ("uuid", "GPU-test-0001")) in series

    def test_every_class_and_ending_counted_from_0(self):
        exposition, _board, book, clock = leasing()
        assert ended(exposition.body()) == {
            (cls.value, how): 0.0 for cls in PriorityClass for how in ("released", "expired", "gpu_out")
        }
        released = book.take(0, DEFAULT, 10.0)
        late = book.take(0, CRITICAL, 2.0)  # deadline 2 s + the 5 s grace
        book.take(1, DEFAULT, 1.0)  # deadline 6 s: never released
        book.take(1, SHEDDABLE, None)
        clock.now += 8.0
        assert book.release(released.id) is not None
        assert book.release(late.id) is None  # past its deadline: it expired
        book.leases()  # the sampler's read ends the leases past their deadline
        assert book.end_gpus([1]) == 1  # GPU 1 out: its sheddable lease ends
        got = ended(exposition.body())
        assert {key: value for key, value in got.items() if value} == {
            ("default", "released"): 1,
            ("critical", "expired"): 1,
            ("default", "expired"): 1,
            ("sheddable", "gpu_out"): 1,
        }
        assert open_leases(exposition.body()) == {
            (index, cls.value): 0.0 for index in ("0", "1") for cls in PriorityClass
        }

    def test_job_durations_of_released_leases_in_cumulative_buckets(self):
        exposition, _board, book, clock = leasing()
        held_s = (0.5, 4.0, 12.0, 12.0, 700.0)
        for seconds in held_s:
            lease = book.take(0, DEFAULT, 600.0)  # deadline 900 s: every one of them is released
            clock.now += seconds
            assert book.release(lease.id) is not None
        expired = book.take(0, DEFAULT, 1.0)
        clock.now += 30.0
        assert book.release(expired.id) is None  # expired: not a job duration
        body = exposition.body()
        buckets = {
            dict(labels)["le"]: value
            for labels, value in samples(body, "gpuwatch_job_duration_seconds_bucket").items()
            if dict(labels)["class"] == "default"
        }
        bounds = ["+Inf" if bound == float("inf") else repr(bound) for bound in DURATION_BUCKETS_S]
        assert list(buckets) == bounds
        assert buckets == {le: float(sum(seconds <= float(le) for seconds in held_s)) for le in bounds}
        assert buckets["5.0"] == 2
        assert buckets["600.0"] == 4
        assert buckets["+Inf"] == 5
        default = (("class", "default"),)
        assert samples(body, "gpuwatch_job_duration_seconds_count")[default] == 5
        assert samples(body, "gpuwatch_job_duration_seconds_sum")[default] == sum(held_s)
        critical = (("class", "critical"),)
        assert samples(body, "gpuwatch_job_duration_seconds_count")[critical] == 0
        histogram = families(body)["gpuwatch_job_duration_seconds"]
        assert histogram.type == "histogram"
        assert "in seconds" in histogram.documentation
        result = check_metrics(body)
        assert result.returncode == 0, result.stdout + result.stderr
        assert result.stdout + result.stderr == ""

    def test_gpus_are_the_published_decisions(self):
        exposition, board, book, _clock = leasing()
        book.take(1, DEFAULT, 10.0)
        assert open_leases(exposition.body())["1", "default"] == 1
        board.publish(node(gpu(0), sequence=2))  # GPU 1 left the node
        assert set(open_leases(exposition.body())) == {("0", cls.value) for cls in PriorityClass}

    def test_rendered_again_only_after_a_lease_or_a_decision_changed(self):
        exposition, board, book, _clock = leasing()
        leases = exposition.leases
        assert leases is not None
        calls = []
        real_collect = leases.collect

        def counting_collect():
            calls.append(1)
            return real_collect()

        leases.collect = counting_collect
        first = exposition.body()
        assert exposition.body() == first
        assert len(calls) == 1
        held = book.take(0, SHEDDABLE, 5.0)
        exposition.body()
        assert len(calls) == 2
        book.release(held.id)
        exposition.body()
        exposition.body()
        assert len(calls) == 3
        board.publish(node(gpu(0), gpu(1), sequence=2))
        exposition.body()
        assert len(calls) == 4

    def test_no_book_no_lease_families(self):
        board = Board("sim:test", lambda d, _n: d)
        exposition = MetricsExposition(board, 1.0)
        board.publish(node(gpu(0)))
        assert exposition.leases is None
        names = set(families(exposition.body()))
        assert "gpuwatch_gpu_slots" in names
        assert not names & {"gpuwatch_gpu_leases", "gpuwatch_leases_ended", "gpuwatch_job_duration_seconds"}


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
