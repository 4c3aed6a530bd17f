"""The replay source: plays a recorded file's frames against the clock as if they were live."""

from __future__ import annotations

import enum
import itertools
import logging
import threading
from collections.abc import Callable, Generator, Iterable, Iterator
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import TextIO

from gpuwatch.sources.base import SourceError, SourceExhaustedError, SourceReading
from gpuwatch.sources.clock import Clock
from gpuwatch.sources.replay.frame import ReplayFrame
from gpuwatch.sources.replay.lines import Warn
from gpuwatch.sources.replay.recording import is_recording, read_snapshots, recording_frames
from gpuwatch.sources.replay.smi_csv import SmiCsv, parse_smi_csv
from gpuwatch.sources.replay.spec import ReplayOptions, parse_spec

_log = logging.getLogger(__name__)
FrameOpener = Callable[[Warn], Generator[ReplayFrame, None, None]]


class ReplayKind(enum.StrEnum):
    """The formats the replay source plays, told apart by their first line."""

    RECORDING = "gpuwatch recording"
    SMI_CSV = "nvidia-smi csv"


@dataclass(frozen=True, slots=True)
class ReplaySummary:
    """What the pass over the whole file at open time found."""

    kind: ReplayKind
    frame_count: int
    duration_s: float  # offset of the last frame from the first
    period_s: float  # one pass: the duration plus the mean interval, for the last frame to show
    gpu_count: int  # the most GPUs in one frame
    ignored_columns: tuple[str, ...] = ()  # CSV columns gpuwatch does not use


class ReplaySource:
    """Plays frames by their recorded offsets, `speed` times faster, against `clock`.

    `read()` returns the latest frame due by the time elapsed since the source was opened (the
    first frame at once), its readings stamped with the clock's current time so they are fresh.
    Once a pass is over (`summary.period_s`), `read()` starts over if `loop`, else raises
    SourceExhaustedError. Frames are streamed from the file, so long recordings use little memory.
    """

    def __init__(  # noqa: PLR0913 - all are fixed at open; keyword-only past the essentials
        self,
        spec: str,
        clock: Clock,
        opener: FrameOpener,
        summary: ReplaySummary,
        *,
        speed: float,
        loop: bool,
    ) -> None:
        self._spec = spec
        self._clock = clock
        self._opener = opener
        self.summary = summary
        self._speed = speed
        self._loop = loop
        self._opened_at = clock.monotonic()
        self._pass = -1
        self._frames: Generator[ReplayFrame, None, None] | None = None
        self._current: ReplayFrame | None = None
        self._pending: ReplayFrame | None = None
        self._closed = False
        # read() runs on the sampler thread; close() may come from another during shutdown.
        self._lock = threading.Lock()

    @property
    def spec(self) -> str:
        """The --source spec, e.g. "replay:trace.csv?gpus=8"."""
        return self._spec

    def read(self) -> SourceReading:
        """The latest frame due, re-stamped with the clock's current time."""
        with self._lock:
            now_monotonic, now_wall = self._clock.monotonic(), self._clock.time()
            frame = self._frame_due((now_monotonic - self._opened_at) * self._speed)
        gpus = tuple(
            sample
            if sample.reading is None
            else replace(sample, reading=replace(sample.reading, taken_at=now_wall, monotonic=now_monotonic))
            for sample in frame.gpus
        )
        return SourceReading(
            gpus=gpus, driver_version=frame.driver_version, dropped=frame.dropped, error=frame.error
        )

    def close(self) -> None:
        """Close the file being played; later reads raise SourceError. Safe from any thread."""
        with self._lock:
            self._closed = True
            if self._frames is not None:
                self._frames.close()
                self._frames = None

    def _frame_due(self, elapsed_s: float) -> ReplayFrame:
        if self._closed:
            raise SourceError(f"{self._spec}: the source is closed")
        pass_number, position_s = divmod(max(elapsed_s, 0.0), self.summary.period_s)
        if pass_number >= 1 and not self._loop:
            frames, seconds = self.summary.frame_count, self.summary.period_s
            msg = f"{self._spec}: replay ended after {frames} frames ({seconds:g} s)"
            raise SourceExhaustedError(msg)
        if pass_number != self._pass:
            self._start_pass(int(pass_number))
        while self._pending is not None and self._pending.offset_s <= position_s:
            self._current = self._pending
            self._pending = next(self._frames, None) if self._frames is not None else None
        if self._current is None:
            raise SourceExhaustedError(f"{self._spec}: the file no longer holds the frames counted at open")
        return self._current

    def _start_pass(self, pass_number: int) -> None:
        if self._frames is not None:
            self._frames.close()
        self._frames = _play(self._opener, self.summary.frame_count)
        self._pass = pass_number
        self._current = None
        self._pending = next(self._frames, None)


