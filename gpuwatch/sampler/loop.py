"""Reads a source at a fixed interval on one thread and publishes immutable snapshots."""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Future

from gpuwatch.sources.base import Source, SourceExhaustedError, SourceReading
from gpuwatch.sources.clock import Clock, SystemClock
from gpuwatch.sources.model import GpuHealth, GpuSample, SampleHealth, Snapshot, frozen_counts

# Named as before the move into sampler/, so journal filters on logger=gpuwatch.sampler keep matching.
log = logging.getLogger("gpuwatch.sampler")

# Error names the sampler itself adds to SampleHealth.failures (the source adds NVML's).
TIMEOUT = "TIMEOUT"
EXCEPTION = "EXCEPTION"

SnapshotListener = Callable[[Snapshot], None]


class _ReadWorker:
    """One daemon thread that runs `source.read()`, so a hung driver call strands only it.

    A daemon thread (not a ThreadPoolExecutor, whose threads are joined at exit) lets the
    process exit even while an NVML call never returns.
    """

    def __init__(self, source: Source) -> None:
        self._source = source
        self._requests: list[Future[SourceReading]] = []
        self._wakeup = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="gpuwatch-source-read", daemon=True)
        self._thread.start()

    def submit(self) -> Future[SourceReading]:
        """Queue one read; the caller must not submit again until this one is done."""
        future: Future[SourceReading] = Future()
        with self._wakeup:
            self._requests.append(future)
            self._wakeup.notify()
        return future

    def close(self) -> None:
        """Let the thread end after the read it may be stuck in."""
        with self._wakeup:
            self._closed = True
            self._wakeup.notify()

    def _run(self) -> None:
        while True:
            with self._wakeup:
                while not self._requests and not self._closed:
                    self._wakeup.wait()
                if self._closed:
                    return
                future = self._requests.pop(0)
            try:
                future.set_result(self._source.read())
            except BaseException as exc:  # noqa: BLE001 - every failure goes to the waiting sampler
                future.set_exception(exc)


