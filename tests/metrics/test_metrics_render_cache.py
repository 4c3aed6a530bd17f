"""The fast text renderer matches generate_latest; the per-decision text and its gzip stay current."""

from __future__ import annotations

import dataclasses
import gzip
import random
import threading
import zlib

import pytest
from collector_builders import reading, sample, snapshot
from metrics_helpers import Pipeline, samples
from prometheus_client import generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.samples import Sample
from serve_helpers import gpu, node

from gpuwatch.exposure.board import Board
from gpuwatch.exposure.leases import LeaseBook
from gpuwatch.exposure.metrics import text
from gpuwatch.exposure.metrics.exposition import MetricsExposition
from gpuwatch.exposure.metrics.text import TextRenderer
from gpuwatch.exposure.tally import tally_slot
from gpuwatch.policy.config import PolicyConfig
from gpuwatch.policy.decision import NodeDecision, PriorityClass, ThermalState

TIMEOUT_S = 10.0
LABELS = {"gpu": "0", "uuid": "GPU-test-0000"}


class Families:
    """A collector of fixed families."""

    def __init__(self, *families: Metric) -> None:
        self.families = families

    def collect(self):
        return iter(self.families)


def odd_families() -> Families:
    """Families that exercise every escape and number format generate_latest has."""
    gauge = GaugeMetricFamily(
        "odd_gauge", 'Help with a \\ backslash,\na newline and "quotes".', labels=["b", "a"]
    )
    values = [0.0, -0.0, 1.0, -2.5, 1e-7, 123456.5, 1234567.5, -1234567.5, 1e16, 2**53, float("inf")]
    values += [float("-inf"), float("nan"), 0.1 + 0.2, 12345678.0, 1.5e300, -1e20, 5e-324]
    for number, value in enumerate(values):
        gauge.add_metric([f"v{number}", 'quote " back \\ newline \n unicode µ°'], value)
    counter = CounterMetricFamily("odd_requests", "A counter.", labels=["code"])
    counter.add_metric(["200"], 7.0)
    created = CounterMetricFamily("odd_created", "A counter with a creation time.", labels=["code"])
    created.add_metric(["200"], 7.0, created=1700000000.0)
    stamped = GaugeMetricFamily("odd_stamped", "A gauge with a timestamp.")
    stamped.add_metric([], 1.0, timestamp=1700000000.5)
    info = InfoMetricFamily("odd_build", "An info family.", value={"version": "1"})
    unlabelled = GaugeMetricFamily("odd_plain", "No labels.", value=3.0)
    empty = GaugeMetricFamily("odd_empty", "No samples.", labels=["x"])
    histogram = HistogramMetricFamily("odd_seconds", 'A histogram, "quoted".', labels=["class"])
    histogram.add_metric(['free "tier"'], [("0.5", 1.0), ("1e+07", 3.0), ("+Inf", 4.0)], 1234567.25)
    histogram.add_metric(["paid"], [("0.5", 0.0), ("1e+07", 0.0), ("+Inf", 0.0)], 0.0)
    # An OpenMetrics-only sample in a histogram: left to generate_latest, which moves it to the end.
    created_histogram = HistogramMetricFamily("odd_created_seconds", "A histogram with _created.")
    created_histogram.add_metric([], [("1.0", 2.0), ("+Inf", 2.0)], 0.5)
    created_histogram.samples.append(Sample("odd_created_seconds_created", {}, 1700000000.0))
    return Families(gauge, counter, created, stamped, info, unlabelled, empty, histogram, created_histogram)


