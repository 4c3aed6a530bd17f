"""Raising the soft open-files limit so --web.max-connections can be reached, never past the hard limit."""

from __future__ import annotations

import logging
import resource

from gpuwatch.exposure.http.refusal import MAX_REFUSING
from gpuwatch.service.logs import fields

log = logging.getLogger(__name__)

# Descriptors besides the HTTP connections: listeners, agent clients, NVML, logs, state files.
_OTHER_FDS = 256


def ensure_open_files(max_connections: int) -> int:
    """Raise the soft RLIMIT_NOFILE to what `max_connections` needs (0: no cap); return the soft limit.

    systemd's default soft limit is 1024, below the default cap of 4096; Go servers raise it the
    same way at start. When the hard limit is lower, the cap cannot be reached: a warning says so
    (raise LimitNOFILE= in the unit), and connections past the limit fail at accept.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if max_connections <= 0:
        return soft
    needed = max_connections + MAX_REFUSING + _OTHER_FDS
    if soft >= needed:
        return soft
    target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (ValueError, OSError):
        target = soft
    if target < needed:
        log.warning(
            "the open-files limit (%d) is too low for --web.max-connections %d; raise LimitNOFILE to %d",
            target,
            max_connections,
            needed,
            extra=fields("open_files_limit", limit=target, needed=needed),
        )
    return target