class Sampler:
    """Samples `source` every `interval_s` seconds; `latest` never blocks.

    Each read runs on a worker thread and is waited for at most `read_timeout_s`; while a read
    is stuck no new one starts, the failure is counted as TIMEOUT and the GPUs keep their last
    readings (with their old timestamps), so consumers see the data going stale. With
    `read_inline`, reads run on the caller's thread instead: for virtual-time callers (the
    simulations) whose source cannot hang, and who sample thousands of times a second.
    """

    def __init__(
        self,
        source: Source,
        *,
        interval_s: float = 1.0,
        read_timeout_s: float | None = None,
        clock: Clock | None = None,
        read_inline: bool = False,
    ) -> None:
        if interval_s <= 0:
            raise ValueError(f"interval must be positive, got {interval_s} s")
        self._source = source
        self._interval_s = interval_s
        self._read_timeout_s = interval_s if read_timeout_s is None else read_timeout_s
        self._clock = clock or SystemClock()
        self._worker = None if read_inline else _ReadWorker(source)
        self._pending: Future[SourceReading] | None = None
        self._failures: Counter[str] = Counter()
        self._dropped: Counter[str] = Counter()
        self._listeners: list[SnapshotListener] = []
        self._published = threading.Condition()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._exhausted = False
        now = self._clock.monotonic()
        self._latest = Snapshot(
            sequence=0,
            taken_at=self._clock.time(),
            monotonic=now,
            source=source.spec,
            gpus=(),
            health=SampleHealth(),
        )

    @property
    def latest(self) -> Snapshot:
        """The newest snapshot (sequence 0 until the first sample); a plain reference read."""
        return self._latest

    @property
    def interval_s(self) -> float:
        """Seconds between samples."""
        return self._interval_s

    @property
    def exhausted(self) -> bool:
        """True once a finite source (a recording) has played to its end."""
        return self._exhausted

    def subscribe(self, listener: SnapshotListener) -> None:
        """Call `listener(snapshot)` on the sampler thread after each snapshot is published."""
        self._listeners.append(listener)

    def sample_once(self) -> Snapshot:
        """Take one sample now, wait for it at most the read timeout, publish and return it.

        Not to be mixed with `start()`: one caller drives the sampler, either way.
        """
        if self._exhausted:
            return self._latest
        started = self._clock.monotonic()
        if self._pending is None or self._pending.done():
            self._pending = self._submit()
        try:
            reading = self._pending.result(timeout=self._read_timeout_s)
        except TimeoutError:
            return self._publish_timeout()
        except SourceExhaustedError:
            self._exhausted = True
            return self._publish_failure(None, "the recording has ended; no newer data")
        except Exception as exc:
            log.exception("source %s failed", self._source.spec)
            return self._publish_failure(EXCEPTION, f"the {self._source.spec} source failed: {exc}")
        finally:
            if self._pending is not None and self._pending.done():
                self._pending = None
        return self._publish_reading(reading, self._clock.monotonic() - started)

    def _submit(self) -> Future[SourceReading]:
        """Start one read: on the worker thread, or done at once on this one (`read_inline`)."""
        if self._worker is not None:
            return self._worker.submit()
        future: Future[SourceReading] = Future()
        try:
            future.set_result(self._source.read())
        except BaseException as exc:  # noqa: BLE001 - every failure goes to the waiting sampler, as from the thread
            future.set_exception(exc)
        return future

    def start(self) -> None:
        """Sample on a background thread until `stop()`; the first sample is taken at once."""
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="gpuwatch-sampler", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop sampling and close the source; returns within about `timeout_s`."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
        if self._worker is not None:
            self._worker.close()
        if self._pending is None or self._pending.done():
            self._source.close()
        else:
            log.warning("source %s is stuck in a read; not closing it", self._source.spec)

    def wait_for_sequence(self, sequence: int, timeout_s: float) -> Snapshot | None:
        """Block until a snapshot with at least `sequence` is published; None on timeout."""
        with self._published:
            self._published.wait_for(lambda: self._latest.sequence >= sequence, timeout_s)
        latest = self._latest
        return latest if latest.sequence >= sequence else None

    def _run(self) -> None:
        next_due = self._clock.monotonic()
        while not self._stop.is_set() and not self._exhausted:
            self.sample_once()
            next_due += self._interval_s
            now = self._clock.monotonic()
            if next_due < now:
                # Fell behind (a slow or hung read): skip the missed ticks instead of bursting.
                next_due = now + self._interval_s - (now - next_due) % self._interval_s
            self._stop.wait(next_due - now)

    def _publish_reading(self, reading: SourceReading, duration_s: float) -> Snapshot:
        self._failures.update(reading.errors)
        self._dropped.update(reading.dropped)
        previous = self._latest.health
        ok = reading.error is None
        now_wall, now_mono = self._clock.time(), self._clock.monotonic()
        health = SampleHealth(
            attempts=previous.attempts + 1,
            failures=frozen_counts(self._failures),
            dropped_values=frozen_counts(self._dropped),
            last_success=now_wall if ok else previous.last_success,
            last_success_monotonic=now_mono if ok else previous.last_success_monotonic,
            duration_s=duration_s,
            source_error=reading.error,
        )
        return self._publish(reading.gpus, health, reading.driver_version)

    def _publish_timeout(self) -> Snapshot:
        return self._publish_failure(
            TIMEOUT, f"the {self._source.spec} source did not answer within {self._read_timeout_s:g} s"
        )

    def _publish_failure(self, code: str | None, sentence: str) -> Snapshot:
        if code is not None:
            self._failures[code] += 1
        previous = self._latest
        health = dataclasses.replace(
            previous.health,
            attempts=previous.health.attempts + 1,
            failures=frozen_counts(self._failures),
            source_error=sentence,
        )
        gpus = tuple(_unavailable(gpu, sentence) for gpu in previous.gpus)
        return self._publish(gpus, health, previous.driver_version)

    def _publish(
        self, gpus: tuple[GpuSample, ...], health: SampleHealth, driver_version: str | None
    ) -> Snapshot:
        snapshot = Snapshot(
            sequence=self._latest.sequence + 1,
            taken_at=self._clock.time(),
            monotonic=self._clock.monotonic(),
            source=self._source.spec,
            gpus=gpus,
            health=health,
            driver_version=driver_version,
        )
        with self._published:
            self._latest = snapshot
            self._published.notify_all()
        for listener in self._listeners:
            try:
                listener(snapshot)
            except Exception:
                log.exception("snapshot listener %r failed", listener)
        return snapshot


def _unavailable(gpu: GpuSample, sentence: str) -> GpuSample:
    """The GPU as last seen, marked unavailable; its reading keeps its old timestamps."""
    if gpu.health is not GpuHealth.OK:
        return gpu
    return dataclasses.replace(gpu, health=GpuHealth.UNAVAILABLE, error=sentence)
