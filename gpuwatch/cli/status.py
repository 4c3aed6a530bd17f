"""`gpuwatch status`: the running daemon's decision per GPU, or (no daemon, or --source) the raw readings."""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import click
from click.core import ParameterSource

from gpuwatch.cli.admit import connect
from gpuwatch.cli.check import EXIT_UNKNOWN, judge
from gpuwatch.cli.daemon_view import render_daemon_state
from gpuwatch.cli.options import (
    DAEMON_TIMEOUT_S,
    EXIT_ERROR,
    configure_logging,
    fail,
    open_source_or_exit,
    source_option,
    url_option,
    watch_options,
)
from gpuwatch.cli.screen import Screen, colour_wanted, show_every, watching
from gpuwatch.cli.table import render_status
from gpuwatch.exposure.client import GpuwatchClient, GpuwatchError
from gpuwatch.exposure.http.responses import json_bytes
from gpuwatch.exposure.urls import redacted
from gpuwatch.sampler.loop import Sampler
from gpuwatch.sources.clock import SystemClock
from gpuwatch.sources.codec import snapshot_to_dict
from gpuwatch.sources.model import Snapshot

# How long `status` waits for the source by default before reporting it as not answering, in s.
DEFAULT_TIMEOUT_S = 10.0


def _source_down(snapshot: Snapshot) -> bool:
    """True when the source gave no reading at all: nothing to show but the error."""
    return snapshot.health.source_error is not None and all(g.reading is None for g in snapshot.gpus)


def _snapshot_text(snapshot: Snapshot, *, as_json: bool, now_monotonic: float, banner: str) -> str:
    if as_json:
        return json.dumps(snapshot_to_dict(snapshot), indent=2)
    table = render_status(snapshot, now_monotonic)
    return f"{banner}\n{table}" if banner else table


def _document_text(document: dict[str, Any], *, as_json: bool) -> str:
    if as_json:
        # Encoded as the daemon encodes it: the same bytes /v1/state answered (less the newline
        # the screen adds back).
        return json_bytes(document).decode().removesuffix("\n")
    return render_daemon_state(document, colour=colour_wanted())


def _from_daemon(
    client: GpuwatchClient, first: dict[str, Any], *, as_json: bool, watch_s: float | None, count: int | None
) -> int:
    """Show the daemon's decision (again every `watch_s`); the exit status is `check`'s for the last one."""
    last, first_pending = first, True

    def frame() -> str:
        nonlocal last, first_pending
        if first_pending:
            first_pending = False
        else:
            last = client.state()
        return _document_text(last, as_json=as_json)

    screen = Screen(in_place=watch_s is not None and not as_json)
    drawn = show_every(screen, frame, watch_s=watch_s, count=count, failures=(GpuwatchError,))
    return judge(last).status if drawn else EXIT_UNKNOWN


@click.command()
@url_option
@source_option
@click.option(
    "--json", "as_json", is_flag=True, help="Print the daemon's /v1/state (or the snapshot) as JSON."
)
@watch_options(default_s=2.0, min_s=0.1)
@click.option(
    "--timeout",
    "timeout_s",
    type=click.FloatRange(min=0.01),
    default=DEFAULT_TIMEOUT_S,
    show_default=True,
    help="Seconds to wait for the source (a hung driver) before reporting it as not answering; "
    f"asking the daemon, {DAEMON_TIMEOUT_S:g} s unless given.",
)
@click.pass_context
def status(  # noqa: PLR0913 - one per option
    ctx: click.Context,
    url: str,
    source_spec: str,
    *,
    as_json: bool,
    watch_s: float | None,
    count: int | None,
    timeout_s: float,
) -> None:
    """Show what the running gpuwatch daemon decided for every GPU, and why.

    Asks the daemon at --url: the node's state, pressure and free slots by class, the duration
    each class's jobs are planned with and its basis (request, learned, configured, unknown), and
    per GPU its state, slots and open leases (critical/default/sheddable), margin, predicted
    margin, time to slowdown, power, utilization and memory, with the reason of every GPU that is
    not OK. Exit status as `gpuwatch check`: 0 ok or elevated, 1 hot, critical, failed or stale,
    2 unknown.

    With --source, or when no daemon answers (said on stderr), reads the GPUs directly instead:
    temperatures, margin, power, utilization, memory and clocks, and no policy runs. Exits 2
    with one sentence when that source gives no data (e.g. no NVIDIA driver).
    """
    configure_logging(logging.ERROR)
    explicit = (ParameterSource.COMMANDLINE, ParameterSource.ENVIRONMENT)
    if ctx.get_parameter_source("source_spec") not in explicit:
        explicit_timeout = ctx.get_parameter_source("timeout_s") in explicit
        client = connect(url, timeout_s if explicit_timeout else DAEMON_TIMEOUT_S)
        try:
            first = client.state()
        except GpuwatchError as exc:
            click.echo(
                f"gpuwatch: no daemon answered ({exc}); reading --source {source_spec} directly", err=True
            )
        else:
            raise click.exceptions.Exit(
                _from_daemon(client, first, as_json=as_json, watch_s=watch_s, count=count)
            )
        banner = f"no policy ran: raw readings from {source_spec}, no gpuwatch daemon at {redacted(url)}"
    else:
        banner = ""
    _direct(source_spec, as_json=as_json, watch_s=watch_s, count=count, timeout_s=timeout_s, banner=banner)


def _direct(  # noqa: PLR0913 - the options it runs with
    source_spec: str,
    *,
    as_json: bool,
    watch_s: float | None,
    count: int | None,
    timeout_s: float,
    banner: str,
) -> None:
    """The direct read: the source's snapshot as a table or JSON, again every `watch_s`."""
    clock = SystemClock()
    source = open_source_or_exit(source_spec, clock)
    sampler = Sampler(source, interval_s=watch_s or 1.0, read_timeout_s=timeout_s, clock=clock)
    screen = Screen(in_place=watch_s is not None and not as_json)
    try:
        shown = 0
        with watching(screen):
            while True:
                snapshot = sampler.sample_once()
                if _source_down(snapshot) and watch_s is None:
                    fail(snapshot.health.source_error or "the source gave no data")
                text = _snapshot_text(
                    snapshot, as_json=as_json, now_monotonic=clock.monotonic(), banner=banner
                )
                screen.draw(text)
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
