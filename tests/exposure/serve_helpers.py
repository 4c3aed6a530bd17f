"""Helpers for the exposure tests: decisions built by hand, an in-process server, raw HTTP."""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Self

from gpuwatch.exposure.board import Board
from gpuwatch.exposure.http.server import ConnectionLimits, ExposureServer
from gpuwatch.exposure.leases import LeaseBook
from gpuwatch.exposure.listen import parse_listen_address
from gpuwatch.policy.config import PolicyConfig
from gpuwatch.policy.decision import (
    GpuDecision,
    NodeDecision,
    PriorityClass,
    Slots,
    ThermalState,
    admitted_classes,
)
from gpuwatch.service.daemon import new_event_loop

TIMEOUT_S = 5.0
# Predicted wait of a hand-built GPU for every class it refuses, s.
RETRY_AFTER_S = 20.0


def _refused(slots: Slots) -> tuple[tuple[PriorityClass, float], ...]:
    return tuple((p, RETRY_AFTER_S) for p in PriorityClass if not slots.of(p))


def slots_for(state: ThermalState, pressure: float) -> Slots:
    """Slots a GPU in `state` at `pressure` offers: the classes DESIGN §2 admits, fewer as it warms."""
    room = max(1, round(10 * (1 - pressure)))
    admits = admitted_classes(state)
    return Slots(*(room + 2 - rank if cls in admits else 0 for rank, cls in enumerate(PriorityClass)))


def gpu(
    index: int,
    state: ThermalState = ThermalState.OK,
    pressure: float = 0.1,
    slots: Slots | None = None,
    **extra,
) -> GpuDecision:
    """A GPU decision in `state`, with slots for the classes DESIGN §2 admits; refused classes wait 20 s."""
    offered = slots_for(state, pressure) if slots is None else slots
    fields = {
        "margin_c": 40.0 * (1 - pressure),
        "retry_after_by_class": _refused(offered),
        "slot_waits": tuple((p, 2.0 if offered.of(p) else RETRY_AFTER_S) for p in PriorityClass),
        "power_w": 500.0,
        "power_limit_w": 700.0,
        **extra,
    }
    return GpuDecision(
        index=index,
        uuid=f"GPU-test-{index:04d}",
        name="NVIDIA H100 80GB HBM3",
        state=state,
        pressure=pressure,
        admits=offered.classes,
        reasons=() if state is ThermalState.OK else (f"test_{state.value}",),
        sentence=f"GPU {index} is {state.value}.",
        slots=offered,
        **fields,
    )


def node(*gpus: GpuDecision, sequence: int = 1) -> NodeDecision:
    """The worst-of node over `gpus`, decided just now."""
    worst = max(gpus, key=lambda g: g.state.severity)
    return NodeDecision(
        state=worst.state,
        pressure=max(g.pressure for g in gpus),
        reasons=worst.reasons,
        sentence=f"Node is {worst.state.value}.",
        gpus=gpus,
        sequence=sequence,
        taken_at=time.time(),
        decided_at=time.monotonic(),
        sample_age_s=0.05,
        retry_after_by_class=tuple(
            (p, RETRY_AFTER_S) for p in PriorityClass if not any(g.slots.of(p) for g in gpus)
        ),
    )


class ServerThread:
    """The exposure servers on their own event loop in a thread, serving a board we control."""

    def __init__(
        self,
        decision: NodeDecision,
        expiry: Callable[[NodeDecision, float], NodeDecision] | None = None,
        limits: ConnectionLimits | None = None,
        **server_options: object,
    ) -> None:
        # Admissions take leases in a book of their own, as the daemon's do.
        self.book = LeaseBook(PolicyConfig())
        self.board = Board("sim:test", expiry or (lambda d, _now: d), book=self.book)
        self.board.publish(decision)
        self._loop = new_event_loop()
        self._stop = asyncio.Event()
        address = [parse_listen_address("127.0.0.1:0")]
        self.server = ExposureServer(
            self.board, address, address, expiry_check_s=0.05, limits=limits, **server_options
        )
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._ready = threading.Event()

    def __enter__(self) -> Self:
        self._thread.start()
        assert self._ready.wait(TIMEOUT_S), "the in-process server did not start"
        return self

    def __exit__(self, *_exc: object) -> None:
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(TIMEOUT_S)

    @property
    def http_port(self) -> int:
        return int(self.server.http_bound[0].rsplit(":", 1)[1])

    @property
    def agent_port(self) -> int:
        return int(self.server.agent_bound[0].rsplit(":", 1)[1])

    def _run(self) -> None:
        async def main() -> None:
            await self.server.start()
            self._ready.set()
            await self._stop.wait()
            await self.server.stop(grace_s=1.0)

        self._loop.run_until_complete(main())
        self._loop.close()


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> dict:
        return json.loads(self.body)