class TestTextRenderer:
    """Byte for byte what generate_latest writes, since the golden files and scrapers depend on it."""

    def test_every_escape_and_number_format(self):
        families = odd_families()
        renderer = TextRenderer()
        assert renderer.render(families) == generate_latest(families)
        assert renderer.render(families) == generate_latest(families)  # from the caches too

    def test_numbers_over_every_magnitude(self):
        gauge = GaugeMetricFamily("numbers", "Random values.", labels=["n"])
        draw = random.Random(5)
        for n in range(2000):
            gauge.add_metric([str(n)], draw.uniform(-1, 1) * 10 ** draw.randint(-30, 30))
        families = Families(gauge)
        assert TextRenderer().render(families) == generate_latest(families)

    @pytest.mark.parametrize("dcgm", [False, True])
    def test_8_gpus_as_served(self, dcgm):
        pipeline = Pipeline("sim:8xH100", dcgm=dcgm)
        try:
            pipeline.run(5)
            exposition = pipeline.exposition
            renderer = TextRenderer()
            pipeline.book.take(3, PriorityClass.DEFAULT, 10.0)
            released = pipeline.book.take(5, PriorityClass.CRITICAL, 10.0)
            pipeline.clock.advance(4.0)
            assert pipeline.book.release(released.id) is not None
            for registry in (
                exposition.registry,
                exposition.dcgm_registry,
                exposition.live_registry,
                exposition.leases,
            ):
                if registry is not None:
                    assert renderer.render(registry) == generate_latest(registry)
        finally:
            pipeline.close()

    def test_histograms_are_written_here_not_by_generate_latest(self, monkeypatch):
        histogram = HistogramMetricFamily("some_seconds", "A histogram.", labels=["class"])
        histogram.add_metric(["a"], [("1.0", 1.0), ("+Inf", 2.0)], 3.5)
        families = Families(histogram)
        expected = generate_latest(families)

        def refuse(_collector):
            raise AssertionError("generate_latest was asked to render a plain histogram")

        monkeypatch.setattr(text, "generate_latest", refuse)
        assert TextRenderer().render(families) == expected

    def test_a_full_label_cache_is_emptied_and_stays_correct(self, monkeypatch):
        monkeypatch.setattr(text, "MAX_CACHED_LABEL_SETS", 3)
        families = odd_families()
        renderer = TextRenderer()
        for _ in range(3):
            assert renderer.render(families) == generate_latest(families)
            assert len(renderer._labels) <= 3


def published(
    exposition: MetricsExposition, board: Board, decision: NodeDecision, temperature_c: float
) -> None:
    """Prepare and publish `decision` on a snapshot at `temperature_c`, as the daemon does."""
    exposition.prepare(snapshot(sample(0, reading(temperature_c=temperature_c))), decision)
    board.publish(decision)


def both(exposition: MetricsExposition) -> tuple[bytes, bytes]:
    """The ready identity and gzip bodies, the gzip one decoded as a single gzip member."""
    identity, zipped = exposition.ready_body(), exposition.ready_body(gzipped=True)
    assert identity is not None
    assert zipped is not None
    decoder = zlib.decompressobj(16 + zlib.MAX_WBITS)  # one gzip member, as Go's reader sees it
    decoded = decoder.decompress(zipped)
    assert decoder.eof
    assert decoder.unused_data == b""  # nothing after the one member
    assert gzip.decompress(zipped) == decoded
    return identity, decoded


def temperature(body: bytes) -> float:
    return samples(body, "gpuwatch_gpu_temperature_celsius")[tuple(sorted(LABELS.items()))]


