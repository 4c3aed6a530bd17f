"""Parses CSV written by nvidia-smi --query-gpu (-l/-lms loops, with or without header and units).

Policy for bad input: a final line that is cut short (fewer values than columns, or no line end
and a value that does not parse) is skipped with a warning, as is a final poll missing GPUs;
a repeat of the header (nvidia-smi restarted, appending to the file) is skipped; any other
malformed line raises SourceError naming the file, line and column.
"""

from __future__ import annotations

import csv
import itertools
import logging
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

from gpuwatch.sources.base import SourceError
from gpuwatch.sources.model import (
    GpuHealth,
    GpuIdentity,
    GpuReading,
    GpuSample,
    SlowdownCounters,
    frozen_counts,
)
from gpuwatch.sources.plausible import screen
from gpuwatch.sources.replay.frame import ReplayFrame
from gpuwatch.sources.replay.lines import NumberedLine, Warn, numbered_lines
from gpuwatch.sources.replay.polls import Poll, SmiRow, group_by_key, group_by_position, infer_gpu_count
from gpuwatch.sources.replay.smi_columns import (
    ColumnLayout,
    RowValues,
    Target,
    column_name,
    decode_row,
    layout_for,
    looks_like_header,
)
from gpuwatch.sources.replay.smi_values import BadValueError

_log = logging.getLogger(__name__)

# Rows read ahead to work out the GPU count of a file without a GPU key column.
_INFERENCE_WINDOW = 4096
# Columns that tell GPUs apart, most useful first (index also numbers them).
_KEY_FIELDS = ("index", "uuid", "pci_bus_id")
_HEALTH_ERRORS = {
    GpuHealth.LOST: "nvidia-smi reported the GPU lost",
    GpuHealth.RESET_REQUIRED: "nvidia-smi reported that the GPU requires a reset",
}


@dataclass(frozen=True, slots=True)
class SmiCsv:
    """A parsed file: its columns (known and ignored) and its frames, read lazily."""

    layout: ColumnLayout
    frames: Iterator[ReplayFrame]


def parse_smi_csv(  # noqa: PLR0913 - every option is one the user can give in the spec
    lines: Iterable[str],
    *,
    name: str,
    columns: Sequence[str] | None = None,
    gpus: int | None = None,
    interval_s: float = 1.0,
    warn: Warn = _log.warning,
) -> SmiCsv:
    """Parse nvidia-smi CSV lines (line ends kept, as a text file yields them).

    The header is read at once (SourceError if it is missing and `columns` is not given, or
    present although `columns` is given); rows are parsed as `frames` is iterated. `name`
    labels messages. `gpus` gives the GPU count of a file with no index/uuid/pci.bus_id column,
    which is otherwise worked out from the timestamps. `interval_s` spaces the frames of a
    file with no timestamp column.
    """
    numbered = numbered_lines(lines)
    layout, data_lines = _read_layout(numbered, name, columns)
    rows = _rows(data_lines, layout, name, warn)
    return SmiCsv(layout, _frames(_polls(rows, layout, name, gpus, warn), interval_s))


def _split(text: str) -> list[str]:
    try:
        return next(csv.reader([text], skipinitialspace=True), [])
    except csv.Error as exc:
        raise BadValueError(f"not a CSV line: {exc}") from None


def _read_layout(
    numbered: Iterator[NumberedLine], name: str, columns: Sequence[str] | None
) -> tuple[ColumnLayout, Iterator[NumberedLine]]:
    first = next(numbered, None)
    if first is None:
        raise SourceError(f"{name}: the file has no CSV lines")
    fields = _split(first.text)
    if looks_like_header(fields):
        if columns:
            msg = f"{name}:{first.number}: the file has a header line; ?columns= is only for files without"
            raise SourceError(msg)
        return layout_for(fields), numbered
    if not columns:
        msg = (
            f"{name}:{first.number}: no header line (written with --format=csv,noheader); give the "
            f"column list, e.g. replay:{name}?columns=timestamp,index,temperature.gpu,power.draw"
        )
        raise SourceError(msg)
    layout = layout_for(columns)
    if not layout.sources:
        raise SourceError(f"{name}: none of the given columns is one gpuwatch knows: {','.join(columns)}")
    return layout, itertools.chain([first], numbered)


