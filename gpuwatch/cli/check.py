"""`gpuwatch check`: one status line and exit 0/1/2, the node-problem-detector custom-plugin contract."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import click

from gpuwatch.cli.admit import connect
from gpuwatch.cli.options import configure_logging, fail, timeout_option, url_option
from gpuwatch.exposure.client import GpuwatchError
from gpuwatch.exposure.webconfig import WebConfigError, load_web_config
from gpuwatch.policy.decision import ThermalState
from gpuwatch.service.config_file import ConfigFileError, FileConfig, load_file_config

# node-problem-detector's custom-plugin exit statuses: condition false, true, unknown.
EXIT_OK = 0
EXIT_PROBLEM = 1
EXIT_UNKNOWN = 2
# node-problem-detector keeps at most this many characters of a plugin's output by default.
MAX_LINE_CHARS = 80

# ELEVATED is a busy node shedding only sheddable work: normal under load, so it is no problem
# for node-problem-detector (a node condition would flap with every traffic peak).
PROBLEM_STATES = frozenset(
    {ThermalState.HOT, ThermalState.CRITICAL, ThermalState.FAILED, ThermalState.UNKNOWN}
)


@dataclass(frozen=True, slots=True)
class Verdict:
    """An exit status and the one line that explains it."""

    status: int
    line: str


def judge(document: Mapping[str, Any]) -> Verdict:
    """The verdict on a `/v1/state` document; a document that is not one is UNKNOWN."""
    try:
        node = ThermalState(document["state"])
        gpus = [(int(gpu["index"]), ThermalState(gpu["state"])) for gpu in document["gpus"]]
        reasons = [str(reason) for reason in document.get("reasons") or ()]
        pressure = float(document["pressure"])
    except (KeyError, TypeError, ValueError) as exc:
        return Verdict(EXIT_UNKNOWN, f"UNKNOWN: gpuwatch's state answer is not readable ({exc!r})")
    failed = [index for index, state in gpus if state is ThermalState.FAILED]
    if node not in PROBLEM_STATES and not failed:
        return Verdict(EXIT_OK, f"OK: node {node}, {len(gpus)} GPUs, pressure {pressure:.2f}")
    if node is ThermalState.UNKNOWN:
        age = document.get("sample_age_s")
        since = "never sampled" if age is None else f"last sample {float(age):.1f} s old"
        return Verdict(EXIT_PROBLEM, f"STALE: no fresh GPU sample ({since})")
    label = ThermalState.FAILED if failed else node
    worst = [(index, state) for index, state in gpus if state in PROBLEM_STATES]
    return Verdict(EXIT_PROBLEM, f"{label.upper()}: {_listing(worst)}{_reasons(reasons)}")


def _listing(gpus: Sequence[tuple[int, ThermalState]]) -> str:
    """`GPU 3 critical, GPU 5 hot`, worst first, or `node` when no single GPU is the cause."""
    ordered = sorted(gpus, key=lambda gpu: (-gpu[1].severity, gpu[0]))
    return ", ".join(f"GPU {index} {state}" for index, state in ordered) or "node"


def _reasons(reasons: Sequence[str]) -> str:
    return f" ({', '.join(reasons)})" if reasons else ""


def one_line(text: str) -> str:
    """`text` on one line of at most MAX_LINE_CHARS characters, cut with `...` when longer."""
    flat = " ".join(text.split())
    return flat if len(flat) <= MAX_LINE_CHARS else flat[: MAX_LINE_CHARS - 3] + "..."


@click.command()
@url_option
@timeout_option
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False),
    default=None,
    help="Check this `gpuwatch serve` settings file instead of the node: exit 0 if the daemon "
    "would start with it, else 2 and the file, line, key and value that are wrong.",
)
def check(url: str, timeout_s: float, config_path: str | None) -> None:
    """Check this node for node-problem-detector (custom plugin) or any monitor.

    Prints one line (at most 80 characters). Exit 0 (OK): node ok or elevated; elevated sheds only
    sheddable work, normal for a busy node. Exit 1 (problem): node hot, critical or failed, a GPU
    failed, or no fresh sample. Exit 2 (unknown): gpuwatch unreachable or its answer unreadable.
    With --config FILE it checks that file instead and asks no daemon.
    """
    configure_logging()
    if config_path is not None:
        click.echo(check_config_file(config_path))
        return
    try:
        verdict = judge(connect(url, timeout_s).state())
    except GpuwatchError as exc:
        verdict = Verdict(EXIT_UNKNOWN, f"UNKNOWN: {exc}")
    click.echo(one_line(verdict.line))
    raise click.exceptions.Exit(verdict.status)


def check_config_file(path: str) -> str:
    """The line saying `path` is good; a bad file (or the web config it names) ends with status 2."""
    try:
        config: FileConfig = load_file_config(path)
    except ConfigFileError as exc:
        fail(str(exc))
    web_config = config.values.get("web_config_file")
    if web_config is not None:
        try:
            load_web_config(web_config)
        except WebConfigError as exc:
            fail(f"{path}: web.config_file: {exc}")
    count = len(config.values) + len(config.policy)
    return f"OK: {path}: {count} setting{'s' if count != 1 else ''}, all valid"
