"""`gpuwatch fleet`: one table for many nodes, hottest first, from Prometheus or from the daemons."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable

import click
from click.core import ParameterSource

from gpuwatch.cli.check import EXIT_UNKNOWN
from gpuwatch.cli.fleet_daemons import TargetError, ask_daemons, node_name, parse_targets
from gpuwatch.cli.fleet_prometheus import Prometheus, PrometheusError, ask_prometheus
from gpuwatch.cli.fleet_rows import NodeRow, fleet_document, fleet_status, render_fleet
from gpuwatch.cli.options import configure_logging, fail, watch_options
from gpuwatch.cli.screen import Screen, colour_wanted, show_every

# Per node (or per Prometheus query), s: a node that has not answered by then is a row saying so.
DEFAULT_TIMEOUT_S = 2.0
# Targets named in the table's first line; the rest are counted.
SHOWN_TARGETS = 3


def _frame(rows: list[NodeRow], source: str, *, as_json: bool) -> str:
    if as_json:
        return json.dumps(fleet_document(rows, source), separators=(",", ":"))
    return render_fleet(rows, source, colour=colour_wanted())


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
        names = ", ".join(map(node_name, urls[:SHOWN_TARGETS])) + (
            ", ..." if len(urls) > SHOWN_TARGETS else ""
        )
        plural = "" if len(urls) == 1 else "s"
        return (lambda: ask_daemons(urls, timeout_s)), f"{len(urls)} target{plural} ({names})"
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
@watch_options(default_s=5.0, min_s=0.5)
@click.option(
    "--timeout",
    "timeout_s",
    type=click.FloatRange(min=0.01),
    default=DEFAULT_TIMEOUT_S,
    show_default=True,
    help="Seconds to wait for each node (each Prometheus query) before showing it as unreachable.",
)
@click.pass_context
def fleet(  # noqa: PLR0913 - one per option
    ctx: click.Context,
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
    if targets is not None and ctx.get_parameter_source("prometheus_url") is ParameterSource.ENVIRONMENT:
        prometheus_url = None  # --targets on the command line wins over GPUWATCH_PROMETHEUS
    collect, source = _collector(prometheus_url, targets, job, timeout_s)
    rows: list[NodeRow] = []

    def frame() -> str:
        nonlocal rows
        rows = collect()
        return _frame(rows, source, as_json=as_json)

    screen = Screen(in_place=watch_s is not None and not as_json)
    try:
        drawn = show_every(screen, frame, watch_s=watch_s, count=count, failures=(PrometheusError,))
    except PrometheusError as exc:
        fail(str(exc))
    raise click.exceptions.Exit(fleet_status(rows) if drawn else EXIT_UNKNOWN)
