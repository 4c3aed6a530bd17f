"""The state files: `state.json` (the /v1/state body) and `pressure` (one float), swapped atomically."""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path

from gpuwatch.exposure.filemodes import others_may_write
from gpuwatch.exposure.publication import Publication

log = logging.getLogger(__name__)

STATE_FILE = "state.json"
PRESSURE_FILE = "pressure"
FILE_MODE = 0o644  # world-readable: Envoy, sidecars and scripts read them as other users
DIR_MODE = 0o755


class StateDirError(OSError):
    """The state directory cannot be created or written; the message names it and says why."""


class StateFiles:
    """Writes each publication to `directory`, each file swapped in atomically.

    A temporary file is written beside the target and renamed over it, so a reader sees the old
    file or the new one, never a part.

    No fsync: the files describe the present instant and live on /run (tmpfs) by default; after
    an OS crash they are stale whatever was synced, and a daemon crash loses nothing written.
    """

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self._failing = False
        try:
            self.directory.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
        except OSError as exc:
            raise StateDirError(
                exc.errno, f"cannot create the state directory {self.directory}: {exc.strerror or exc}"
            ) from exc
        if not os.access(self.directory, os.W_OK | os.X_OK):
            raise StateDirError(f"cannot write to the state directory {self.directory}: permission denied")
        if problem := others_may_write(self.directory, "state directory"):
            raise StateDirError(problem)

    def write(self, publication: Publication) -> None:
        """Replace both files with this publication's content; raises OSError on failure."""
        self._replace(STATE_FILE, publication.state_body)
        self._replace(PRESSURE_FILE, publication.pressure_text.encode("ascii"))

    def write_logged(self, publication: Publication) -> None:
        """`write`, logging the first failure of a streak and the recovery instead of raising."""
        try:
            self.write(publication)
        except OSError as exc:
            if not self._failing:
                log.warning("cannot write the state files in %s: %s", self.directory, exc)
            self._failing = True
            return
        if self._failing:
            log.info("state files in %s are written again", self.directory)
        self._failing = False

    def _replace(self, name: str, data: bytes) -> None:
        write_atomically(self.directory, name, data)


def write_atomically(directory: Path, name: str, data: bytes) -> None:
    """Replace `directory/name` with `data`, mode FILE_MODE: a reader sees the old file or the new."""
    descriptor, temporary = tempfile.mkstemp(dir=directory, prefix=f".{name}.", suffix=".tmp")
    try:
        with os.fdopen(descriptor, "wb") as file:
            os.fchmod(file.fileno(), FILE_MODE)  # mkstemp creates 0600
            file.write(data)
        Path(temporary).replace(directory / name)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
