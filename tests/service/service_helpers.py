"""Helpers for the service tests: `gpuwatch serve` as a subprocess, its log lines, a notify socket."""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from exposure.serve_helpers import ServeProcess

TIMEOUT_S = 10.0
QUICK = ("--source=sim:1xH100", "--interval=0.1")
EPHEMERAL = ("--web.listen-address=127.0.0.1:0", "--agent.listen-address=", "--state-dir=")


def gpuwatch(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """A one-shot `gpuwatch` command."""
    return subprocess.run(
        [sys.executable, "-m", "gpuwatch", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, **(env or {})},
    )


# `gpuwatch serve` as a real process; stderr lines are collected as they come.
Serve = ServeProcess


def state(port: int, connection: http.client.HTTPConnection | None = None) -> dict:
    """/v1/state, on `connection` when given (kept open), else on a fresh one."""
    own = connection is None
    conn = connection or http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT_S)
    try:
        conn.request("GET", "/v1/state")
        response = conn.getresponse()
        assert response.status == 200
        return json.loads(response.read())
    finally:
        if own:
            conn.close()


def wait_for_state(port: int, predicate, timeout_s: float = TIMEOUT_S) -> dict:
    """The first /v1/state document for which `predicate` holds; fails with the last one."""
    deadline = time.monotonic() + timeout_s
    document: dict = {}
    while time.monotonic() < deadline:
        document = state(port)
        if predicate(document):
            return document
        time.sleep(0.05)
    raise AssertionError(f"no /v1/state within {timeout_s} s satisfied the condition; last: {document}")


class NotifySocket:
    """A datagram socket standing in for systemd's: NOTIFY_SOCKET for a child, and what it sent."""

    def __init__(self, path: Path | None = None, abstract_name: str | None = None) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        if abstract_name is not None:
            self.sock.bind(b"\0" + abstract_name.encode())
            self.address = "@" + abstract_name
        else:
            assert path is not None
            self.sock.bind(str(path))
            self.address = str(path)
        self.messages: list[tuple[float, dict[str, str]]] = []  # (monotonic arrival, fields)
        self._stop = threading.Event()
        self.sock.settimeout(0.05)
        self._reader = threading.Thread(target=self._collect, daemon=True)
        self._reader.start()

    def _collect(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            pairs = dict(line.split("=", 1) for line in data.decode().splitlines() if "=" in line)
            self.messages.append((time.monotonic(), pairs))

    def wait_for(self, key: str, value: str | None = None, after: float = 0.0, timeout_s: float = TIMEOUT_S):
        """The first message (arrived after `after`) setting `key` (to `value`); fails if none comes."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for arrived, pairs in list(self.messages):
                if arrived > after and key in pairs and (value is None or pairs[key] == value):
                    return arrived, pairs
            time.sleep(0.02)
        raise AssertionError(f"no {key}={value or '*'} after {after}; got {self.messages}")

    def times(self, key: str, start: float, end: float) -> list[float]:
        """Arrival times of messages setting `key` within [start, end]."""
        return [t for t, pairs in list(self.messages) if key in pairs and start <= t <= end]

    def close(self) -> None:
        self._stop.set()
        self._reader.join(2)
        self.sock.close()
