"""The `--config` TOML file of `gpuwatch serve`, checked with errors naming file, line, key and value.

Every key is optional; a flag or GPUWATCH_* variable overrides the file, and what neither sets
keeps its default:

    source = "nvml"                  # --source: nvml, sim:SPEC or replay:FILE
    interval_s = 1.0                 # --interval: seconds between samples
    state_dir = "/run/gpuwatch"      # --state-dir; "" writes no files

    [web]
    listen_addresses = [":9478"]     # --web.listen-address (repeatable)
    telemetry_path = "/metrics"      # --web.telemetry-path
    max_requests = 40                # --web.max-requests; 0: no limit
    max_connections = 4096           # --web.max-connections; past it a 503 and close; 0: no cap
    config_file = "/etc/gpuwatch/web.yml"  # --web.config.file: TLS and basic auth
    enable_admin_api = false         # --web.enable-admin-api: POST/DELETE /v1/drain (needs basic auth)

    [agent]
    listen_address = ":9479"         # --agent.listen-address; "" disables the HAProxy agent

    [metrics]
    dcgm_compat = false              # --metrics.dcgm-compat

    [classes]                        # request class names
    default = "default"              # --classes.default: the class of a request naming none
    aliases = { free = "sheddable", pro = "critical" }  # --classes.alias free=sheddable

    [log]
    level = "info"                   # --log.level: debug, info, warning, error
    format = "logfmt"                # --log.format: logfmt or json

    [policy]                         # any PolicyConfig field: thresholds, dwells, horizon_s,
    fail_open = false                # node_k, fail_open (UNKNOWN admits everything), ...

SIGHUP applies a changed [policy] and [log] at once; the other settings need a restart.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gpuwatch.exposure.filemodes import others_may_write
from gpuwatch.exposure.listen import ListenAddressError, parse_listen_address
from gpuwatch.policy.classes import ClassNames, ClassNamesError
from gpuwatch.policy.config import PolicyConfig, PolicyConfigError
from gpuwatch.service.checks import source_problem, telemetry_path_problem
from gpuwatch.service.logs import FORMATS, LEVELS
from gpuwatch.sources.tomlcheck import TomlChecker, where
from gpuwatch.sources.tomlkeys import KeyPath, decode_error_line, locate

DEFAULT_PATH = "/etc/gpuwatch/gpuwatch.toml"
TABLES = ("policy", "web", "agent", "metrics", "log", "classes")
TOP_KEYS = ("source", "interval_s", "state_dir")
_TABLE_KEYS: Mapping[str, tuple[str, ...]] = {
    "web": (
        "listen_addresses",
        "telemetry_path",
        "max_requests",
        "max_connections",
        "config_file",
        "enable_admin_api",
    ),
    "agent": ("listen_address",),
    "metrics": ("dcgm_compat",),
    "log": ("level", "format"),
    "classes": ("default", "aliases"),
}
_RANGES: Mapping[str, tuple[float, float]] = {
    "interval_s": (0.01, 3600.0),
    "max_requests": (0, 100_000),
    "max_connections": (0, 1_000_000),
}


class ConfigFileError(ValueError):
    """The config file cannot be used; the message reads `FILE:LINE: key: problem (got value)`."""

    def __init__(self, message: str, *, key: str | None = None, line: int | None = None) -> None:
        super().__init__(message)
        self.key = key
        self.line = line


@dataclass(frozen=True, slots=True)
class FileConfig:
    """What one config file sets: only the keys written in it, by ServeConfig attribute name."""

    path: str | None = None  # None: no file was read (the default path does not exist)
    values: Mapping[str, Any] = field(default_factory=dict)
    policy: Mapping[str, Any] = field(default_factory=dict)  # the [policy] table, checked


def load_config(path: str | Path) -> PolicyConfig:
    """The policy settings in `path`; a missing `[policy]` table keeps every default."""
    return PolicyConfig.from_mapping(load_file_config(path).policy)


def parse_config(text: str, source: str = "<config>") -> PolicyConfig:
    """The policy settings in config TOML text; `source` names it in error messages."""
    return PolicyConfig.from_mapping(parse_file_config(text, source).policy)


def load_file_config(path: str | Path, *, missing_ok: bool = False) -> FileConfig:
    """Every setting in the file at `path`; with `missing_ok` an absent file sets nothing."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        if missing_ok:
            return FileConfig()
        raise ConfigFileError(f"{path}: cannot read the config file: {exc}") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigFileError(f"{path}: cannot read the config file: {exc}") from exc
    if problem := others_may_write(path, "config file"):
        raise ConfigFileError(problem)
    return parse_file_config(text, str(path))


