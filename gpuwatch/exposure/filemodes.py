"""Refusing files and directories that users other than the owner may write: they would steer the signal."""

from __future__ import annotations

import stat
from pathlib import Path

# Write permission for the group or for everyone.
_OTHERS_WRITE = stat.S_IWGRP | stat.S_IWOTH


def others_may_write(path: str | Path, what: str) -> str | None:
    """Why `path` (a `what`) must not be trusted, or None (also when it cannot be stat'ed: the reader says).

    A config file decides what is admitted and who may log in, and a state directory holds the
    files proxies act on: whoever can write them steers the fleet's admission.
    """
    try:
        mode = Path(path).stat().st_mode
    except OSError:
        return None
    # Only what holds content: /dev/null (an empty config, 0666) cannot be written into.
    if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)) or not mode & _OTHERS_WRITE:
        return None
    who = (
        "group- and world-"
        if mode & stat.S_IWGRP and mode & stat.S_IWOTH
        else ("group-" if mode & stat.S_IWGRP else "world-")
    )
    return (
        f"{path}: the {what} is {who}writable (mode {stat.S_IMODE(mode):04o}); whoever can write it "
        f"steers what is admitted: chmod go-w {path}"
    )
