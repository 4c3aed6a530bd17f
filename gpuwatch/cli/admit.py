"""`gpuwatch admit`: ask a running gpuwatch whether one more job may start; exit 0, 75 or 2."""

from __future__ import annotations

import click

from gpuwatch.cli.options import configure_logging, fail, timeout_option, url_option
from gpuwatch.exposure.client import AdmitResult, GpuwatchClient, GpuwatchRequestError
from gpuwatch.policy.decision import PriorityClass

# EX_TEMPFAIL from sysexits.h: "try again later", which schedulers and shell loops understand.
EXIT_HELD_BACK = 75


def connect(url: str, timeout_s: float) -> GpuwatchClient:
    """A client that asks every time and never invents an answer; a bad URL ends with status 2."""
    try:
        return GpuwatchClient(url, fail_open=False, timeout_s=timeout_s, max_age_s=0.0)
    except ValueError as exc:
        fail(str(exc))


def held_back_line(result: AdmitResult, priority: str) -> str:
    """Why a job of `priority` waits, and for how long: one line for people and logs."""
    why = f" ({result.reason})" if result.reason else ""
    wait = "" if result.retry_after_s is None else f"; retry after {result.retry_after_s:g} s"
    return f"held back: class {priority} is not admitted, node {result.state}{why}{wait}"


@click.command()
@click.option(
    "--class",
    "priority",
    default=PriorityClass.DEFAULT.value,
    show_default=True,
    help="Priority class of the job: critical, default or sheddable.",
)
@click.option("--gpu", type=click.IntRange(min=0), default=None, help="Ask for this GPU index only.")
@url_option
@timeout_option
def admit(priority: str, gpu: int | None, url: str, timeout_s: float) -> None:
    """Ask gpuwatch whether one more job may start on this node now.

    Exit 0: admitted; stdout is the GPU index to start it on. Exit 75 (EX_TEMPFAIL): held back;
    stderr says why and after how many seconds to ask again. Exit 2: no answer (gpuwatch
    unreachable, a bad class or GPU, an answer that is not gpuwatch's).
    """
    configure_logging()
    try:
        result = connect(url, timeout_s).admit(priority, gpu)
    except GpuwatchRequestError as exc:
        fail(f"{exc}.")
    if result.fallback:
        fail(f"{result.reason}.")
    if not result.admitted:
        click.echo(f"gpuwatch: {held_back_line(result, priority.strip().lower())}", err=True)
        raise click.exceptions.Exit(EXIT_HELD_BACK)
    click.echo(str(result.gpu))
