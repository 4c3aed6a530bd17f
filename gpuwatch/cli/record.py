"""`gpuwatch record`: samples a source for a while and writes a recording replay can play."""

from __future__ import annotations

import time

import click

from gpuwatch.cli.options import configure_logging, fail, interval_option, open_source_or_exit, source_option
from gpuwatch.sampler.loop import Sampler
from gpuwatch.sources.clock import SystemClock
from gpuwatch.sources.model import Snapshot
from gpuwatch.sources.replay import RecordingWriter


@click.command()
@source_option
@interval_option
@click.option(
    "--out",
    "out_path",
    required=True,
    type=click.Path(dir_okay=False, writable=True),
    help="File to write (JSON Lines; play it with --source replay:FILE).",
)
@click.option(
    "--duration",
    "duration_s",
    required=True,
    type=click.FloatRange(min=0, min_open=True),
    help="Seconds to record.",
)
def record(source_spec: str, interval_s: float, out_path: str, duration_s: float) -> None:
    """Record snapshots from a source for DURATION seconds into a file."""
    configure_logging()
    clock = SystemClock()
    source = open_source_or_exit(source_spec, clock)
    try:
        writer = RecordingWriter(out_path, source=source_spec)
    except OSError as exc:
        source.close()
        fail(f"cannot write {out_path}: {exc.strerror or exc}")
    written: list[Snapshot] = []

    def keep(snapshot: Snapshot) -> None:
        writer.write(snapshot)
        written.append(snapshot)

    sampler = Sampler(source, interval_s=interval_s, clock=clock)
    sampler.subscribe(keep)
    sampler.start()
    deadline = clock.monotonic() + duration_s
    try:
        # Poll in short steps so a recording that ends early (a replay) ends the command too.
        while not sampler.exhausted and (remaining := deadline - clock.monotonic()) > 0:
            time.sleep(min(remaining, 0.1))
    except KeyboardInterrupt:
        pass
    finally:
        sampler.stop()
        writer.close()
    gpus = len(written[-1].gpus) if written else 0
    click.echo(f"recorded {len(written)} snapshots of {gpus} GPUs from {source_spec} to {out_path}")
    if not written or all(s.health.source_error for s in written):
        fail((written[-1].health.source_error if written else None) or "no snapshot was taken")
