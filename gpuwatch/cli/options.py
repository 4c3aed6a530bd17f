"""Options shared by the commands, each also read from a GPUWATCH_* environment variable."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from typing import NoReturn, TypeVar

import click

from gpuwatch.exposure.client import DEFAULT_URL
from gpuwatch.service.logs import LogfmtFormatter
from gpuwatch.sources.base import Source, SourceError
from gpuwatch.sources.clock import Clock
from gpuwatch.sources.spec import SPEC_HELP, open_source

F = TypeVar("F", bound=Callable[..., object])

# Exit status for errors, as DESIGN §3 fixes for `check` and `admit`; click's usage errors use it too.
EXIT_ERROR = 2


def source_option(function: F) -> F:
    """--source / GPUWATCH_SOURCE."""
    return click.option(
        "--source",
        "source_spec",
        envvar="GPUWATCH_SOURCE",
        default="nvml",
        show_default=True,
        help=f"Where readings come from: {SPEC_HELP}.",
    )(function)


def interval_option(function: F) -> F:
    """--interval / GPUWATCH_INTERVAL."""
    return click.option(
        "--interval",
        "interval_s",
        envvar="GPUWATCH_INTERVAL",
        type=click.FloatRange(min=0.01),
        default=1.0,
        show_default=True,
        help="Seconds between samples.",
    )(function)


def open_source_or_exit(spec: str, clock: Clock, interval_s: float | None = None) -> Source:
    """Open the source (NVML retried within two `interval_s` when it fails), or exit with status 2."""
    try:
        return open_source(spec, clock, interval_s=interval_s)
    except SourceError as exc:
        fail(str(exc))


def fail(sentence: str) -> NoReturn:
    """Print one error sentence to stderr and exit with status 2."""
    click.echo(f"gpuwatch: {sentence}", err=True)
    raise click.exceptions.Exit(EXIT_ERROR)


def configure_logging(level: int = logging.WARNING) -> None:
    """Log lines at `level` and above to stderr, in logfmt as `serve` does; stdout stays for results.

    One-shot commands pass ERROR: the command's own one-sentence report says what went wrong,
    and the source's retry warnings would only repeat it.
    """
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(LogfmtFormatter())
    logging.basicConfig(level=level, handlers=[handler], force=True)


# A one-shot command may wait longer than the client library's default: nothing queues behind it, s.
DAEMON_TIMEOUT_S = 2.0


def url_option(function: F) -> F:
    """--url / GPUWATCH_URL: where the daemon's HTTP API listens."""
    return click.option(
        "--url",
        envvar="GPUWATCH_URL",
        default=DEFAULT_URL,
        show_default=True,
        help="The gpuwatch daemon's HTTP API (http://user:password@host:port for basic auth).",
    )(function)


def timeout_option(function: F) -> F:
    """--timeout: seconds to wait for the daemon."""
    return click.option(
        "--timeout",
        "timeout_s",
        type=click.FloatRange(min=0.01),
        default=DAEMON_TIMEOUT_S,
        show_default=True,
        help="Seconds to wait for gpuwatch to connect and to answer.",
    )(function)


def watch_options(*, default_s: float, min_s: float) -> Callable[[F], F]:
    """--watch [SECONDS] (refresh until interrupted; `default_s` when given bare) and --count N."""

    def decorate(function: F) -> F:
        counted = click.option(
            "--count", type=click.IntRange(min=1), default=None, help="With --watch: stop after N refreshes."
        )(function)
        return click.option(
            "--watch",
            "watch_s",
            type=click.FloatRange(min=min_s),
            is_flag=False,
            flag_value=default_s,
            default=None,
            metavar="[SECONDS]",
            help=f"Refresh every SECONDS (default {default_s:g}) until interrupted.",
        )(counted)

    return decorate
