"""Helpers for the integration tests: free ports, bounded waits, child processes that always stop."""

from __future__ import annotations

import http.client
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

# Every wait in these tests is bounded: a server that is not ready by then has failed, s.
READY_TIMEOUT_S = 20.0
POLL_INTERVAL_S = 0.05


def free_port() -> int:
    """A TCP port on loopback that nobody listens on right now (the kernel's ephemeral pick)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_for(check: Callable[[], T | None], *, what: str, timeout_s: float = READY_TIMEOUT_S) -> T:
    """Poll `check` until it returns something other than None (or False); fail after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = check()
        except (OSError, http.client.HTTPException, ValueError) as exc:
            last_error, value = exc, None
        if value is not None and value is not False:
            return value
        time.sleep(POLL_INTERVAL_S)
    raise AssertionError(f"{what}: not within {timeout_s:g} s (last error: {last_error!r})")


@dataclass(frozen=True)
class HttpAnswer:
    status: int
    headers: dict[str, str]  # lower-case names
    body: bytes


def http_get(url_host: str, port: int, path: str, headers: dict[str, str] | None = None) -> HttpAnswer:
    """One GET on a fresh connection; 4xx/5xx are answers, not exceptions."""
    return http_request("GET", url_host, port, path, headers)


def http_request(
    method: str, url_host: str, port: int, path: str, headers: dict[str, str] | None = None
) -> HttpAnswer:
    """One request without a body on a fresh connection; 4xx/5xx are answers, not exceptions."""
    connection = http.client.HTTPConnection(url_host, port, timeout=5)
    try:
        connection.request(method, path, headers=headers or {})
        response = connection.getresponse()
        body = response.read()
        return HttpAnswer(response.status, {k.lower(): v for k, v in response.getheaders()}, body)
    finally:
        connection.close()


def agent_line(port: int) -> str:
    """The line a HAProxy agent-check reads from gpuwatch's agent port."""
    with socket.create_connection(("127.0.0.1", port), timeout=2) as connection:
        chunks = []
        while chunk := connection.recv(4096):
            chunks.append(chunk)
    return b"".join(chunks).decode().strip()


class QuietServer(ThreadingHTTPServer):
    """A threaded HTTP server for stand-ins: daemon threads, and no tracebacks for clients that hang up.

    HAProxy's health checks connect and close, and timeout tests give up mid-answer; both are normal here.
    """

    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        pass


class Child:
    """A server process in its own session, its output in a log file, stopped however the test ends."""

    def __init__(self, argv: list[str], *, name: str, log_dir: Path, env: dict[str, str] | None = None):
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                argv, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
            )

    def log_tail(self, chars: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:]

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 5 s; the whole session, so a server's workers go too."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=5)


class Spawner:
    """Starts servers, waits (bounded) until each is ready, and stops them all at the end."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.started: list[Child] = []

    def start(
        self, argv: list[str], *, name: str, ready: Callable[[], object], env: dict[str, str] | None = None
    ) -> Child:
        child = Child(argv, name=name, log_dir=self.log_dir, env=env)
        self.started.append(child)

        def check() -> object:
            if not child.alive():
                raise AssertionError(f"{name} exited with {child.process.returncode}:\n{child.log_tail()}")
            return ready()

        try:
            wait_for(check, what=f"{name} ready")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n--- {name} log ---\n{child.log_tail()}") from None
        return child

    def stop_all(self) -> None:
        for child in reversed(self.started):
            child.stop()
