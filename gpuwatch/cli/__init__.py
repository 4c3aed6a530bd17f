"""Command-line interface: the `gpuwatch` command group."""

from __future__ import annotations

import click

from gpuwatch import __version__
from gpuwatch.cli.admit import admit
from gpuwatch.cli.check import check
from gpuwatch.cli.fleet import fleet
from gpuwatch.cli.record import record
from gpuwatch.cli.serve import serve
from gpuwatch.cli.simulate import simulate
from gpuwatch.cli.status import status


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="gpuwatch")
def main() -> None:
    """gpuwatch: NVIDIA GPU telemetry and a thermal backpressure signal for admission control."""


main.add_command(status)
main.add_command(fleet)
main.add_command(record)
main.add_command(admit)
main.add_command(check)
main.add_command(serve)
main.add_command(simulate)
