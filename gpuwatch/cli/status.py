"""`gpuwatch status`: a table (or JSON) of every GPU's temperatures, margin, power and clocks."""

from __future__ import annotations

import json
import logging
import sys
import time

import click

from gpuwatch.cli.options import EXIT_ERROR, configure_logging, fail, open_source_or_exit, source_option
from gpuwatch.cli.table import render_status
from gpuwatch.clock import SystemClock
from gpuwatch.codec import snapshot_to_dict
from gpuwatch.model import Snapshot
from gpuwatch.sampler import Sampler

# How long `status` waits for the source by default before reporting it as not answering, in s.
DEFAULT_TIMEOUT_S = 10.0


def _source_down(snapshot: Snapshot) -> bool:
    """True when the source gave no reading at all: nothing to show but the error."""
    return snapshot.health.source_error is not None and all(g.reading is None for g in snapshot.gpus)


def _emit(snapshot: Snapshot, *, as_json: bool, now_monotonic: float) -> None:
    if as_json:
        click.echo(json.dumps(snapshot_to_dict(snapshot), indent=2))
    else:
        click.echo(render_status(snapshot, now_monotonic))


@click.command()
@source_option
@click.option("--json", "as_json", is_flag=True, help="Print the snapshot as JSON instead of a table.")
@click.option(
    "--watch",
    "watch_s",
    type=click.FloatRange(min=0.1),
    is_flag=False,
    flag_value=2.0,
    default=None,
    metavar="[SECONDS]",
    help="Refresh every SECONDS (default 2) until interrupted.",
)
@click.option(
    "--count", type=click.IntRange(min=1), default=None, help="With --watch: stop after N refreshes."
)
@click.option(
    "--timeout",
    "timeout_s",
    type=click.FloatRange(min=0.01),
    default=DEFAULT_TIMEOUT_S,
    show_default=True,
    help="Seconds to wait for the source (a hung driver) before reporting it as not answering.",
)
def status(
    source_spec: str, *, as_json: bool, watch_s: float | None, count: int | None, timeout_s: float
) -> None:
    """Show every GPU: temperatures, thermal margin, power, utilization, memory, clocks.

    Exits 2 with one sentence when the source gives no data (e.g. no NVIDIA driver).
    """
    configure_logging(logging.ERROR)
    clock = SystemClock()
    source = open_source_or_exit(source_spec, clock)
    sampler = Sampler(source, interval_s=watch_s or 1.0, read_timeout_s=timeout_s, clock=clock)
    try:
        shown = 0
        while True:
            snapshot = sampler.sample_once()
            if _source_down(snapshot) and watch_s is None:
                fail(snapshot.health.source_error or "the source gave no data")
            if watch_s is not None and not as_json and sys.stdout.isatty():
                click.clear()
            _emit(snapshot, as_json=as_json, now_monotonic=clock.monotonic())
            shown += 1
            if watch_s is None or (count is not None and shown >= count) or sampler.exhausted:
                break
            time.sleep(watch_s)
    except KeyboardInterrupt:
        pass
    finally:
        sampler.stop()
    if _source_down(sampler.latest):
        raise click.exceptions.Exit(EXIT_ERROR)