def _rows(lines: Iterable[NumberedLine], layout: ColumnLayout, name: str, warn: Warn) -> Iterator[SmiRow]:
    for line in lines:
        row = _parse_row(line, layout, name, warn)
        if row is not None:
            yield row


def _parse_row(line: NumberedLine, layout: ColumnLayout, name: str, warn: Warn) -> SmiRow | None:
    """One row, or None for a cut-short final line (with a warning)."""
    width = len(layout.names)
    fields: list[str] = []
    try:
        fields = _split(line.text)
        values = decode_row(layout, fields)
    except BadValueError as exc:
        if tuple(column_name(field) for field in fields) == layout.names:
            return None  # the header again: nvidia-smi was restarted, appending to the same file
        if line.last and (not line.complete or len(fields) < width):
            warn(f"{name}:{line.number}: last line is cut short ({exc}); skipped")
            return None
        raise SourceError(f"{name}:{line.number}: {exc}") from None
    return SmiRow(line.number, values)


def _polls(
    rows: Iterator[SmiRow], layout: ColumnLayout, name: str, gpus: int | None, warn: Warn
) -> Iterator[Poll]:
    key_field = next((field for field in _KEY_FIELDS if layout.has(Target.IDENTITY, field)), None)
    if key_field is not None:
        yield from group_by_key(rows, key_field, name, warn)
    elif gpus is not None:
        yield from group_by_position(rows, gpus, None, name, warn)
    else:
        window = list(itertools.islice(rows, _INFERENCE_WINDOW))
        count, min_gap_s = infer_gpu_count(window, name)
        yield from group_by_position(itertools.chain(window, rows), count, min_gap_s, name, warn)


def _frames(polls: Iterable[Poll], interval_s: float) -> Iterator[ReplayFrame]:
    first_stamp: float | None = None
    offset_s = 0.0
    for number, poll in enumerate(polls):
        stamp = poll.rows[0].values.timestamp
        if stamp is None:
            candidate_s = number * interval_s
        else:
            first_stamp = stamp if first_stamp is None else first_stamp
            candidate_s = stamp - first_stamp
        # A wall-clock step back in the file (NTP, a manual change) must not replay the past.
        offset_s = max(offset_s, candidate_s)
        yield _frame(poll, offset_s)


def _frame(poll: Poll, offset_s: float) -> ReplayFrame:
    samples: list[GpuSample] = []
    dropped: Counter[str] = Counter()
    for row, index in zip(poll.rows, poll.indices, strict=True):
        sample, dropped_fields = _sample(row.values, index, offset_s)
        samples.append(sample)
        dropped.update(dropped_fields)
    driver = next((s.identity.driver_version for s in samples if s.identity.driver_version), None)
    return ReplayFrame(offset_s, tuple(samples), driver, frozen_counts(dropped))


def _sample(values: RowValues, index: int, offset_s: float) -> tuple[GpuSample, tuple[str, ...]]:
    """A GPU sample in base units; GPUs without a uuid get a stable synthetic one."""
    identity = GpuIdentity(
        **{"uuid": f"replay-gpu-{index}", "name": "unknown", **values.identity, "index": index}
    )
    if values.health is not GpuHealth.OK:
        return GpuSample(identity, None, values.health, _HEALTH_ERRORS[values.health]), ()
    reading = GpuReading(
        # Placeholders: the source stamps readings with its clock when it plays them.
        taken_at=offset_s if values.timestamp is None else values.timestamp,
        monotonic=offset_s,
        clock_event_reasons=values.clock_event_reasons,
        slowdown_counters=SlowdownCounters(**values.counters),
        **values.reading,
    )
    screened, dropped = screen(reading)
    return GpuSample(identity, screened), dropped