def _play(opener: FrameOpener, frame_count: int) -> Generator[ReplayFrame, None, None]:
    """The frames of one pass, no more than were counted at open (a file may be growing)."""
    frames = opener(_quiet)
    try:
        yield from itertools.islice(frames, frame_count)
    finally:
        frames.close()


def _quiet(_message: str) -> None:
    """Warnings were logged by the pass at open time; replays do not repeat them."""


def open_replay(spec_path: str, clock: Clock, *, speed: float = 1.0, loop: bool = False) -> ReplaySource:
    """Open `replay:` + `spec_path` (see gpuwatch.sources.replay.spec for the ?key=value options).

    The whole file is read once here, so a missing file, a bad line or a missing CSV header is
    a SourceError now, naming the file and line, rather than part way through the replay.
    """
    options = parse_spec(spec_path, speed=speed, loop=loop)
    kind = _detect_kind(options.path)
    opener: FrameOpener = partial(_recording_frames if kind is ReplayKind.RECORDING else _csv_frames, options)
    summary = _survey(opener, kind, options)
    _log.info(
        "replay %s: %s, %d frames over %.1f s, %d GPUs, %d columns ignored",
        options.path,
        kind.value,
        summary.frame_count,
        summary.duration_s,
        summary.gpu_count,
        len(summary.ignored_columns),
    )
    return ReplaySource(f"replay:{spec_path}", clock, opener, summary, speed=options.speed, loop=options.loop)


def _survey(opener: FrameOpener, kind: ReplayKind, options: ReplayOptions) -> ReplaySummary:
    count, duration_s, gpu_count = 0, 0.0, 0
    frames = opener(_log.warning)
    try:
        for frame in frames:
            count, duration_s, gpu_count = count + 1, frame.offset_s, max(gpu_count, len(frame.gpus))
    finally:
        frames.close()
    if count == 0:
        raise SourceError(f"replay file {options.path} holds no frames to replay")
    interval_s = duration_s / (count - 1) if count > 1 and duration_s > 0 else options.interval_s
    ignored = _ignored_columns(options) if kind is ReplayKind.SMI_CSV else ()
    return ReplaySummary(kind, count, duration_s, duration_s + interval_s, gpu_count, ignored)


def _detect_kind(path: Path) -> ReplayKind:
    with _open_text(path) as handle:
        first = next((line for line in _checked_lines(handle, path) if line.strip()), None)
    if first is None:
        raise SourceError(f"replay file {path} is empty")
    return ReplayKind.RECORDING if is_recording(first) else ReplayKind.SMI_CSV


def _recording_frames(options: ReplayOptions, warn: Warn) -> Generator[ReplayFrame, None, None]:
    with _open_text(options.path) as handle:
        lines = _checked_lines(handle, options.path)
        yield from recording_frames(read_snapshots(lines, name=str(options.path), warn=warn))


def _csv_frames(options: ReplayOptions, warn: Warn) -> Generator[ReplayFrame, None, None]:
    with _open_text(options.path) as handle:
        yield from _parse_csv(_checked_lines(handle, options.path), options, warn).frames


def _ignored_columns(options: ReplayOptions) -> tuple[str, ...]:
    with _open_text(options.path) as handle:
        return _parse_csv(_checked_lines(handle, options.path), options, _quiet).layout.ignored


def _parse_csv(lines: Iterable[str], options: ReplayOptions, warn: Warn) -> SmiCsv:
    return parse_smi_csv(
        lines,
        name=str(options.path),
        columns=options.columns,
        gpus=options.gpus,
        interval_s=options.interval_s,
        warn=warn,
    )


def _open_text(path: Path) -> TextIO:
    try:
        # utf-8-sig drops the byte-order mark some Windows tools put before the header.
        return path.open(encoding="utf-8-sig", newline="")
    except OSError as exc:
        raise SourceError(f"replay file {path} cannot be read: {exc.strerror or exc}") from None


def _checked_lines(handle: TextIO, path: Path) -> Iterator[str]:
    try:
        yield from handle
    except UnicodeDecodeError as exc:
        raise SourceError(f"replay file {path} is not UTF-8 text: {exc.reason} at byte {exc.start}") from None
    except OSError as exc:
        raise SourceError(f"replay file {path} cannot be read: {exc.strerror or exc}") from None
