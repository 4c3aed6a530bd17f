"""`gpuwatch serve`: the daemon, serving the thermal backpressure signal over HTTP, agent and files."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import click

from gpuwatch.cli.options import configure_logging, fail, interval_option, open_source_or_exit, source_option
from gpuwatch.clock import SystemClock
from gpuwatch.config_file import ConfigFileError, load_config
from gpuwatch.exposure.listen import ListenAddress, ListenAddressError, parse_listen_address
from gpuwatch.exposure.webconfig import WebConfig, WebConfigError, load_web_config
from gpuwatch.policy.config import PolicyConfig

if TYPE_CHECKING:  # the daemon loads only when serving, so the other commands start fast
    from gpuwatch.daemon import Daemon, DaemonSettings

DEFAULT_WEB_ADDRESS = ":9478"
DEFAULT_AGENT_ADDRESS = ":9479"
DEFAULT_STATE_DIR = "/run/gpuwatch"
DEFAULT_TELEMETRY_PATH = "/metrics"
DEFAULT_MAX_REQUESTS = 40
# Paths the signal API answers itself; the metrics cannot take one of them.
_TAKEN_PATHS = frozenset(
    {
        "/",
        "/v1/state",
        "/v1/admit",
        "/v1/admit/nginx",
        "/v1/admit/envoy",
        "/healthz",
        "/readyz",
        "/openapi.json",
    }
)


def _addresses(texts: Sequence[str], flag: str) -> list[ListenAddress]:
    """Parsed listen addresses; empty strings are dropped (an empty flag disables a listener)."""
    try:
        return [parse_listen_address(text) for text in texts if text.strip()]
    except ListenAddressError as exc:
        raise click.BadParameter(str(exc), param_hint=flag) from exc


def _empty_env_allowed(
    variable: str, default: str
) -> Callable[[click.Context, click.Parameter, str | None], str]:
    """The flag, else the environment variable even when empty (which disables), else `default`.

    click treats an empty environment variable as unset, which would make disabling impossible.
    """

    def resolve(_context: click.Context, _parameter: click.Parameter, value: str | None) -> str:
        return value if value is not None else os.environ.get(variable, default)

    return resolve


def _telemetry_path(_context: click.Context, _parameter: click.Parameter, value: str) -> str:
    """--web.telemetry-path: an absolute path, no query, none the API answers itself."""
    if not value.startswith("/") or "?" in value or "#" in value or " " in value:
        raise click.BadParameter(f"{value!r}: expected an absolute path such as /metrics")
    if value in _TAKEN_PATHS or value.startswith("/v1/admit/envoy/"):
        raise click.BadParameter(f"{value} is a route of the signal API; choose another path")
    return value


def _web_config_or_exit(path: str | None) -> WebConfig | None:
    """The web config, checked (files included); a bad one ends with status 2, naming the key."""
    try:
        return None if path is None else load_web_config(path)
    except WebConfigError as exc:
        fail(f"--web.config.file: {exc}")


def _policy_or_exit(config_path: str | None) -> PolicyConfig:
    """The policy settings from --config (defaults without one); a bad file ends with status 2."""
    try:
        return PolicyConfig() if config_path is None else load_config(config_path)
    except ConfigFileError as exc:
        fail(str(exc))


@click.command()
@source_option
@interval_option
@click.option(
    "--web.listen-address",
    "web_addresses",
    envvar="GPUWATCH_WEB_LISTEN_ADDRESS",
    multiple=True,
    default=(DEFAULT_WEB_ADDRESS,),
    show_default=True,
    help="HTTP API address, HOST:PORT, :PORT or [IPV6]:PORT (port 0: any free); repeatable.",
)
@click.option(
    "--agent.listen-address",
    "agent_address",
    callback=_empty_env_allowed("GPUWATCH_AGENT_LISTEN_ADDRESS", DEFAULT_AGENT_ADDRESS),
    help=f"HAProxy agent-check address; empty disables it. [default: {DEFAULT_AGENT_ADDRESS}; "
    "env: GPUWATCH_AGENT_LISTEN_ADDRESS]",
)
@click.option(
    "--state-dir",
    callback=_empty_env_allowed("GPUWATCH_STATE_DIR", DEFAULT_STATE_DIR),
    help="Directory for state.json and pressure (rewritten atomically); empty disables them. "
    f"[default: {DEFAULT_STATE_DIR}; env: GPUWATCH_STATE_DIR]",
)
@click.option(
    "--config",
    "config_path",
    envvar="GPUWATCH_CONFIG",
    type=click.Path(dir_okay=False),
    default=None,
    help="TOML file with a [policy] table; a bad key or value is refused at start; SIGHUP re-reads it.",
)
@click.option(
    "--web.telemetry-path",
    "telemetry_path",
    envvar="GPUWATCH_WEB_TELEMETRY_PATH",
    default=DEFAULT_TELEMETRY_PATH,
    show_default=True,
    callback=_telemetry_path,
    help="Path under which to expose the Prometheus metrics.",
)
@click.option(
    "--web.max-requests",
    "max_requests",
    envvar="GPUWATCH_WEB_MAX_REQUESTS",
    type=click.IntRange(min=0),
    default=DEFAULT_MAX_REQUESTS,
    show_default=True,
    help="Most scrapes waiting for a render at once; more are answered 503. 0: no limit.",
)
@click.option(
    "--web.config.file",
    "web_config_path",
    envvar="GPUWATCH_WEB_CONFIG_FILE",
    type=click.Path(dir_okay=False),
    default=None,
    help="exporter-toolkit web config (YAML): TLS and basic auth for every HTTP route; "
    "re-read when it or a certificate changes.",
)
@click.option(
    "--metrics.dcgm-compat",
    "dcgm_compat",
    envvar="GPUWATCH_METRICS_DCGM_COMPAT",
    is_flag=True,
    default=False,
    help="Also emit dcgm-exporter's default counters (DCGM_FI_DEV_*) with its names, units and labels.",
)
def serve(  # noqa: PLR0913, PLR0917 - click passes one argument per option
    source_spec: str,
    interval_s: float,
    web_addresses: tuple[str, ...],
    agent_address: str,
    state_dir: str,
    config_path: str | None,
    telemetry_path: str,
    max_requests: int,
    web_config_path: str | None,
    dcgm_compat: bool,  # noqa: FBT001 - a click flag
) -> None:
    """Sample the GPUs and serve the thermal backpressure signal until SIGTERM or SIGINT.

    HTTP: /v1/state, /v1/admit (and /nginx, /envoy), /readyz, /healthz, /, /openapi.json, and
    the Prometheus metrics at --web.telemetry-path.
    """
    # The daemon (event loop, HTTP parser, policy engine) loads only when serving, so the other
    # commands start fast.
    from gpuwatch import daemon  # noqa: PLC0415

    configure_logging(logging.INFO)
    http = _addresses(web_addresses, "--web.listen-address")
    if not http:
        raise click.BadParameter("at least one address is needed", param_hint="--web.listen-address")
    settings = daemon.DaemonSettings(
        interval_s=interval_s,
        http_addresses=http,
        agent_addresses=_addresses([agent_address], "--agent.listen-address"),
        state_dir=state_dir.strip() or None,
        policy=_policy_or_exit(config_path),
        config_path=config_path,
        telemetry_path=telemetry_path,
        max_requests=max_requests,
        web_config=_web_config_or_exit(web_config_path),
        web_config_path=web_config_path,
        dcgm_compat=dcgm_compat,
    )
    node_daemon = _daemon_or_exit(source_spec, settings)
    try:
        daemon.serve(node_daemon)
    except OSError as exc:
        fail(str(exc))


def _daemon_or_exit(source_spec: str, settings: DaemonSettings) -> Daemon:
    """The daemon on its source; a source, state dir or web config that cannot be used ends with status 2."""
    from gpuwatch.daemon import Daemon  # noqa: PLC0415 - loaded only when serving, as in `serve`

    source = open_source_or_exit(source_spec, SystemClock())
    try:
        node_daemon = Daemon(source, settings)
    except WebConfigError as exc:
        source.close()
        fail(f"--web.config.file: {exc}")
    except OSError as exc:  # StateDirError included
        source.close()
        fail(f"{exc}; choose another --state-dir, or --state-dir '' to write no files")
    state_dir = settings.state_dir or "off"
    logging.getLogger("gpuwatch").info(
        "gpuwatch serving %s every %g s; state files %s", source.spec, settings.interval_s, state_dir
    )
    return node_daemon
