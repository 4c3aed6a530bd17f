"""Tests of the sampler: publication, health accounting, hung and failing sources."""

from __future__ import annotations

import threading
import time

import pytest

from gpuwatch.sampler.loop import EXCEPTION, TIMEOUT, Sampler
from gpuwatch.sources.base import SourceExhaustedError, SourceReading
from gpuwatch.sources.clock import ManualClock
from gpuwatch.sources.model import GpuHealth, GpuIdentity, GpuReading, GpuSample, frozen_counts

# Generous bound for "promptly" on a loaded 2-core CI machine, in seconds.
PROMPT_S = 2.0


def one_gpu(clock: ManualClock, temperature: float) -> tuple[GpuSample, ...]:
    reading = GpuReading(taken_at=clock.time(), monotonic=clock.monotonic(), temperature_c=temperature)
    return (GpuSample(identity=GpuIdentity(index=0, uuid="GPU-test", name="Test GPU"), reading=reading),)


class ScriptedSource:
    """A source whose reads return, block, raise or fail as the test scripts them."""

    spec = "scripted"

    def __init__(self, clock: ManualClock) -> None:
        self.clock = clock
        self.temperature = 40.0
        self.errors: dict[str, int] = {}
        self.dropped: dict[str, int] = {}
        self.error: str | None = None
        self.raise_next: BaseException | None = None
        self.release = threading.Event()
        self.release.set()
        self.reads = 0
        self.closed = False

    def read(self) -> SourceReading:
        self.reads += 1
        self.release.wait(30)
        if self.raise_next is not None:
            exc, self.raise_next = self.raise_next, None
            raise exc
        gpus = () if self.error else one_gpu(self.clock, self.temperature)
        return SourceReading(
            gpus=gpus,
            driver_version="test-1",
            errors=frozen_counts(self.errors),
            dropped=frozen_counts(self.dropped),
            error=self.error,
        )

    def close(self) -> None:
        self.closed = True


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(start_monotonic=100.0)


@pytest.fixture
def source(clock: ManualClock) -> ScriptedSource:
    return ScriptedSource(clock)


@pytest.fixture
def sampler(source: ScriptedSource, clock: ManualClock):
    sampler = Sampler(source, interval_s=1.0, read_timeout_s=0.2, clock=clock)
    yield sampler
    source.release.set()
    sampler.stop(timeout_s=PROMPT_S)


class TestPublication:
    """Each sample becomes a new immutable snapshot with the readings and health of that read."""

    def test_before_any_sample_latest_is_empty_and_never_successful(self, sampler: Sampler, clock):
        assert sampler.latest.sequence == 0
        assert sampler.latest.gpus == ()
        assert sampler.latest.age_s(clock.monotonic()) is None

    def test_sample_publishes_readings_sequence_and_success_time(self, sampler, source, clock):
        first = sampler.sample_once()
        clock.advance(1.0)
        source.temperature = 55.0
        second = sampler.sample_once()
        assert (first.sequence, second.sequence) == (1, 2)
        assert second is sampler.latest
        assert first.gpus[0].reading.temperature_c == 40.0
        assert second.gpus[0].reading.temperature_c == 55.0
        assert second.health.attempts == 2
        assert second.health.last_success_monotonic == 101.0
        assert second.driver_version == "test-1"
        assert second.source == "scripted"

    def test_error_and_dropped_counts_accumulate_across_reads(self, sampler, source):
        source.errors = {"UNKNOWN": 1}
        source.dropped = {"temperature_c": 2}
        sampler.sample_once()
        source.errors = {"UNKNOWN": 1, "GPU_IS_LOST": 1}
        health = sampler.sample_once().health
        assert dict(health.failures) == {"GPU_IS_LOST": 1, "UNKNOWN": 2}
        assert dict(health.dropped_values) == {"temperature_c": 4}

    def test_whole_source_error_keeps_last_success_and_reports_the_sentence(self, sampler, source, clock):
        sampler.sample_once()
        clock.advance(5.0)
        source.error = "the driver is not loaded"
        snapshot = sampler.sample_once()
        assert snapshot.health.source_error == "the driver is not loaded"
        assert snapshot.health.last_success_monotonic == 100.0
        assert snapshot.age_s(clock.monotonic()) == 5.0
        assert snapshot.gpus == ()


