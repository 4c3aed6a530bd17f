"""sd_notify: tells systemd READY, STATUS, WATCHDOG, RELOADING and STOPPING over $NOTIFY_SOCKET."""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Mapping

log = logging.getLogger(__name__)

# systemd keeps STATUS= for `systemctl status`; longer texts only crowd its one line.
MAX_STATUS_CHARS = 200


class Notifier:
    """Sends datagrams to the socket systemd named in NOTIFY_SOCKET; does nothing without one.

    A path starting with '@' is a Linux abstract socket. A failed send is logged once and never
    raised: the daemon serves whether or not systemd hears it.
    """

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        self._address = _socket_address(env.get("NOTIFY_SOCKET", ""))
        self._watchdog_s = _watchdog_period_s(env)
        self._socket: socket.socket | None = None
        self._warned = False

    @property
    def enabled(self) -> bool:
        """Whether systemd asked to be notified."""
        return self._address is not None

    @property
    def watchdog_s(self) -> float | None:
        """The watchdog timeout systemd set for this process, s (WatchdogSec=), or None when off."""
        return self._watchdog_s if self.enabled else None

    def ready(self, status: str) -> None:
        """Start-up is complete (READY=1) and what the service is doing."""
        self.send(READY="1", STATUS=_status_text(status))

    def status(self, status: str) -> None:
        """A new one-line status for `systemctl status`."""
        self.send(STATUS=_status_text(status))

    def watchdog(self) -> None:
        """Still alive and sampling (WATCHDOG=1)."""
        self.send(WATCHDOG="1")

    def reloading(self) -> None:
        """A reload has started; `ready()` ends it."""
        self.send(RELOADING="1", MONOTONIC_USEC=str(time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000))

    def stopping(self) -> None:
        """Shutdown has begun (STOPPING=1)."""
        self.send(STOPPING="1", STATUS="stopping: finishing requests in flight")

    def send(self, **assignments: str) -> bool:
        """One datagram of `KEY=value` lines; True if it was sent."""
        if self._address is None:
            return False
        message = "\n".join(f"{key}={value}" for key, value in assignments.items()).encode()
        try:
            if self._socket is None:
                self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._socket.sendto(message, self._address)
        except OSError as exc:
            if not self._warned:
                self._warned = True
                log.warning("cannot notify systemd through NOTIFY_SOCKET: %s", exc)
            return False
        return True

    def close(self) -> None:
        """Close the socket; later sends open a new one."""
        if self._socket is not None:
            self._socket.close()
            self._socket = None


def _socket_address(path: str) -> str | bytes | None:
    """NOTIFY_SOCKET as a sendto() address: '@name' is abstract (a leading NUL), '/path' a file."""
    if path.startswith("@"):
        return b"\0" + path[1:].encode()
    if path.startswith("/"):
        return path
    return None  # unset, or a form systemd does not use (vsock: addresses are not supported here)


def _watchdog_period_s(env: Mapping[str, str]) -> float | None:
    """WATCHDOG_USEC in seconds, when it is meant for this process (WATCHDOG_PID absent or ours)."""
    pid = env.get("WATCHDOG_PID", "")
    if pid and (not pid.isdigit() or int(pid) != os.getpid()):
        return None
    usec = env.get("WATCHDOG_USEC", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    return int(usec) / 1_000_000


def _status_text(status: str) -> str:
    flat = " ".join(status.split())
    return flat if len(flat) <= MAX_STATUS_CHARS else flat[: MAX_STATUS_CHARS - 3] + "..."
