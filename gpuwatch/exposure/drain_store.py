"""Where maintenance drains live between restarts: `drains.json` in the state directory."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from types import MappingProxyType

from gpuwatch.exposure.state_files import write_atomically
from gpuwatch.policy.drain import MAX_REASON_CHARS, DrainEntry, Drains

log = logging.getLogger(__name__)

DRAINS_FILE = "drains.json"


class DrainStore:
    """Reads the drains a previous run left and writes each change; without a directory, keeps none.

    A drain outlives a daemon restart (an upgrade must not end a maintenance window), not a reboot
    when the directory is on /run. A file that cannot be read is named in a warning and left in
    place, and the daemon starts with no drains: what it says is logged, nothing is overwritten
    until an operator drains or undrains again.
    """

    def __init__(self, directory: str | Path | None) -> None:
        self._path = None if directory is None else Path(directory) / DRAINS_FILE

    def load(self) -> Drains:
        """The drains in the file; none when there is no file or it cannot be used."""
        if self._path is None or not self._path.exists():
            return Drains()
        try:
            return parse_drains(self._path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            log.warning("ignoring %s, which cannot be used: %s; no drain is in force", self._path, exc)
            return Drains()

    def save(self, drains: Drains) -> None:
        """Replace the file with `drains`; raises OSError when it cannot be written."""
        if self._path is None:
            return
        data = json.dumps(drains.document(), indent=2).encode() + b"\n"
        write_atomically(self._path.parent, self._path.name, data)


def parse_drains(text: str) -> Drains:
    """Drains from `Drains.document()`'s JSON; ValueError naming what is wrong."""
    document = json.loads(text)
    if not isinstance(document, dict):
        raise ValueError("not a JSON object")  # noqa: TRY004 - one error type for every bad file
    node = document.get("node")
    gpus = document.get("gpus", {})
    if not isinstance(gpus, dict):
        raise ValueError("gpus: not an object")  # noqa: TRY004 - as above
    entries = {}
    for key, value in gpus.items():
        if not key.isdigit():
            raise ValueError(f"gpus: {key!r} is not a GPU index")
        entries[int(key)] = _entry(value, f"gpus.{key}")
    return Drains(
        None if node is None else _entry(node, "node"), MappingProxyType(dict(sorted(entries.items())))
    )


def _entry(value: object, where: str) -> DrainEntry:
    if not isinstance(value, dict):
        raise ValueError(f"{where}: not an object")  # noqa: TRY004 - one error type for every bad file
    reason, since = value.get("reason"), value.get("since")
    if not isinstance(reason, str) or len(reason) > MAX_REASON_CHARS:
        raise ValueError(f"{where}.reason: a text of at most {MAX_REASON_CHARS} characters is needed")
    if not isinstance(since, int | float) or isinstance(since, bool) or not math.isfinite(since):
        raise ValueError(f"{where}.since: Unix seconds are needed")
    return DrainEntry(reason, float(since))