class TestServedText:
    """What a scrape returns follows every publication, in both encodings."""

    def test_gzip_and_identity_decode_to_the_same_text(self):
        board = Board("sim:test", lambda d, _n: d)
        exposition = MetricsExposition(board, 1.0, monotonic=lambda: 0.0)  # a sample age that holds still
        published(exposition, board, node(gpu(0)), 60.0)
        identity, decoded = both(exposition)
        assert decoded == identity
        assert exposition.body(gzipped=True) == exposition.ready_body(gzipped=True)

    def test_gzip_of_8_gpus_with_the_dcgm_families(self):
        pipeline = Pipeline("sim:8xH100", dcgm=True)
        try:
            pipeline.run(3)
            identity, decoded = both(pipeline.exposition)
            assert decoded == identity
            assert len(identity) > 50_000
        finally:
            pipeline.close()

    def test_a_new_decision_is_served_in_both_encodings(self):
        board = Board("sim:test", lambda d, _n: d)
        exposition = MetricsExposition(board, 1.0, monotonic=lambda: 0.0)
        published(exposition, board, node(gpu(0)), 60.0)
        assert all(temperature(body) == 60.0 for body in both(exposition))
        published(exposition, board, node(gpu(0), sequence=2), 71.0)
        assert all(temperature(body) == 71.0 for body in both(exposition))

    def test_between_prepare_and_publication_the_published_decision_is_served(self):
        board = Board("sim:test", lambda d, _n: d)
        exposition = MetricsExposition(board, 1.0, monotonic=lambda: 0.0)
        published(exposition, board, node(gpu(0)), 60.0)
        hot = node(gpu(0, ThermalState.HOT, pressure=0.9), sequence=2)
        exposition.prepare(snapshot(sample(0, reading(temperature_c=85.0))), hot)
        # The board still holds the first decision: a scrape now is answered at once, with it.
        assert all(temperature(body) == 60.0 for body in both(exposition))
        board.publish(hot)
        identity, decoded = both(exposition)
        assert temperature(identity) == temperature(decoded) == 85.0
        assert b'gpuwatch_node_state{state="hot"} 1.0' in identity

    def test_published_before_its_render_the_previous_text_is_served_until_prepare(self):
        """The daemon's order: expect, publish (admission sees it at once), then prepare."""
        board = Board("sim:test", lambda d, _n: d)
        exposition = MetricsExposition(board, 1.0, monotonic=lambda: 0.0)
        published(exposition, board, node(gpu(0)), 60.0)
        hot = node(gpu(0, ThermalState.HOT, pressure=0.9), sequence=2)
        exposition.expect(hot)
        board.publish(hot)
        # Not rendered yet: a scrape is answered at once, with the previous decision's text.
        assert all(temperature(body) == 60.0 for body in both(exposition))
        exposition.prepare(snapshot(sample(0, reading(temperature_c=85.0))), hot)
        identity, decoded = both(exposition)
        assert temperature(identity) == temperature(decoded) == 85.0
        assert b'gpuwatch_node_state{state="hot"} 1.0' in identity

    def test_an_expiry_while_a_render_is_awaited_is_not_undone_by_that_render(self):
        stale = [False]
        board = Board("sim:test", lambda d, _n: node(gpu(0, ThermalState.UNKNOWN)) if stale[0] else d)
        exposition = MetricsExposition(board, 1.0, monotonic=lambda: 0.0)
        published(exposition, board, node(gpu(0)), 60.0)
        fresh = node(gpu(0), sequence=2)
        exposition.expect(fresh)
        board.publish(fresh)
        stale[0] = True
        assert board.check_expiry(0.0)  # the board now holds UNKNOWN
        exposition.prepare(snapshot(sample(0, reading(temperature_c=64.0))), fresh)
        unknown = b'gpuwatch_node_state{state="unknown"} 1.0'
        assert unknown in exposition.body()

    def test_after_an_expiry_the_next_decision_is_ready_without_a_scrape_render(self):
        stale = [False]
        board = Board("sim:test", lambda d, _n: node(gpu(0, ThermalState.UNKNOWN)) if stale[0] else d)
        exposition = MetricsExposition(board, 1.0, monotonic=lambda: 0.0)
        published(exposition, board, node(gpu(0)), 60.0)
        stale[0] = True
        assert board.check_expiry(0.0)
        stale[0] = False
        assert exposition.ready_body() is None  # nobody has rendered the expired decision
        fresh = node(gpu(0), sequence=3)
        exposition.expect(fresh)
        board.publish(fresh)
        exposition.prepare(snapshot(sample(0, reading(temperature_c=66.0))), fresh)
        assert all(temperature(body) == 66.0 for body in both(exposition))  # ready: no render

    def test_the_boards_expiry_is_served_in_both_encodings(self):
        stale = [False]

        def expiry(decision: NodeDecision, _now: float) -> NodeDecision:
            if not stale[0] or decision.state is ThermalState.UNKNOWN:
                return decision
            return node(gpu(0, ThermalState.UNKNOWN), sequence=decision.sequence)

        board = Board("sim:test", expiry)
        exposition = MetricsExposition(board, 1.0, monotonic=lambda: 0.0)
        published(exposition, board, node(gpu(0)), 60.0)
        assert b'gpuwatch_node_state{state="ok"} 1.0' in exposition.ready_body()
        stale[0] = True
        assert board.check_expiry(0.0)
        assert exposition.ready_body() is None  # the expired decision is not rendered yet
        unknown = b'gpuwatch_node_state{state="unknown"} 1.0'
        assert unknown in gzip.decompress(exposition.body(gzipped=True))
        assert all(unknown in body for body in both(exposition))

    def test_an_expiry_during_a_prepare_keeps_the_prepared_text_for_its_publication(self):
        stale = [False]
        board = Board("sim:test", lambda d, _n: node(gpu(0, ThermalState.UNKNOWN)) if stale[0] else d)
        exposition = MetricsExposition(board, 1.0, monotonic=lambda: 0.0)
        published(exposition, board, node(gpu(0)), 60.0)
        fresh = node(gpu(0), sequence=2)
        exposition.prepare(snapshot(sample(0, reading(temperature_c=64.0))), fresh)
        stale[0] = True
        assert board.check_expiry(0.0)
        stale[0] = False
        board.publish(fresh)
        assert all(temperature(body) == 64.0 for body in both(exposition))

    def test_sample_age_is_read_at_each_scrape_in_both_encodings(self):
        now = [100.0]
        board = Board("sim:test", lambda d, _n: d)
        exposition = MetricsExposition(board, 1.0, monotonic=lambda: now[0])
        decision = dataclasses.replace(node(gpu(0)), sample_age_s=0.5, decided_at=100.0)
        published(exposition, board, decision, 60.0)
        for expected in (0.5, 3.5, 12.5):
            now[0] = 100.0 + expected - 0.5
            for body in both(exposition):
                assert samples(body, "gpuwatch_sample_age_seconds") == {(): expected}

    def test_admissions_are_counted_at_each_scrape_in_both_encodings(self):
        board = Board("sim:test", lambda d, _n: d)
        exposition = MetricsExposition(board, 1.0, monotonic=lambda: 0.0)
        published(exposition, board, node(gpu(0)), 60.0)
        key = (("class", "default"), ("decision", "admit"))
        assert all(samples(body, "gpuwatch_admissions_total")[key] == 0 for body in both(exposition))
        board.tally.counts[tally_slot(PriorityClass.DEFAULT, admitted=True)] += 5
        assert all(samples(body, "gpuwatch_admissions_total")[key] == 5 for body in both(exposition))

    def test_leases_are_read_at_each_scrape_in_both_encodings(self):
        book = LeaseBook(PolicyConfig())
        board = Board("sim:test", lambda d, _n: d, book=book)
        exposition = MetricsExposition(board, 1.0, monotonic=lambda: 0.0)
        published(exposition, board, node(gpu(0)), 60.0)
        key = tuple(sorted({**LABELS, "class": "default"}.items()))
        released = (("class", "default"), ("how", "released"))
        held = book.take(0, PriorityClass.DEFAULT, 10.0)
        for body in both(exposition):
            assert samples(body, "gpuwatch_gpu_leases")[key] == 1
            assert samples(body, "gpuwatch_leases_ended_total")[released] == 0
        assert book.release(held.id) is not None
        for body in both(exposition):
            assert samples(body, "gpuwatch_gpu_leases")[key] == 0
            assert samples(body, "gpuwatch_leases_ended_total")[released] == 1

    def test_a_render_of_an_older_decision_never_replaces_a_newer_one(self):
        stale = [0]

        def expiry(decision: NodeDecision, _now: float) -> NodeDecision:
            return (
                node(gpu(0, ThermalState.UNKNOWN), sequence=stale[0])
                if stale[0] > decision.sequence
                else decision
            )

        board = Board("sim:test", expiry)
        exposition = MetricsExposition(board, 1.0, monotonic=lambda: 0.0)
        published(exposition, board, node(gpu(0)), 60.0)
        stale[0] = 2
        assert board.check_expiry(0.0)  # expired decision 2: not rendered
        entered, release = threading.Event(), threading.Event()
        real_collect = exposition.registry.collect

        def blocking_collect():
            entered.set()
            assert release.wait(TIMEOUT_S)
            return real_collect()

        exposition.registry.collect = blocking_collect
        worker = threading.Thread(target=exposition.body)
        worker.start()
        assert entered.wait(TIMEOUT_S)  # the worker is rendering decision 2
        stale[0] = 3
        assert board.check_expiry(0.0)  # decision 3 published meanwhile
        release.set()
        worker.join(TIMEOUT_S)
        assert exposition.ready_body() is None  # decision 2's text is not served for decision 3
        exposition.registry.collect = real_collect
        assert b"gpuwatch_node_state" in exposition.body()
        assert exposition.ready_body() is not None
