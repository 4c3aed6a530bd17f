"""The settings `gpuwatch serve` runs with: flags > GPUWATCH_* environment > TOML file > defaults."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from gpuwatch.policy.config import PolicyConfig, PolicyConfigError
from gpuwatch.service.config_file import FileConfig


class SettingsError(ValueError):
    """Flags or environment variables that cannot be combined with the file; the message says which."""


@dataclass(frozen=True, slots=True)
class Setting:
    """One setting: how the file and the command line spell it, and whether SIGHUP applies it."""

    attribute: str  # ServeConfig's field
    key: str  # in the TOML file, e.g. `web.listen_addresses`
    flag: str  # e.g. `--web.listen-address`; its variable is GPUWATCH_ + the flag in capitals
    live: bool = False  # applied by a reload; the others need a restart


SETTINGS = (
    Setting("source", "source", "--source"),
    Setting("interval_s", "interval_s", "--interval"),
    Setting("web_listen_addresses", "web.listen_addresses", "--web.listen-address"),
    Setting("agent_listen_address", "agent.listen_address", "--agent.listen-address"),
    Setting("state_dir", "state_dir", "--state-dir"),
    Setting("telemetry_path", "web.telemetry_path", "--web.telemetry-path"),
    Setting("max_requests", "web.max_requests", "--web.max-requests"),
    Setting("max_connections", "web.max_connections", "--web.max-connections"),
    Setting("web_config_file", "web.config_file", "--web.config.file"),
    Setting("dcgm_compat", "metrics.dcgm_compat", "--metrics.dcgm-compat"),
    Setting("admin_api", "web.enable_admin_api", "--web.enable-admin-api"),
    Setting("default_class", "classes.default", "--classes.default"),
    Setting("class_aliases", "classes.aliases", "--classes.alias"),
    Setting("log_level", "log.level", "--log.level", live=True),
    Setting("log_format", "log.format", "--log.format", live=True),
    Setting("policy", "policy", "--policy.*", live=True),
)
BY_ATTRIBUTE = {setting.attribute: setting for setting in SETTINGS}


@dataclass(frozen=True, slots=True)
class ServeConfig:
    """Every setting of `gpuwatch serve`, resolved; the defaults are the documented ones."""

    source: str = "nvml"
    interval_s: float = 1.0
    web_listen_addresses: tuple[str, ...] = (":9478",)
    agent_listen_address: str = ":9479"  # empty: no HAProxy agent
    state_dir: str = "/run/gpuwatch"  # empty: no state files
    telemetry_path: str = "/metrics"
    max_requests: int = 40
    max_connections: int = 4096  # HTTP connections at once; 0: no cap
    web_config_file: str | None = None
    dcgm_compat: bool = False
    admin_api: bool = False  # POST and DELETE /v1/drain; needs basic_auth_users in the web config
    default_class: str = "default"  # the class of a request that names none
    class_aliases: tuple[tuple[str, str], ...] = ()  # (alias, class), e.g. ("free", "sheddable")
    log_level: str = "info"
    log_format: str = "logfmt"
    policy: PolicyConfig = field(default_factory=PolicyConfig)


@dataclass(frozen=True, slots=True)
class CommandLine:
    """What flags and GPUWATCH_* variables set (None or absent: not set); fixed for the process."""

    values: Mapping[str, Any] = field(default_factory=dict)  # by ServeConfig attribute
    policy: Mapping[str, Any] = field(default_factory=dict)  # by PolicyConfig field
    policy_flags: Mapping[str, str] = field(default_factory=dict)  # policy field -> the flag that set it


def resolve(command_line: CommandLine, file: FileConfig) -> ServeConfig:
    """The settings in force: each from the command line, else the file, else its default.

    Policy fields are layered one by one, so a flag changes one threshold and keeps the file's
    others. Raises SettingsError when a policy flag does not fit with the file's values.
    """
    chosen: dict[str, Any] = {}
    for setting in SETTINGS:
        if setting.attribute == "policy":
            continue
        value = command_line.values.get(setting.attribute)
        if value is None:
            value = file.values.get(setting.attribute)
        if value is not None:
            chosen[setting.attribute] = value
    return ServeConfig(**chosen, policy=_policy(command_line, file))


def _policy(command_line: CommandLine, file: FileConfig) -> PolicyConfig:
    try:
        return PolicyConfig.from_mapping({**file.policy, **command_line.policy})
    except PolicyConfigError as exc:
        flag = command_line.policy_flags.get(exc.key)
        culprit = flag or ", ".join(sorted(set(command_line.policy_flags.values())))
        if not culprit:
            raise SettingsError(str(exc)) from exc
        where = f"{file.path}'s [policy] with " if file.path else ""
        raise SettingsError(f"{exc} ({where}{culprit})") from exc


def changed(running: ServeConfig, new: ServeConfig) -> list[Setting]:
    """The settings whose values differ, in SETTINGS order."""
    return [s for s in SETTINGS if getattr(running, s.attribute) != getattr(new, s.attribute)]


def policy_changes(running: PolicyConfig, new: PolicyConfig) -> list[str]:
    """`policy.KEY` for each policy field that differs."""
    return [
        f"policy.{f.name}"
        for f in dataclasses.fields(PolicyConfig)
        if getattr(running, f.name) != getattr(new, f.name)
    ]


def environment_variable(flag: str) -> str:
    """`--web.listen-address` -> `GPUWATCH_WEB_LISTEN_ADDRESS`."""
    return "GPUWATCH_" + flag.lstrip("-").replace(".", "_").replace("-", "_").upper()