def get(
    port: int,
    path: str,
    headers: dict[str, str] | None = None,
    method: str = "GET",
    body: bytes | None = None,
) -> Answer:
    """One request on a fresh connection."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT_S)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        body = response.read()
        return Answer(response.status, {k.lower(): v for k, v in response.getheaders()}, body)
    finally:
        connection.close()


def raw_exchange(port: int, request: bytes, *, expect_responses: int = 1) -> bytes:
    """Send raw bytes and read until `expect_responses` responses have fully arrived or EOF."""
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT_S) as sock:
        sock.sendall(request)
        received = b""
        deadline = time.monotonic() + TIMEOUT_S
        while time.monotonic() < deadline and count_responses(received) < expect_responses:
            chunk = sock.recv(65536)
            if not chunk:
                break
            received += chunk
        return received


def count_responses(data: bytes) -> int:
    """Whole responses in `data` (head plus Content-Length bytes of body)."""
    return len(split_responses(data))


def split_responses(data: bytes) -> list[tuple[bytes, dict[bytes, bytes], bytes]]:
    """(status line, headers, body) of each whole response in `data`."""
    out = []
    while b"\r\n\r\n" in data:
        head, rest = data.split(b"\r\n\r\n", 1)
        status, *lines = head.split(b"\r\n")
        headers = {k.strip().lower(): v.strip() for k, v in (line.split(b":", 1) for line in lines)}
        length = int(headers.get(b"content-length", b"0"))
        if len(rest) < length:
            break
        out.append((status, headers, rest[:length]))
        data = rest[length:]
    return out


def agent_answer(port: int, send: bytes | None = None) -> tuple[bytes, float]:
    """The agent's line (up to EOF) and how long it took, s."""
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT_S) as sock:
        if send is not None:
            sock.sendall(send)
        received = b""
        while chunk := sock.recv(256):
            received += chunk
    return received, time.monotonic() - started


def statuses(port: int, paths: Iterable[str]) -> list[int]:
    return [get(port, path).status for path in paths]


class ServeProcess:
    """`gpuwatch serve` as a real subprocess on ephemeral loopback ports; stderr is collected."""

    def __init__(self, *args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> None:
        self.lines: list[str] = []
        self.process = subprocess.Popen(
            [sys.executable, "-m", "gpuwatch", "serve", *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, **(env or {})},
            cwd=cwd,
        )
        self._reader = threading.Thread(target=self._collect, daemon=True)
        self._reader.start()

    def _collect(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.lines.append(line.rstrip("\n"))

    def wait_for_log(self, pattern: str, timeout_s: float = 15.0, after: int = 0) -> re.Match[str]:
        """The first log line from index `after` on matching `pattern`; fails with the log if none comes."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for line in self.lines[after:]:
                if found := re.search(pattern, line):
                    return found
            if self.process.poll() is not None and not self._reader.is_alive():
                break
            time.sleep(0.02)
        raise AssertionError(f"no log line matching {pattern!r}; log:\n" + "\n".join(self.lines))

    def port(self, what: str) -> int:
        """The port `serving HTTP` or `serving the HAProxy agent` names."""
        return int(self.wait_for_log(rf"serving {what} on 127\.0\.0\.1:(\d+)").group(1))

    def http_port(self) -> int:
        """The port `serving HTTP` names."""
        return self.port("HTTP")

    def signal(self, signum: int) -> int:
        """Send `signum`; the number of log lines before it, for `wait_for_log(after=)`."""
        mark = len(self.lines)
        self.process.send_signal(signum)
        return mark

    def stop(self, timeout_s: float = 10.0) -> tuple[int, float]:
        """SIGTERM; the exit status and how long the exit took, s."""
        started = time.monotonic()
        self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout_s)
        took = time.monotonic() - started
        self._reader.join(2)
        return code, took

    def kill(self) -> None:
        """Make sure the process is gone and its pipe closed (a test may have failed midway)."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(5)
        self._reader.join(2)
        if self.process.stderr is not None:
            self.process.stderr.close()


def run_serve(*args: str, timeout_s: float = 20.0) -> subprocess.CompletedProcess[str]:
    """`gpuwatch serve` that is expected to exit by itself (a refused start)."""
    return subprocess.run(
        [sys.executable, "-m", "gpuwatch", "serve", *args],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
