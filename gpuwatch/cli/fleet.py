"""`gpuwatch fleet`: one table for many nodes, hottest first, from Prometheus or from the daemons."""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from collections.abc import Callable

import click

from gpuwatch.cli.check import EXIT_UNKNOWN
from gpuwatch.cli.fleet_daemons import TargetError, ask_daemons, node_name, parse_targets
from gpuwatch.cli.fleet_prometheus import Prometheus, PrometheusError, ask_prometheus
from gpuwatch.cli.fleet_rows import NodeRow, fleet_document, fleet_status, render_fleet
from gpuwatch.cli.options import configure_logging, fail
from gpuwatch.cli.screen import Screen, watching

# Per node (or per Prometheus query), s: a node that has not answered by then is a row saying so.
DEFAULT_TIMEOUT_S = 2.0


def _frame(rows: list[NodeRow], source: str, *, as_json: bool) -> str:
    if as_json:
        return json.dumps(fleet_document(rows, source), separators=(",", ":"))
    colour = sys.stdout.isatty() and not os.environ.get("NO_COLOR")
    return render_fleet(rows, source, colour=colour)


def _collector(
    prometheus_url: str | None, targets: str | None, job: str, timeout_s: float
) -> tuple[Callable[[], list[NodeRow]], str]:
    """What to ask each refresh, and how the source is named; a bad --targets or URL exits 2."""
    if (prometheus_url is None) == (targets is None):
        fail("give one of --prometheus URL or --targets host:port[,host:port...]")
    if targets is not None:
        try:
            urls = parse_targets(targets)
        except TargetError as exc:
            fail(str(exc))
        shown = ", ".join(map(node_name, urls[:3])) + (", ..." if len(urls) > 3 else "")
        return (lambda: ask_daemons(urls, timeout_s)), f"{len(urls)} targets ({shown})"
    try:
        prometheus = Prometheus(str(prometheus_url), timeout_s)
    except PrometheusError as exc:
        fail(str(exc))
    return (lambda: ask_prometheus(prometheus, job)), f"Prometheus {prometheus.url}, job {job}"


@click.command()
@click.option(
    "--prometheus",
    "prometheus_url",
    envvar="GPUWATCH_PROMETHEUS",
    default=None,
    help="A Prometheus server that scrapes gpuwatch (http://user:password@host:port for basic auth).",
)
@click.option(
    "--job",
    default="gpuwatch",
    show_default=True,
    help="With --prometheus: the scrape job of the gpuwatch daemons.",
)
@click.option(
    "--targets",
    default=None,
    help="Ask these daemons' /v1/state directly, in parallel: host:port[,host:port...].",
)
@click.option("--json", "as_json", is_flag=True, help="One JSON document per refresh (nodes hottest first).")
@click.option(
    "--watch",
    "watch_s",
    type=click.FloatRange(min=0.5),
    is_flag=False,
    flag_value=5.0,
    default=None,
    metavar="[SECONDS]",
    help="Refresh every SECONDS (default 5) until interrupted.",
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
    help="Seconds to wait for each node (each Prometheus query) before showing it as unreachable.",
)
def fleet(  # noqa: PLR0913 - one per option
    prometheus_url: str | None,
    job: str,
    targets: str | None,
    *,
    as_json: bool,
    watch_s: float | None,
    count: int | None,
    timeout_s: float,
) -> None:
    """Show many nodes in one table, hottest first: what each one admits, and how close it runs.

    Per node: state, pressure, free slots by class (critical/default/sheddable), GPUs, the worst
    GPU with its margin and time to slowdown, and the sample age; above the table, how many nodes
    admit each class and the fleet's free slots. A node that does not answer is a row saying why.

    Exit status: 1 when a node has a problem `gpuwatch check` would report (hot, critical, failed
    GPU, stale), else 2 when a node did not answer, else 0. Prometheus not answering exits 2.
    """
    configure_logging(logging.ERROR)
    collect, source = _collector(prometheus_url, targets, job, timeout_s)
    screen = Screen(in_place=watch_s is not None and not as_json)
    rows: list[NodeRow] | None = None
    shown = 0
    try:
        with watching(screen):
            while True:
                try:
                    rows = collect()
                except PrometheusError as exc:
                    rows = None
                    if watch_s is None:
                        fail(str(exc))
                    screen.draw(f"gpuwatch: {exc}")
                else:
                    screen.draw(_frame(rows, source, as_json=as_json))
                shown += 1
                if watch_s is None or (count is not None and shown >= count):
                    break
                time.sleep(watch_s)
    except KeyboardInterrupt:
        pass
    raise click.exceptions.Exit(EXIT_UNKNOWN if rows is None else fleet_status(rows))
