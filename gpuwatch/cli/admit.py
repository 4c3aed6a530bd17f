"""`gpuwatch admit`: ask a running gpuwatch for a slot (exit 0, 75 or 2), or run a command under its lease."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import click

from gpuwatch.cli.leased import CannotRun, Interrupted, SignalWatch
from gpuwatch.cli.options import configure_logging, fail, timeout_option, url_option
from gpuwatch.exposure.client import (
    AdmitResult,
    GpuwatchClient,
    GpuwatchHeldBack,
    GpuwatchRequestError,
)
from gpuwatch.policy.decision import PriorityClass

# EX_TEMPFAIL from sysexits.h: "try again later", which schedulers and shell loops understand.
EXIT_HELD_BACK = 75
# The longest job duration `--expected-s` takes, s: a day, past which a duration is a mistake.
# gpuwatch itself caps what it plans with at its policy.max_job_s (600 s by default).
MOST_EXPECTED_S = 86400.0


@dataclass(frozen=True, slots=True)
class Question:
    """What `gpuwatch admit` asks: a class, maybe a GPU and a duration, and how long to wait for a slot."""

    priority: str
    gpu: int | None
    expected_s: float | None
    wait_s: float


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


def job_environment(admitted: AdmitResult, environment: Mapping[str, str]) -> dict[str, str]:
    """`environment` plus the admitted GPU (CUDA_VISIBLE_DEVICES by uuid, GPUWATCH_GPU) and GPUWATCH_LEASE."""
    job = dict(environment)
    # A uuid names the same GPU whatever order CUDA enumerates in; the index is the fallback.
    job["CUDA_VISIBLE_DEVICES"] = admitted.uuid or str(admitted.gpu)
    job["GPUWATCH_GPU"] = str(admitted.gpu)
    if admitted.lease is not None:
        job["GPUWATCH_LEASE"] = admitted.lease
    return job


@click.command(context_settings={"allow_interspersed_args": False})
@click.option(
    "--class",
    "priority",
    default=PriorityClass.DEFAULT.value,
    show_default=True,
    help="Priority class of the job: critical, default or sheddable.",
)
@click.option("--gpu", type=click.IntRange(min=0), default=None, help="Ask for this GPU index only.")
@click.option(
    "--expected-s",
    "expected_s",
    type=click.FloatRange(min=0, min_open=True, max=MOST_EXPECTED_S),
    default=None,
    metavar="SECONDS",
    help="How long the job runs, for gpuwatch's plan and the lease's deadline "
    "[default: what gpuwatch learned or was configured with].",
)
@click.option(
    "--wait",
    "wait_s",
    type=click.FloatRange(min=0),
    default=0.0,
    metavar="SECONDS",
    help="While held back, ask again after each Retry-After, for up to SECONDS; then exit 75.",
)
@click.option("--dry-run", is_flag=True, help="Ask without taking a slot: no lease, no command.")
@url_option
@timeout_option
@click.argument("command", nargs=-1, type=click.UNPROCESSED, metavar="[-- COMMAND [ARG]...]")
def admit(  # noqa: PLR0913, PLR0917 - one parameter per option, as click passes them
    priority: str,
    gpu: int | None,
    expected_s: float | None,
    wait_s: float,
    dry_run: bool,  # noqa: FBT001 - a click flag
    url: str,
    timeout_s: float,
    command: tuple[str, ...],
) -> None:
    """Ask gpuwatch whether one more job may start on this node now, or run COMMAND under a lease.

    With COMMAND: it runs with CUDA_VISIBLE_DEVICES set to the admitted GPU's uuid, GPUWATCH_GPU
    to its index and GPUWATCH_LEASE to the lease, which is released when COMMAND exits or is
    killed. SIGINT, SIGTERM, SIGHUP and SIGQUIT are passed on to it. The exit status is COMMAND's
    (128 + the signal's number when a signal killed it; 127 not found, 126 not executable).

    Without COMMAND: exit 0, admitted; stdout is the GPU index to start the job on, and stderr
    names the lease, which holds its slot until it is released (POST /v1/release?lease=ID) or
    its deadline passes. --dry-run asks without taking a slot.

    Either way, exit 75 (EX_TEMPFAIL): held back (after --wait SECONDS); stderr says why and
    after how many seconds to ask again. Exit 2: no answer (gpuwatch unreachable, a bad class or
    GPU, an answer that is not gpuwatch's).
    """
    configure_logging()
    if dry_run and (command or wait_s):
        fail("--dry-run takes no slot, so it neither waits for one nor runs a command.")
    question = Question(priority.strip().lower(), gpu, expected_s, wait_s)
    client = connect(url, timeout_s)
    with SignalWatch() as watch:
        try:
            if command:
                status = _run_leased(client, question, command, watch)
            elif dry_run:
                status = _dry_run(client, question)
            else:
                status = _lease_only(client, question, watch)
        except Interrupted as exc:
            status = exc.status
    raise click.exceptions.Exit(status)


def _run_leased(
    client: GpuwatchClient, question: Question, command: Sequence[str], watch: SignalWatch
) -> int:
    """Run `command` under a lease, released when it ends; its exit status, or 75 held back."""
    try:
        with client.lease(
            question.priority,
            question.gpu,
            expected_s=question.expected_s,
            wait_s=question.wait_s,
            sleep=watch.sleep,
        ) as admitted:
            watch.check()  # a signal that came while asking ends it here, released, not run
            return watch.run(command, job_environment(admitted, os.environ))
    except GpuwatchRequestError as exc:
        fail(f"{exc}.")
    except GpuwatchHeldBack as held:
        return _held_back(held.result, question)
    except CannotRun as exc:
        click.echo(f"gpuwatch: {exc}", err=True)
        return exc.status


def _lease_only(client: GpuwatchClient, question: Question, watch: SignalWatch) -> int:
    """Take a lease and print its GPU; the caller runs the job and releases it."""
    try:
        result = client.admit_waiting(
            question.priority,
            question.gpu,
            expected_s=question.expected_s,
            wait_s=question.wait_s,
            sleep=watch.sleep,
        )
    except GpuwatchRequestError as exc:
        fail(f"{exc}.")
    if not result.admitted:
        return _held_back(result, question)
    if result.lease is not None:
        try:
            watch.check()
        except Interrupted:
            client.release(result.lease)  # killed before anyone could use it
            raise
    click.echo(str(result.gpu))
    if result.lease is not None:
        click.echo(f"gpuwatch: {lease_line(result)}", err=True)
    return 0


def lease_line(result: AdmitResult) -> str:
    """What an admission without a command holds, and how it ends: one line."""
    planned = "duration unknown" if result.expected_s is None else f"planned {result.expected_s:g} s"
    return (
        f"lease {result.lease} on GPU {result.gpu} ({planned}): release it when the job ends "
        f"(POST /v1/release?lease={result.lease}), else it holds its slot until its deadline"
    )


def _dry_run(client: GpuwatchClient, question: Question) -> int:
    """Ask without taking a slot; prints the GPU an admission would name."""
    try:
        result = client.admit(question.priority, question.gpu, expected_s=question.expected_s, dry_run=True)
    except GpuwatchRequestError as exc:
        fail(f"{exc}.")
    if not result.admitted:
        return _held_back(result, question)
    click.echo(str(result.gpu))
    click.echo("gpuwatch: dry run: admitted, but no slot taken and no lease", err=True)
    return 0


def _held_back(result: AdmitResult, question: Question) -> int:
    """Exit 2 when gpuwatch gave no answer; else say why the job waits, and return 75."""
    if result.fallback:
        fail(f"{result.reason}.")
    waited = f" (waited {question.wait_s:g} s)" if question.wait_s else ""
    click.echo(f"gpuwatch: {held_back_line(result, question.priority)}{waited}", err=True)
    return EXIT_HELD_BACK
