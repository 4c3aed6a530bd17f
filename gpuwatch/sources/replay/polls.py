"""Groups nvidia-smi CSV rows into polls (one row per GPU), by GPU key or by position in the poll."""

from __future__ import annotations

import itertools
import statistics
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

from gpuwatch.sources.base import SourceError
from gpuwatch.sources.replay.lines import Warn
from gpuwatch.sources.replay.smi_columns import RowValues

# Files with no GPU key column are split into polls by position; the GPU count is worked out
# from the timestamps of the first rows. 64 GPUs is more than any single node holds today.
MAX_INFERRED_GPUS = 64
# Share of gaps allowed to break the pattern: a GPU can stall a poll for seconds (real traces).
_TOLERATED = 0.05


@dataclass(frozen=True, slots=True)
class SmiRow:
    """One parsed CSV row and the file line it came from."""

    line: int
    values: RowValues


@dataclass(frozen=True, slots=True)
class Poll:
    """The rows nvidia-smi wrote in one pass over the GPUs, with each row's GPU index."""

    rows: tuple[SmiRow, ...]
    indices: tuple[int, ...]


def group_by_key(rows: Iterable[SmiRow], key_field: str, name: str, warn: Warn) -> Iterator[Poll]:
    """A new poll starts when a GPU key (index, uuid or bus id) repeats within the current one.

    GPUs are numbered by their `index` column, else in the order their key first appears.
    A final poll with fewer GPUs than the others is dropped: the file was cut mid-poll.
    """
    numbering: dict[object, int] = {}
    pending: list[SmiRow] = []
    keys: set[object] = set()
    largest = 0
    for row in rows:
        key = row.values.identity.get(key_field)
        if key is None:
            msg = f"{name}:{row.line}: no {key_field} value, so this row cannot be matched to a GPU"
            raise SourceError(msg)
        if key in keys:
            largest = max(largest, len(pending))
            yield _keyed_poll(pending, key_field, numbering)
            pending, keys = [], set()
        numbering.setdefault(key, len(numbering))
        pending.append(row)
        keys.add(key)
    if len(pending) >= largest and pending:
        yield _keyed_poll(pending, key_field, numbering)
    elif pending:
        warn(f"{name}:{pending[-1].line}: last poll has {len(pending)} of {largest} GPUs (file cut); skipped")


def _keyed_poll(rows: Sequence[SmiRow], key_field: str, numbering: dict[object, int]) -> Poll:
    indices = tuple(
        int(row.values.identity.get("index", numbering[row.values.identity[key_field]])) for row in rows
    )
    return Poll(tuple(rows), indices)


def group_by_position(
    rows: Iterable[SmiRow], count: int, min_gap_s: float | None, name: str, warn: Warn
) -> Iterator[Poll]:
    """Every `count` rows form a poll; the n-th row of a poll is GPU n.

    With `min_gap_s`, each poll must start at least that long after the previous row, which
    catches a file whose GPU count changes part way (the rows would be matched to wrong GPUs).
    """
    pending: list[SmiRow] = []
    for row in rows:
        if len(pending) == count:
            _check_poll_start(pending[-1], row, count, min_gap_s, name)
            yield Poll(tuple(pending), tuple(range(count)))
            pending = []
        pending.append(row)
    if len(pending) == count:
        yield Poll(tuple(pending), tuple(range(count)))
    elif pending:
        warn(f"{name}:{pending[-1].line}: last poll has {len(pending)} of {count} rows (file cut); skipped")


def _check_poll_start(previous: SmiRow, row: SmiRow, count: int, min_gap_s: float | None, name: str) -> None:
    if min_gap_s is None or previous.values.timestamp is None or row.values.timestamp is None:
        return
    gap_s = row.values.timestamp - previous.values.timestamp
    if gap_s < min_gap_s:
        msg = (
            f"{name}:{row.line}: a new poll of {count} GPUs should start here, but this row is only "
            f"{gap_s * 1000:.0f} ms after the previous one (polls are >= {min_gap_s * 2000:.0f} ms apart); "
            f"the GPU count seems to change; give it with ?gpus=N"
        )
        raise SourceError(msg)


def infer_gpu_count(window: Sequence[SmiRow], name: str) -> tuple[int, float | None]:
    """The GPU count of a file without a GPU key column, and the least gap between polls in s.

    nvidia-smi writes all GPUs of a poll within milliseconds, then sleeps for the loop interval.
    The count is the smallest n for which every n-th gap is long (at least half the typical
    poll gap) and nearly all gaps inside polls are short; a GPU that stalls a poll for seconds
    now and then (seen in real traces) does not change the answer.
    """
    times = [row.values.timestamp for row in window]
    if any(stamp is None for stamp in times):
        msg = (
            f"{name}: no index, uuid or pci.bus_id column and no timestamp column, so rows cannot be "
            f"matched to GPUs; give the GPU count, e.g. replay:{name}?gpus=8"
        )
        raise SourceError(msg)
    gaps = [later - earlier for earlier, later in itertools.pairwise(t for t in times if t is not None)]
    if not gaps:
        return 1, None
    for count in range(1, min(MAX_INFERRED_GPUS, len(window) // 2) + 1):
        min_gap_s = _poll_pattern_fits(gaps, count)
        if min_gap_s is not None:
            return count, min_gap_s
    msg = (
        f"{name}: no index, uuid or pci.bus_id column, and the timestamps do not show how many "
        f"GPUs each poll has; give the GPU count, e.g. replay:{name}?gpus=8"
    )
    raise SourceError(msg)


def _poll_pattern_fits(gaps: Sequence[float], count: int) -> float | None:
    """Half the typical gap between polls if rows come in bursts of `count`, else None.

    Gaps between polls must all be long and mostly alike; gaps inside polls mostly short.
    """
    between = gaps[count - 1 :: count]
    typical = statistics.median(between)
    if typical <= 0 or min(between) < typical / 2:
        return None
    irregular_between = sum(1 for gap in between if gap > 2 * typical)
    long_within = sum(
        1 for position, gap in enumerate(gaps) if position % count != count - 1 and gap >= typical / 2
    )
    if irregular_between > _TOLERATED * len(between) or long_within > _TOLERATED * (len(gaps) - len(between)):
        return None
    return typical / 2
