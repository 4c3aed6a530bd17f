"""The `--config` TOML file: a `[policy]` table, checked at start with errors naming file, line, key."""

from __future__ import annotations

import tomllib
from pathlib import Path

from gpuwatch.policy.config import PolicyConfig, PolicyConfigError
from gpuwatch.tomlcheck import where
from gpuwatch.tomlkeys import decode_error_line, locate

TABLES = ("policy",)


class ConfigFileError(ValueError):
    """The config file cannot be used; the message reads `FILE:LINE: key: problem`."""


def load_config(path: str | Path) -> PolicyConfig:
    """The policy settings in `path`; a missing `[policy]` table keeps every default."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigFileError(f"{path}: cannot read the config file: {exc}") from exc
    return parse_config(text, str(path))


def parse_config(text: str, source: str = "<config>") -> PolicyConfig:
    """Check config TOML text; `source` names it in error messages."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        line = decode_error_line(exc)
        raise ConfigFileError(f"{where(source, line)}: not valid TOML: {exc}") from exc
    for key in data:
        if key not in TABLES:
            problem = f"unknown table or key; expected one of: {', '.join(f'[{t}]' for t in TABLES)}"
            raise ConfigFileError(f"{where(source, locate(text, (key,)))}: {key}: {problem}")
    policy = data.get("policy", {})
    if not isinstance(policy, dict):
        raise ConfigFileError(f"{where(source, locate(text, ('policy',)))}: policy: must be a table [policy]")
    try:
        return PolicyConfig.from_mapping(policy)
    except PolicyConfigError as exc:
        line = locate(text, ("policy", exc.key))
        raise ConfigFileError(f"{where(source, line)}: {exc}") from exc
