"""gpuwatch's recording format: JSON Lines, a header line, then one snapshot per line.

    {"format": "gpuwatch-recording", "version": 1, "source": "nvml", "started_at": 1700000000.0}
    {"schema_version": 1, "sequence": 1, ...}      <- gpuwatch.sources.codec.snapshot_to_dict

Each line is flushed as it is written, so a recorder killed mid-line leaves at worst a cut final
line; readers skip that line with a warning. Any other bad line is an error naming its number.
"""

from __future__ import annotations

import json
import logging
import os
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from gpuwatch.sources.base import SourceError
from gpuwatch.sources.codec import CodecError, snapshot_from_dict, snapshot_to_dict
from gpuwatch.sources.model import GpuSample, Snapshot, frozen_counts
from gpuwatch.sources.plausible import screen
from gpuwatch.sources.replay.frame import ReplayFrame
from gpuwatch.sources.replay.lines import NumberedLine, Warn, numbered_lines

FORMAT_NAME = "gpuwatch-recording"
FORMAT_VERSION = 1

_log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RecordingHeader:
    """The first line of a recording: what was recorded, and when recording started."""

    source: str  # the --source spec of the recorder, e.g. "nvml"
    started_at: float  # wall clock, Unix seconds


class RecordingWriter:
    """Writes snapshots to a new recording file, one flushed JSON line each.

    The header is written with the first snapshot: `source` (default: the snapshot's) and
    `started_at` (default: the snapshot's `taken_at`). Opening fails at once (OSError naming
    the path) if the file cannot be created; an existing file is replaced.
    """

    def __init__(
        self, path: str | os.PathLike[str], *, source: str | None = None, started_at: float | None = None
    ) -> None:
        self._path = Path(path)
        self._source = source
        self._started_at = started_at
        self._file = self._path.open("w", encoding="utf-8")
        self._header_written = False

    @property
    def path(self) -> Path:
        """Where the recording goes."""
        return self._path

    def write(self, snapshot: Snapshot) -> None:
        """Append one snapshot (after the header, on the first call)."""
        if self._file.closed:
            msg = f"recording {self._path} is closed"
            raise ValueError(msg)
        if not self._header_written:
            header = {
                "format": FORMAT_NAME,
                "version": FORMAT_VERSION,
                "source": snapshot.source if self._source is None else self._source,
                "started_at": snapshot.taken_at if self._started_at is None else self._started_at,
            }
            self._write_line(header)
            self._header_written = True
        self._write_line(snapshot_to_dict(snapshot))

    def _write_line(self, data: Mapping[str, Any]) -> None:
        self._file.write(json.dumps(data, separators=(",", ":")) + "\n")
        # Flushed per line so that a killed `gpuwatch record` leaves every finished line on disk.
        self._file.flush()

    def close(self) -> None:
        """Close the file; further writes raise ValueError."""
        self._file.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


def is_recording(first_line: str) -> bool:
    """Whether a file whose first non-blank line is `first_line` claims to be a recording."""
    return first_line.lstrip().startswith("{")


def parse_header(line: str, where: str) -> RecordingHeader:
    """The header line of a recording; SourceError saying what is wrong, prefixed by `where`."""
    try:
        data = json.loads(line)
    except json.JSONDecodeError as exc:
        raise SourceError(f"{where}: not a gpuwatch recording header: {exc}") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT_NAME:
        raise SourceError(f'{where}: not a gpuwatch recording (no "format": "{FORMAT_NAME}")')
    if data.get("version") != FORMAT_VERSION:
        msg = f"{where}: recording version {data.get('version')!r} is not supported (only {FORMAT_VERSION})"
        raise SourceError(msg)
    try:
        return RecordingHeader(source=str(data["source"]), started_at=float(data["started_at"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise SourceError(f"{where}: bad recording header: {exc!r}") from None


def read_snapshots(lines: Iterable[str], *, name: str, warn: Warn = _log.warning) -> Iterator[Snapshot]:
    """The snapshots of a recording's lines (line ends kept); the header is checked first.

    `name` labels messages. A bad line raises SourceError with its number, except a cut final
    line, which is skipped with a warning.
    """
    numbered = numbered_lines(lines)
    first = next(numbered, None)
    if first is None:
        raise SourceError(f"{name}: the recording is empty (no header line)")
    parse_header(first.text, f"{name}:{first.number}")
    for line in numbered:
        snapshot = _parse_snapshot(line, name, warn)
        if snapshot is not None:
            yield snapshot


def _parse_snapshot(line: NumberedLine, name: str, warn: Warn) -> Snapshot | None:
    try:
        data = json.loads(line.text)
    except json.JSONDecodeError as exc:
        if line.last:
            warn(f"{name}:{line.number}: last line is cut short ({exc.msg}); skipped")
            return None
        raise SourceError(f"{name}:{line.number}: not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise SourceError(f"{name}:{line.number}: expected a snapshot object, got {type(data).__name__}")
    try:
        return snapshot_from_dict(data)
    except (CodecError, TypeError, ValueError) as exc:
        raise SourceError(f"{name}:{line.number}: not a snapshot: {exc}") from None


def recording_frames(snapshots: Iterable[Snapshot]) -> Iterator[ReplayFrame]:
    """Frames timed by the snapshots' monotonic clock, readings screened again for plausibility.

    The monotonic clock is used because the wall clock of the recorder may have stepped.
    """
    first_monotonic: float | None = None
    offset_s = 0.0
    for snapshot in snapshots:
        first_monotonic = snapshot.monotonic if first_monotonic is None else first_monotonic
        offset_s = max(offset_s, snapshot.monotonic - first_monotonic)
        dropped: Counter[str] = Counter()
        gpus = tuple(_screened(sample, dropped) for sample in snapshot.gpus)
        yield ReplayFrame(
            offset_s, gpus, snapshot.driver_version, frozen_counts(dropped), snapshot.health.source_error
        )


def _screened(sample: GpuSample, dropped: Counter[str]) -> GpuSample:
    """The sample with implausible values removed (a recording may be hand-edited)."""
    if sample.reading is None:
        return sample
    reading, dropped_fields = screen(sample.reading)
    dropped.update(dropped_fields)
    return replace(sample, reading=reading) if dropped_fields else sample
