"""One recorded poll of every GPU, timed relative to the first poll of its file."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from gpuwatch.sources.model import GpuSample, frozen_counts


@dataclass(frozen=True, slots=True)
class ReplayFrame:
    """What the replay source hands out when this frame is due.

    `offset_s` is seconds after the file's first frame (never decreasing along a file).
    `dropped` counts values the plausibility screen discarded in this frame, by field.
    `error` is the sentence a recording stored when its whole source was down.
    """

    offset_s: float
    gpus: tuple[GpuSample, ...]
    driver_version: str | None = None
    dropped: Mapping[str, int] = field(default_factory=frozen_counts)
    error: str | None = None
