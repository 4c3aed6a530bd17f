"""`gpuwatch serve`: the daemon, serving the thermal backpressure signal over HTTP, agent and files."""

from __future__ import annotations

import logging
import os
import tomllib
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import click
from click.core import ParameterSource

from gpuwatch import __version__
from gpuwatch.cli.options import fail, interval_option, open_source_or_exit, source_option
from gpuwatch.exposure.listen import ListenAddress, ListenAddressError, parse_listen_address
from gpuwatch.exposure.webconfig import WebConfig, WebConfigError, load_web_config
from gpuwatch.policy.classes import ClassNames, ClassNamesError
from gpuwatch.policy.decision import PriorityClass
from gpuwatch.service.checks import telemetry_path_problem
from gpuwatch.service.config_file import DEFAULT_PATH, ConfigFileError, load_file_config
from gpuwatch.service.fdlimit import ensure_open_files
from gpuwatch.service.logs import FORMATS, LEVELS, fields, setup_logging
from gpuwatch.service.settings import CommandLine, ServeConfig, SettingsError, resolve
from gpuwatch.sources.clock import SystemClock

if TYPE_CHECKING:  # the daemon loads only when serving, so the other commands start fast
    from gpuwatch.service.daemon import Daemon, DaemonSettings

_DEFAULTS = ServeConfig()
log = logging.getLogger("gpuwatch")


def _addresses(texts: Sequence[str], flag: str) -> list[ListenAddress]:
    """Parsed listen addresses; empty strings are dropped (an empty flag disables a listener)."""
    try:
        return [parse_listen_address(text) for text in texts if text.strip()]
    except ListenAddressError as exc:
        raise click.BadParameter(str(exc), param_hint=flag) from exc


def _empty_env_allowed(variable: str) -> Callable[[click.Context, click.Parameter, str | None], str | None]:
    """The flag, else the environment variable even when empty (which disables), else None.

    click treats an empty environment variable as unset, which would make disabling impossible.
    """

    def resolve_value(_context: click.Context, _parameter: click.Parameter, value: str | None) -> str | None:
        return value if value is not None else os.environ.get(variable)

    return resolve_value


def _telemetry_path(_context: click.Context, _parameter: click.Parameter, value: str) -> str:
    """--web.telemetry-path: an absolute path, no query, none the API answers itself."""
    problem = telemetry_path_problem(value)
    if problem is not None:
        raise click.BadParameter(problem)
    return value


def _policy_assignments(
    _context: click.Context, _parameter: click.Parameter, values: tuple[str, ...]
) -> dict[str, Any]:
    """--policy.set KEY=VALUE pairs; VALUE is read as TOML (5, 2.5, true, [48, 79])."""
    assignments: dict[str, Any] = {}
    for text in values:
        key, equals, value = text.partition("=")
        if not equals or not key.strip():
            raise click.BadParameter(f"{text!r}: expected KEY=VALUE, e.g. hot_dwell_s=30")
        try:
            assignments[key.strip()] = tomllib.loads(f"value = {value}")["value"]
        except tomllib.TOMLDecodeError as exc:
            raise click.BadParameter(
                f"{text!r}: {value!r} is not a TOML value (a number, true/false or [..])"
            ) from exc
    return assignments


def _web_config_or_exit(path: str | None) -> WebConfig | None:
    """The web config, checked (files included); a bad one ends with status 2, naming the key."""
    try:
        return None if path is None else load_web_config(path)
    except WebConfigError as exc:
        fail(f"--web.config.file: {exc}")


