"""Opens the source a `--source` spec names: `nvml`, `sim[:SPEC]` or `replay:FILE`."""

from __future__ import annotations

from gpuwatch.sources.base import Source, SourceError
from gpuwatch.sources.clock import Clock

SPEC_HELP = "nvml (real GPUs), sim:SPEC (e.g. sim:8xH100, sim:2xH100,2xA100) or replay:FILE"


def open_source(spec: str, clock: Clock, *, seed: int = 0, interval_s: float | None = None) -> Source:
    """Open the source `spec` names; raises SourceError with a sentence naming what is wrong.

    Each kind is imported only when asked for, so a simulation never loads NVML. With the
    sampling `interval_s`, NVML that fails is retried at the next sample, then at every second
    one, so a driver that comes back is seen within two intervals (without: after 1 s, backing
    off to 60 s). The delays are half an interval short of whole intervals, so sampling jitter
    cannot push an attempt to the sample after.
    """
    kind, has_argument, argument = spec.strip().partition(":")
    if kind == "nvml" and not has_argument:
        from gpuwatch.sources.nvml import NvmlSource  # noqa: PLC0415 - load NVML only when asked for

        if interval_s is None:
            return NvmlSource(clock)
        return NvmlSource(clock, backoff_initial_s=0.5 * interval_s, backoff_max_s=1.5 * interval_s)
    if kind == "sim":
        from gpuwatch.sources.sim import open_sim  # noqa: PLC0415 - see the docstring

        return open_sim(argument, clock, seed=seed)
    if kind == "replay":
        if not argument:
            raise SourceError("--source replay needs a file: replay:FILE")
        from gpuwatch.sources.replay import open_replay  # noqa: PLC0415 - see the docstring

        return open_replay(argument, clock)
    raise SourceError(f"unknown source {spec!r}: expected {SPEC_HELP}")
