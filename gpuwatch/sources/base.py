"""The contract every telemetry source (nvml, sim, replay) fulfils for the sampler."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from gpuwatch.sources.model import GpuSample, frozen_counts


class SourceError(Exception):
    """A source cannot be opened at all (bad spec, unreadable file); the message says why."""


class SourceExhaustedError(Exception):
    """A finite source (a replayed recording) has nothing more to play."""


@dataclass(frozen=True, slots=True)
class SourceReading:
    """What one `Source.read()` call returns.

    `gpus` lists every GPU the source knows of, including ones it could not read this round
    (reading None, health saying why). `errors` counts the NVML error names met in this call
    (NOT_SUPPORTED is not an error). `dropped` counts values discarded as implausible, by field.
    `error` is one sentence when the whole source failed (library missing, driver gone).
    """

    gpus: tuple[GpuSample, ...]
    driver_version: str | None = None
    errors: Mapping[str, int] = field(default_factory=frozen_counts)
    dropped: Mapping[str, int] = field(default_factory=frozen_counts)
    error: str | None = None


class Source(Protocol):
    """A source of GPU telemetry. `read` is called from the sampler thread only.

    `read` must not raise for faults of the hardware or driver: it reports them in the
    `SourceReading`. It may raise `SourceExhaustedError` when a recording ends.
    """

    @property
    def spec(self) -> str:
        """The --source spec this source was opened from, e.g. "sim:8xH100"."""
        ...

    def read(self) -> SourceReading:
        """Read every GPU once."""
        ...

    def close(self) -> None:
        """Release the library, threads and files the source holds."""
        ...