def _aliases(pairs: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    """`NAME=CLASS` flags as pairs; a pair without `=` is a usage error naming the flag."""
    parsed = []
    for pair in pairs:
        alias, equals, target = pair.partition("=")
        if not equals:
            raise click.BadParameter(
                f"{pair!r}: expected NAME=CLASS, e.g. free=sheddable", param_hint="--classes.alias"
            )
        parsed.append((alias.strip(), target.strip()))
    return tuple(parsed)


def _classes_or_exit(config: ServeConfig) -> ClassNames:
    """The class names in force; a bad default or alias ends with status 2, naming it."""
    try:
        return ClassNames.parse(config.default_class, dict(config.class_aliases))
    except ClassNamesError as exc:
        fail(f"classes: {exc}")


def _given(context: click.Context, name: str, value: object) -> object:
    """`value` when a flag or its environment variable set it, else None (the file may)."""
    source = context.get_parameter_source(name)
    return value if source in {ParameterSource.COMMANDLINE, ParameterSource.ENVIRONMENT} else None


def _command_line(context: click.Context, params: dict[str, Any]) -> CommandLine:
    """What the flags and GPUWATCH_* variables set, by setting."""
    names = {
        "source": "source_spec",
        "interval_s": "interval_s",
        "web_listen_addresses": "web_addresses",
        "telemetry_path": "telemetry_path",
        "max_requests": "max_requests",
        "max_connections": "max_connections",
        "web_config_file": "web_config_path",
        "dcgm_compat": "dcgm_compat",
        "admin_api": "admin_api",
        "default_class": "default_class",
        "log_level": "log_level",
        "log_format": "log_format",
    }
    values = {attribute: _given(context, name, params[name]) for attribute, name in names.items()}
    values["class_aliases"] = _aliases(params["class_aliases"]) if params["class_aliases"] else None
    values["agent_listen_address"] = params["agent_address"]
    values["state_dir"] = params["state_dir"]
    policy: dict[str, Any] = dict(params["policy_set"])
    flags = dict.fromkeys(policy, "--policy.set")
    for key, name, flag in (
        ("fail_open", "policy_fail_open", "--policy.fail-open"),
        ("horizon_s", "policy_horizon_s", "--policy.horizon"),
    ):
        value = _given(context, name, params[name])
        if value is not None:
            policy[key], flags[key] = value, flag
    return CommandLine(values, policy, flags)


@click.command()
@source_option
@interval_option
@click.option(
    "--web.listen-address",
    "web_addresses",
    envvar="GPUWATCH_WEB_LISTEN_ADDRESS",
    multiple=True,
    default=_DEFAULTS.web_listen_addresses,
    show_default=True,
    help="HTTP API address, HOST:PORT, :PORT or [IPV6]:PORT (port 0: any free); repeatable.",
)
@click.option(
    "--agent.listen-address",
    "agent_address",
    callback=_empty_env_allowed("GPUWATCH_AGENT_LISTEN_ADDRESS"),
    help=f"HAProxy agent-check address; empty disables it. [default: {_DEFAULTS.agent_listen_address}; "
    "env: GPUWATCH_AGENT_LISTEN_ADDRESS]",
)
@click.option(
    "--state-dir",
    callback=_empty_env_allowed("GPUWATCH_STATE_DIR"),
    help="Directory for state.json and pressure (rewritten atomically); empty disables them. "
    f"[default: {_DEFAULTS.state_dir}; env: GPUWATCH_STATE_DIR]",
)
@click.option(
    "--config",
    "config_path",
    envvar="GPUWATCH_CONFIG",
    type=click.Path(dir_okay=False),
    default=None,
    help=f"TOML settings file [default: {DEFAULT_PATH}, if it exists]; flags and GPUWATCH_* "
    "variables override it. A bad key or value is refused at start; SIGHUP re-reads it.",
)
@click.option(
    "--web.telemetry-path",
    "telemetry_path",
    envvar="GPUWATCH_WEB_TELEMETRY_PATH",
    default=_DEFAULTS.telemetry_path,
    show_default=True,
    callback=_telemetry_path,
    help="Path under which to expose the Prometheus metrics.",
)
@click.option(
    "--web.max-requests",
    "max_requests",
    envvar="GPUWATCH_WEB_MAX_REQUESTS",
    type=click.IntRange(min=0),
    default=_DEFAULTS.max_requests,
    show_default=True,
    help="Most scrapes waiting for a render at once; more are answered 503. 0: no limit.",
)
@click.option(
    "--web.max-connections",
    "max_connections",
    envvar="GPUWATCH_WEB_MAX_CONNECTIONS",
    type=click.IntRange(min=0),
    default=_DEFAULTS.max_connections,
    show_default=True,
    help="Most HTTP connections open at once; past it a connection is answered 503 with "
    "Retry-After and closed. The open-files limit is raised to fit. 0: no cap.",
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
@click.option(
    "--web.enable-admin-api",
    "admin_api",
    envvar="GPUWATCH_WEB_ENABLE_ADMIN_API",
    is_flag=True,
    default=False,
    help="Serve POST and DELETE /v1/drain (hold the node or a GPU back on purpose). Needs "
    "basic_auth_users in --web.config.file: no route changes state for an anonymous caller.",
)
@click.option(
    "--classes.default",
    "default_class",
    envvar="GPUWATCH_CLASSES_DEFAULT",
    type=click.Choice([c.value for c in PriorityClass], case_sensitive=False),
    default=_DEFAULTS.default_class,
    show_default=True,
    help="The class of a request that names none (no class= and no X-GPUWatch-Class).",
)
@click.option(
    "--classes.alias",
    "class_aliases",
    envvar="GPUWATCH_CLASSES_ALIAS",
    multiple=True,
    metavar="NAME=CLASS",
    help="Accept NAME as a class name standing for CLASS, e.g. free=sheddable (repeatable; the "
    "variable takes several, space-separated).",
)
@click.option(
    "--log.level",
    "log_level",
    envvar="GPUWATCH_LOG_LEVEL",
    type=click.Choice(LEVELS, case_sensitive=False),
    default=_DEFAULTS.log_level,
    show_default=True,
    help="Lowest level logged (to stderr; journald keeps it).",
)
@click.option(
    "--log.format",
    "log_format",
    envvar="GPUWATCH_LOG_FORMAT",
    type=click.Choice(FORMATS),
    default=_DEFAULTS.log_format,
    show_default=True,
    help="One line per event: logfmt key=value pairs or a JSON object.",
)
@click.option(
    "--policy.fail-open/--policy.fail-closed",
    "policy_fail_open",
    envvar="GPUWATCH_POLICY_FAIL_OPEN",
    default=_DEFAULTS.policy.fail_open,
    show_default=True,
    help="Without fresh samples (UNKNOWN): admit every class (open) or only critical (closed).",
)
@click.option(
    "--policy.horizon",
    "policy_horizon_s",
    envvar="GPUWATCH_POLICY_HORIZON",
    type=click.FloatRange(min=0, min_open=True),
    default=_DEFAULTS.policy.horizon_s,
    show_default=True,
    help="Seconds ahead the one-more-job prediction looks.",
)
@click.option(
    "--policy.set",
    "policy_set",
    envvar="GPUWATCH_POLICY_SET",
    multiple=True,
    callback=_policy_assignments,
    metavar="KEY=VALUE",
    help="Any other [policy] setting, e.g. hot_dwell_s=30; repeatable (env: space-separated).",
)
@click.pass_context
def serve(context: click.Context, /, **params: Any) -> None:  # noqa: ANN401 - click passes one value per option
    """Sample the GPUs and serve the thermal backpressure signal until SIGTERM or SIGINT.

    HTTP: /v1/state, /v1/admit (and /nginx, /envoy), /readyz, /healthz, /, /openapi.json, and
    the Prometheus metrics at --web.telemetry-path. Settings come from the flags, else their
    GPUWATCH_* variables, else the --config file, else the defaults. SIGHUP re-reads the file.
    """
    # The daemon (event loop, HTTP parser, policy engine) loads only when serving, so the other
    # commands start fast.
    from gpuwatch.service import daemon  # noqa: PLC0415

    command_line = _command_line(context, params)
    explicit = params["config_path"] is not None
    config_path = params["config_path"] if explicit else DEFAULT_PATH

    def load() -> ServeConfig:
        return resolve(command_line, load_file_config(config_path, missing_ok=not explicit))

    try:
        config = load()
    except (ConfigFileError, SettingsError) as exc:
        fail(str(exc))
    setup_logging(config.log_level, config.log_format)
    http = _addresses(config.web_listen_addresses, "--web.listen-address")
    if not http:
        raise click.BadParameter("at least one address is needed", param_hint="--web.listen-address")
    settings = daemon.DaemonSettings(
        interval_s=config.interval_s,
        http_addresses=http,
        agent_addresses=_addresses([config.agent_listen_address], "--agent.listen-address"),
        state_dir=config.state_dir.strip() or None,
        policy=config.policy,
        config_path=config_path,
        config=config,
        load_config=load,
        telemetry_path=config.telemetry_path,
        max_requests=config.max_requests,
        max_connections=config.max_connections,
        web_config=_web_config_or_exit(config.web_config_file),
        web_config_path=config.web_config_file,
        dcgm_compat=config.dcgm_compat,
        admin_api=config.admin_api,
        classes=_classes_or_exit(config),
    )
    if settings.admin_api and (settings.web_config is None or not settings.web_config.users):
        fail(
            "--web.enable-admin-api needs basic_auth_users in --web.config.file: "
            "the admin API changes what is admitted, so it is never open to anonymous callers"
        )
    _warn_if_root()
    ensure_open_files(config.max_connections)
    node_daemon = _daemon_or_exit(config.source, settings)
    try:
        daemon.serve(node_daemon)
    except OSError as exc:
        fail(str(exc))


def _warn_if_root() -> None:
    """Warn when root: gpuwatch only reads, so root gives a network-facing daemon needless power."""
    if os.geteuid() == 0:
        log.warning(
            "running as root: gpuwatch needs only read access to /dev/nvidia*; run it as its own "
            "user (systemd/gpuwatch.service: User=gpuwatch)",
            extra=fields("running_as_root", uid=0),
        )


def _daemon_or_exit(source_spec: str, settings: DaemonSettings) -> Daemon:
    """The daemon on its source; a source, state dir or web config that cannot be used ends with status 2."""
    from gpuwatch.service.daemon import Daemon  # noqa: PLC0415 - loaded only when serving, as in `serve`

    source = open_source_or_exit(source_spec, SystemClock(), settings.interval_s)
    try:
        node_daemon = Daemon(source, settings)
    except WebConfigError as exc:
        source.close()
        fail(f"--web.config.file: {exc}")
    except OSError as exc:  # StateDirError included
        source.close()
        fail(f"{exc}; choose another --state-dir, or --state-dir '' to write no files")
    state_dir = settings.state_dir or "off"
    config = settings.config_path if settings.config is not None else None
    log.info(
        "gpuwatch serving %s every %g s; state files %s",
        source.spec,
        settings.interval_s,
        state_dir,
        extra=fields(
            "starting",
            version=__version__,
            source=source.spec,
            interval_s=settings.interval_s,
            state_dir=state_dir,
            config=config,
        ),
    )
    return node_daemon
