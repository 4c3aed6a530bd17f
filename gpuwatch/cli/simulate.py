"""`gpuwatch simulate SCENARIO`: closed-loop surge runs in virtual time, every controller side by side."""

from __future__ import annotations

import dataclasses
import json
import os
import time

import click

from gpuwatch.cli.options import fail
from gpuwatch.policy.decision import PriorityClass
from gpuwatch.simulate.metrics import ControllerResult
from gpuwatch.simulate.scenario import Scenario

CONTROLLER_NAMES = ("none", "static", "gpuwatch", "oracle")


@click.command()
@click.argument("scenario", required=False)
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False), help="Also draw the run to FILE.png.")
@click.option(
    "--controller",
    "controller_names",
    multiple=True,
    type=click.Choice(CONTROLLER_NAMES),
    help="Run only these controllers (repeatable); default: all four.",
)
@click.option("--seed", type=click.IntRange(min=0), default=None, help="Replace the scenario's seed.")
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False),
    default=None,
    help="A [policy] TOML file, as `gpuwatch serve --config` reads, for the gpuwatch controller.",
)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=None,
    help="Processes running controllers side by side [default: one per CPU, at most one per controller].",
)
@click.option(
    "--oracle-guard",
    "oracle_guard_c",
    type=click.FloatRange(min=0.0, max=50.0),
    default=None,
    help="Keep the oracle this many °C below max operating [default: the scenario's, 0.5].",
)
@click.option(
    "--spread",
    type=click.FloatRange(min=0.0, max=0.9),
    default=None,
    help=(
        "Draw each GPU's R, C and power per job within ±this of its SKU profile [default: the "
        "scenario's, 0.03]; 0.3 runs physics the policy's priors were not set for."
    ),
)
@click.option(
    "--plants",
    type=click.Choice(("profiles", "wide")),
    default=None,
    help=(
        "The boards' thermal plants: the SKU profiles' own, or `wide`, each GPU's drawn from a family "
        "a decade either side of them (docs/simulation.md) [default: the scenario's, profiles]."
    ),
)
@click.option(
    "--no-release",
    "no_release",
    is_flag=True,
    help=(
        "Play gateways that never release their leases and say no job duration (a proxy that only "
        "asks): leases end at their deadlines. Default: each lease is released when its job ends."
    ),
)
@click.option(
    "--release-delay",
    "release_delay_s",
    type=click.FloatRange(min=0.0, max=60.0),
    default=None,
    help="Release each lease this many seconds after its job ends (the power falls first) [default: 0].",
)
@click.option(
    "--job-seconds",
    type=click.FloatRange(min=0.0, min_open=True),
    default=None,
    help="Plan every class's jobs as lasting this long until durations are learned (policy.job_seconds).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON instead of the table.")
@click.option("--list", "list_shipped", is_flag=True, help="List the shipped scenarios and exit.")
def simulate(  # noqa: PLR0913, PLR0917 - click passes one argument per option
    scenario: str | None,
    plot_path: str | None,
    controller_names: tuple[str, ...],
    seed: int | None,
    config_path: str | None,
    workers: int | None,
    oracle_guard_c: float | None,
    spread: float | None,
    plants: str | None,
    job_seconds: float | None,
    release_delay_s: float | None,
    *,
    no_release: bool,
    as_json: bool,
    list_shipped: bool,
) -> None:
    """Run SCENARIO (a shipped name such as `surge`, or a .toml file) under each controller.

    Prints one row per controller: jobs completed, rejected (held back at least once), timed
    out, p50/p95 latency from arrival to end, GPU-seconds in thermal slowdown, hottest
    temperature and energy; and, where jobs come in several classes, one row per controller and
    class. The same scenario, seed and spread give the same table.
    """
    # The simulation (and the policy it drives) loads only for this command, so others start fast.
    from gpuwatch.simulate import report, runner, shipped  # noqa: PLC0415
    from gpuwatch.simulate.progress import ProgressBar  # noqa: PLC0415

    if list_shipped:
        click.echo("\n".join(shipped.SHIPPED))
        return
    if scenario is None:
        raise click.UsageError(f"give a SCENARIO: a .toml file, or one of {', '.join(shipped.SHIPPED)}")
    chosen = _with_options(
        _scenario_or_exit(scenario, seed, config_path),
        oracle_guard_c=oracle_guard_c,
        spread=spread,
        plants=plants,
        releases=not no_release,
        release_delay_s=release_delay_s,
        job_seconds=job_seconds,
    )
    controllers = controller_names or CONTROLLER_NAMES
    bar = ProgressBar()
    started = time.monotonic()
    try:
        results = runner.run(chosen, controllers, bar, workers or min(len(controllers), os.cpu_count() or 1))
    finally:
        bar.close()
    wall_s = time.monotonic() - started
    if as_json:
        click.echo(json.dumps(report.document(chosen, results), indent=2))
    else:
        click.echo(report.render(chosen, results))
    speed = chosen.duration_s / wall_s if wall_s > 0 else float("inf")
    click.echo(f"ran {chosen.duration_s:g} virtual s in {wall_s:.1f} s ({speed:.0f}x real time)", err=True)
    if plot_path is not None:
        _plot_or_exit(chosen, results, plot_path)


def _with_options(  # noqa: PLR0913 - one per command-line option that changes the scenario
    chosen: Scenario,
    *,
    oracle_guard_c: float | None,
    spread: float | None,
    plants: str | None,
    releases: bool,
    release_delay_s: float | None,
    job_seconds: float | None,
) -> Scenario:
    """The scenario with what the command line changes in it (None: as the scenario has it)."""
    if oracle_guard_c is not None:
        chosen = dataclasses.replace(
            chosen, oracle=dataclasses.replace(chosen.oracle, guard_c=oracle_guard_c)
        )
    if spread is not None:
        chosen = dataclasses.replace(chosen, spread=spread)
    if plants is not None:
        chosen = dataclasses.replace(chosen, plants=plants)
    if not releases:
        chosen = dataclasses.replace(chosen, releases=False)
    if release_delay_s is not None:
        chosen = dataclasses.replace(chosen, release_delay_s=release_delay_s)
    if job_seconds is not None:
        told = tuple((cls, job_seconds) for cls in PriorityClass)
        chosen = dataclasses.replace(chosen, policy=dataclasses.replace(chosen.policy, job_seconds=told))
    return chosen


def _scenario_or_exit(argument: str, seed: int | None, config_path: str | None) -> Scenario:
    """The scenario, with --seed and --config applied; a bad file ends with status 2."""
    from gpuwatch.service.config_file import ConfigFileError, load_config  # noqa: PLC0415
    from gpuwatch.simulate.scenario import ScenarioError  # noqa: PLC0415
    from gpuwatch.simulate.shipped import open_scenario  # noqa: PLC0415

    try:
        chosen = open_scenario(argument)
        if config_path is not None:
            chosen = dataclasses.replace(chosen, policy=load_config(config_path))
    except (ScenarioError, ConfigFileError) as exc:
        fail(str(exc))
    return chosen if seed is None else dataclasses.replace(chosen, seed=seed)


def _plot_or_exit(scenario: Scenario, results: list[ControllerResult], path: str) -> None:
    """Draw the plot; without matplotlib, or unable to write, end with status 2."""
    from gpuwatch.simulate import plot  # noqa: PLC0415

    try:
        plot.plot(scenario, results, path)
    except plot.PlotUnavailableError as exc:
        fail(str(exc))
    except OSError as exc:
        fail(f"cannot write the plot to {path}: {exc}")
    click.echo(f"plot written to {path}", err=True)
