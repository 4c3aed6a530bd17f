"""SIGHUP: read the settings again, apply what can change live, name what needs a restart."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable

from gpuwatch.policy.config import PolicyConfig
from gpuwatch.service.config_file import ConfigFileError
from gpuwatch.service.logs import fields
from gpuwatch.service.settings import ServeConfig, SettingsError, changed, policy_changes

log = logging.getLogger("gpuwatch.reload")


class Reloader:
    """Holds the settings in force; `reload()` swaps in the live part of a fresh read.

    `load` reads the file and layers the command line over it again (ConfigFileError or
    SettingsError when it cannot be used); `apply_policy` and `apply_logging` put the live
    settings to work. Settings that need a restart keep their running values, so every later
    reload names them again until the daemon is restarted.
    """

    def __init__(
        self,
        running: ServeConfig,
        load: Callable[[], ServeConfig],
        apply_policy: Callable[[PolicyConfig], None],
        apply_logging: Callable[[str, str], None],
        path: str,
    ) -> None:
        self.running = running
        self._load = load
        self._apply_policy = apply_policy
        self._apply_logging = apply_logging
        self._path = path

    def reload(self) -> bool:
        """Read and apply; False (running settings kept, a warning logged) when the file is bad."""
        try:
            new = self._load()
        except (ConfigFileError, SettingsError) as exc:
            log.warning(
                "SIGHUP: keeping the running settings: %s",
                exc,
                extra=fields("reload_failed", path=self._path, error=str(exc)),
            )
            return False
        differ = changed(self.running, new)
        live = [s for s in differ if s.live]
        restart = [s for s in differ if not s.live]
        applied: list[str] = []
        if any(s.attribute == "policy" for s in live):
            applied += policy_changes(self.running.policy, new.policy)
            self._apply_policy(new.policy)
        if any(s.attribute in {"log_level", "log_format"} for s in live):
            applied += [s.key for s in live if s.attribute != "policy"]
            self._apply_logging(new.log_level, new.log_format)
        self.running = dataclasses.replace(
            self.running, **{s.attribute: getattr(new, s.attribute) for s in live}
        )
        summary = ", ".join(applied) if applied else "nothing changed"
        log.info(
            "SIGHUP: reloaded %s: applied %s",
            self._path,
            summary,
            extra=fields("reloaded", path=self._path, applied=applied or None),
        )
        if restart:
            names = ", ".join(f"{s.key} ({s.flag})" for s in restart)
            log.warning(
                "SIGHUP: changed settings that take effect only after a restart, still running "
                "with the old values: %s",
                names,
                extra=fields("reload_needs_restart", settings=[s.key for s in restart]),
            )
        return True