class TestHungSource:
    """A read that never returns strands only the worker: snapshots go stale, nothing blocks."""

    def test_hung_read_times_out_and_marks_gpus_unavailable_with_old_readings(self, sampler, source, clock):
        good = sampler.sample_once()
        source.release.clear()
        clock.advance(1.0)
        started = time.monotonic()
        stale = sampler.sample_once()
        assert time.monotonic() - started < PROMPT_S
        assert stale.health.failures[TIMEOUT] == 1
        assert "did not answer" in stale.health.source_error
        assert stale.gpus[0].health is GpuHealth.UNAVAILABLE
        assert stale.gpus[0].reading == good.gpus[0].reading
        assert stale.health.last_success_monotonic == good.health.last_success_monotonic

    def test_no_second_read_starts_while_one_is_stuck(self, sampler, source):
        source.release.clear()
        sampler.sample_once()
        sampler.sample_once()
        assert source.reads == 1
        assert sampler.latest.health.failures[TIMEOUT] == 2

    def test_sampling_resumes_once_the_read_returns(self, sampler, source):
        source.release.clear()
        sampler.sample_once()
        source.release.set()
        source.temperature = 61.0
        recovered = sampler.sample_once()
        # The stuck read's own result arrives first; the next read is fresh.
        recovered = sampler.sample_once()
        assert recovered.health.source_error is None
        assert recovered.gpus[0].health is GpuHealth.OK
        assert recovered.gpus[0].reading.temperature_c == 61.0

    def test_stop_returns_promptly_and_leaves_a_stuck_source_open(self, source, clock):
        sampler = Sampler(source, interval_s=0.05, read_timeout_s=0.1, clock=clock)
        source.release.clear()
        sampler.start()
        time.sleep(0.2)
        started = time.monotonic()
        sampler.stop(timeout_s=PROMPT_S)
        assert time.monotonic() - started < PROMPT_S
        assert not source.closed
        source.release.set()


class TestFailingSource:
    """Exceptions and the end of a recording are reported, never raised to readers."""

    def test_unexpected_exception_is_counted_and_sampling_continues(self, sampler, source):
        sampler.sample_once()
        source.raise_next = RuntimeError("boom")
        failed = sampler.sample_once()
        assert failed.health.failures[EXCEPTION] == 1
        assert "boom" in failed.health.source_error
        assert sampler.sample_once().health.source_error is None

    def test_exhausted_recording_stops_sampling(self, sampler, source):
        sampler.sample_once()
        source.raise_next = SourceExhaustedError()
        ended = sampler.sample_once()
        assert sampler.exhausted
        assert "ended" in ended.health.source_error
        assert sampler.sample_once() is ended
        assert source.reads == 2


class TestBackgroundThread:
    """start() samples at the interval, notifies listeners, and stop() closes the source."""

    def test_samples_repeatedly_and_notifies_listeners_despite_a_failing_one(self, source):
        sampler = Sampler(source, interval_s=0.02, read_timeout_s=1.0)
        seen: list[int] = []

        def broken(_snapshot: object) -> None:
            raise ValueError("listener bug")

        sampler.subscribe(broken)
        sampler.subscribe(lambda snapshot: seen.append(snapshot.sequence))
        sampler.start()
        try:
            assert sampler.wait_for_sequence(3, timeout_s=PROMPT_S) is not None
        finally:
            sampler.stop(timeout_s=PROMPT_S)
        assert seen[:3] == [1, 2, 3]
        assert source.closed

    def test_wait_for_sequence_times_out_without_samples(self, sampler):
        assert sampler.wait_for_sequence(1, timeout_s=0.05) is None

    def test_rejects_a_non_positive_interval(self, source):
        with pytest.raises(ValueError, match="interval"):
            Sampler(source, interval_s=0)