def parse_file_config(text: str, source: str = "<config>") -> FileConfig:
    """Check config TOML text; `source` names it in error messages."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        line = decode_error_line(exc)
        raise ConfigFileError(f"{where(source, line)}: not valid TOML: {exc}", line=line) from exc
    check = TomlChecker(text, source, _RANGES, ConfigFileError)
    for key in data:
        if key not in TABLES and key not in TOP_KEYS:
            expected = ", ".join([*TOP_KEYS, *(f"[{t}]" for t in TABLES)])
            raise check.fail((key,), f"unknown table or key; expected one of: {expected}")
    for name in TABLES:
        if name in data and not isinstance(data[name], dict):
            raise check.fail((name,), f"must be a table [{name}]", data[name])
    values = _top_values(check, data) | _table_values(check, data) | _class_values(check, data)
    return FileConfig(source, {k: v for k, v in values.items() if v is not None}, _policy(text, source, data))


def _top_values(check: TomlChecker, data: dict[str, Any]) -> dict[str, Any]:
    source = check.string(data, (), "source", None)
    if source is not None and (problem := source_problem(source)):
        raise check.fail(("source",), problem)
    return {
        "source": source,
        "interval_s": check.number(data, (), "interval_s", None),
        "state_dir": check.string(data, (), "state_dir", None),
    }


def _table_values(check: TomlChecker, data: dict[str, Any]) -> dict[str, Any]:
    web, agent, metrics, logs = (
        check.table(data.get(name, {}), (name,), _TABLE_KEYS[name])
        for name in ("web", "agent", "metrics", "log")
    )
    listen = check.strings(web, ("web",), "listen_addresses", None)
    if listen is not None:
        _check_addresses(check, ("web", "listen_addresses"), [a for a in listen if a.strip()], required=True)
    agent_address = check.string(agent, ("agent",), "listen_address", None)
    if agent_address is not None:
        _check_addresses(check, ("agent", "listen_address"), [agent_address] if agent_address.strip() else [])
    telemetry = check.string(web, ("web",), "telemetry_path", None)
    if telemetry is not None and (problem := telemetry_path_problem(telemetry)):
        raise check.fail(("web", "telemetry_path"), problem)
    return {
        "web_listen_addresses": listen,
        "telemetry_path": telemetry,
        "max_requests": check.integer(web, ("web",), "max_requests", None),
        "max_connections": check.integer(web, ("web",), "max_connections", None),
        "web_config_file": check.string(web, ("web",), "config_file", None),
        "admin_api": check.boolean(web, ("web",), "enable_admin_api", None),
        "agent_listen_address": agent_address,
        "dcgm_compat": check.boolean(metrics, ("metrics",), "dcgm_compat", None),
        "log_level": _choice(check, logs, ("log", "level"), LEVELS),
        "log_format": _choice(check, logs, ("log", "format"), FORMATS),
    }


def _check_addresses(
    check: TomlChecker, path: KeyPath, addresses: list[str], *, required: bool = False
) -> None:
    if required and not addresses:
        raise check.fail(path, 'needs at least one address, e.g. [":9478"]')
    for address in addresses:
        try:
            parse_listen_address(address)
        except ListenAddressError as exc:
            raise check.fail(path, str(exc)) from exc


def _class_values(check: TomlChecker, data: dict[str, Any]) -> dict[str, Any]:
    """[classes]: the default class and the aliases, checked together so a bad one names its key."""
    table = check.table(data.get("classes", {}), ("classes",), _TABLE_KEYS["classes"])
    default = check.string(table, ("classes",), "default", None)
    aliases = table.get("aliases")
    if aliases is not None:
        aliases = check.table(
            aliases, ("classes", "aliases"), tuple(aliases) if isinstance(aliases, dict) else ()
        )
        for alias, target in aliases.items():
            if not isinstance(target, str):
                raise check.fail(("classes", "aliases", alias), "must be a class name in quotes", target)
    try:
        ClassNames.parse(default or "default", aliases or {})
    except ClassNamesError as exc:
        key = ("classes", "default") if str(exc).startswith("default") else ("classes", "aliases")
        raise check.fail(key, str(exc)) from None
    return {
        "default_class": default,
        "class_aliases": None if aliases is None else tuple(sorted(aliases.items())),
    }


def _choice(
    check: TomlChecker, table: dict[str, Any], path: tuple[str, str], choices: tuple[str, ...]
) -> str | None:
    value = check.string(table, path[:1], path[1], None)
    if value is not None and value not in choices:
        raise check.fail(path, f"must be one of {', '.join(choices)}", value)
    return value


def _policy(text: str, source: str, data: dict[str, Any]) -> dict[str, Any]:
    """The [policy] table, checked by PolicyConfig itself; errors carry the line of the key."""
    policy: dict[str, Any] = data.get("policy", {})
    try:
        PolicyConfig.from_mapping(policy)
    except PolicyConfigError as exc:
        # A key within a table of [policy] (job_seconds.default) may sit under its own header.
        head, *rest = exc.key.split(".")
        under = locate(text, (f"policy.{head}", *rest)) if rest else None
        line = under or locate(text, ("policy", head, *rest))
        raise ConfigFileError(f"{where(source, line)}: {exc}", key=f"policy.{exc.key}", line=line) from exc
    return policy
