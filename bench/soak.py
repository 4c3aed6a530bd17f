"""Soak: `gpuwatch serve` on the fake NVML under admission load, scrapes and fault cycles; RSS, fds, threads.

Run: .venv/bin/python bench/soak.py [--minutes 30] [--warmup-minutes 5] [--admits-per-s 200]
Builds the fake libnvidia-ml.so.1 with 8 GPUs, starts `gpuwatch serve --source nvml --interval
0.5` with HTTP, the HAProxy agent port and state files, and for --minutes keeps up:
- /v1/admit at --admits-per-s over keep-alive connections (a mix of classes, some pinned),
- a Prometheus-style /metrics scrape (gzip) every second, /v1/state and an agent check every 0.5 s,
- a fault every 30 s (15 s into each half minute), in turn: a GPU lost, the driver unloaded, a
  call blocking, garbage values, NOT_SUPPORTED on power, utilization and clocks, a burst of 1,000
  XIDs; each held 10 s, then cleared.
Once a minute it prints the daemon's RSS, open file descriptors and threads, the requests done
and the admit p99 of that minute. At the end: RSS growth after the warm-up (target <= 2 MiB),
and the spread of fds and threads after it (target: flat, i.e. 0).
"""

from __future__ import annotations

import argparse
import http.client
import math
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import psutil

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "tests"))
from admit import free_port, wait_listening  # noqa: E402 - bench/ is the script's own folder
from fake_nvml.build import build_all  # noqa: E402 - tests/ is put on the path just above
from fake_nvml.control import FakeNvml  # noqa: E402
from fake_nvml.profiles import A100_SXM4_80GB, H100_SXM, H200  # noqa: E402

INTERVAL_S = 0.5
# Faults start 15 s into each half minute and are held 10 s, so the once-a-minute readings (on
# whole minutes) fall 5 s after a fault cleared: a blocked call's thread is counted only if leaked.
FIRST_FAULT_AT_S = 15.0
FAULT_EVERY_S = 30.0
FAULT_HELD_S = 10.0
TARGET_RSS_GROWTH_MIB = 2.0
ADMIT_CONNECTIONS = 4
ADMIT_QUERIES = (
    "/v1/admit?class=default",
    "/v1/admit?class=critical",
    "/v1/admit/nginx?class=sheddable",
    "/v1/admit/envoy",
    "/v1/admit?class=default&gpu=3",
)
UNSUPPORTED_CALLS = ("nvmlDeviceGetPowerUsage", "nvmlDeviceGetUtilizationRates", "nvmlDeviceGetClockInfo")
SCRAPE = b"GET /metrics HTTP/1.1\r\nHost: soak\r\nAccept-Encoding: gzip\r\nUser-Agent: Prometheus\r\n\r\n"
MIB = 1024 * 1024


@dataclass
class Minute:
    """What the load saw in one minute: admit latencies, s, and counts of requests and errors."""

    admit_s: list[float] = field(default_factory=list)
    requests: int = 0
    errors: int = 0


class Load:
    """Threads that keep the daemon busy until `stop` is set; counts are per minute."""

    def __init__(self, port: int, agent_port: int, admits_per_s: float) -> None:
        self.port, self.agent_port = port, agent_port
        self.stop = threading.Event()
        self._lock = threading.Lock()
        self.minute = Minute()
        self._admit_period_s = ADMIT_CONNECTIONS / admits_per_s
        self._threads = [
            *(
                threading.Thread(target=self._admits, args=(i,), daemon=True)
                for i in range(ADMIT_CONNECTIONS)
            ),
            threading.Thread(target=self._every, args=(1.0, self._scrape), daemon=True),
            threading.Thread(target=self._every, args=(0.5, self._state), daemon=True),
            threading.Thread(target=self._every, args=(0.5, self._agent), daemon=True),
        ]

    def start(self) -> None:
        """Start every load thread."""
        for thread in self._threads:
            thread.start()

    def join(self) -> None:
        """Stop the load and wait for its threads."""
        self.stop.set()
        for thread in self._threads:
            thread.join(10)

    def take_minute(self) -> Minute:
        """What the load saw since the last call, and a fresh count."""
        with self._lock:
            done, self.minute = self.minute, Minute()
        return done

    def _count(self, latency_s: float | None, *, ok: bool) -> None:
        with self._lock:
            self.minute.requests += 1
            self.minute.errors += 0 if ok else 1
            if latency_s is not None:
                self.minute.admit_s.append(latency_s)

    def _admits(self, index: int) -> None:
        rng = random.Random(index)  # noqa: S311 - which query to send, not security
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        next_at = time.monotonic()
        while not self.stop.is_set():
            next_at += self._admit_period_s
            started = time.perf_counter()
            try:
                connection.request("GET", rng.choice(ADMIT_QUERIES))
                answer = connection.getresponse()
                answer.read()
                self._count(time.perf_counter() - started, ok=answer.status in {200, 403, 429, 503})
            except (OSError, http.client.HTTPException):
                self._count(None, ok=False)
                connection.close()
                connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
            self.stop.wait(max(0.0, next_at - time.monotonic()))
        connection.close()

    def _every(self, period_s: float, action: Callable[[], bool]) -> None:
        while not self.stop.wait(period_s):
            try:
                ok = action()
            except (OSError, http.client.HTTPException):
                ok = False
            self._count(None, ok=ok)

    def _scrape(self) -> bool:
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as sock:
            sock.sendall(SCRAPE)
            return _read_answer(sock).startswith(b"HTTP/1.1 200")

    def _state(self) -> bool:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        try:
            connection.request("GET", "/v1/state")
            answer = connection.getresponse()
            answer.read()
            return answer.status == 200
        finally:
            connection.close()

    def _agent(self) -> bool:
        with socket.create_connection(("127.0.0.1", self.agent_port), timeout=5) as sock:
            return bool(sock.recv(256))


def _read_answer(sock: socket.socket) -> bytes:
    """One HTTP/1.1 answer with Content-Length, whole."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        (
            int(line.split(b":")[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        ),
        0,
    )
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return head


def faults(fake: FakeNvml) -> list[tuple[str, Callable[[], None], Callable[[], None]]]:
    """(name, inject, clear) for each fault of the cycle."""

    def garbage() -> None:
        fake.set(5, "temperature_c", 4000)
        fake.set(5, "power_mw", -5000)

    def clean() -> None:
        fake.configure_gpu(5, A100_SXM4_80GB)

    def unsupported() -> None:
        for function in UNSUPPORTED_CALLS:
            fake.set_return(6, function, "NOT_SUPPORTED")

    def supported() -> None:
        for function in UNSUPPORTED_CALLS:
            fake.set_return(6, function, "SUCCESS")

    return [
        (
            "GPU 2 lost",
            lambda: fake.set_gpu_return(2, "GPU_IS_LOST"),
            lambda: fake.set_gpu_return(2, "SUCCESS"),
        ),
        (
            "driver unloaded",
            lambda: fake.set_global_return("DRIVER_NOT_LOADED"),
            lambda: fake.set_global_return("SUCCESS"),
        ),
        (
            "a call blocks",
            lambda: fake.block(4, "nvmlDeviceGetPowerUsage"),
            lambda: fake.release(4, "nvmlDeviceGetPowerUsage"),
        ),
        ("garbage values", garbage, clean),
        ("NOT_SUPPORTED", unsupported, supported),
        ("1,000 XIDs", lambda: fake.inject_xid(1, 13, 1000), lambda: None),
    ]


def serve_command(port: int, agent_port: int, state_dir: str) -> list[str]:
    """`gpuwatch serve` on NVML (the fake, by LD_LIBRARY_PATH) with every exposure on."""
    return [
        sys.executable, "-m", "gpuwatch", "serve", "--source", "nvml", "--interval", str(INTERVAL_S),
        "--web.listen-address", f"127.0.0.1:{port}", "--agent.listen-address", f"127.0.0.1:{agent_port}",
        "--state-dir", state_dir,
    ]  # fmt: skip


def p99_ms(values: list[float]) -> float:
    """The 99th percentile (nearest rank) of latencies in s, in ms; NaN for none."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return 1000 * ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]


def main() -> None:
    """Set up the fake GPUs and the daemon, soak, summarize."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--warmup-minutes", type=float, default=5.0)
    parser.add_argument("--admits-per-s", type=float, default=200.0)
    args = parser.parse_args()
    libraries = build_all()
    with tempfile.TemporaryDirectory() as scratch:
        fake = FakeNvml(libraries["full"], libraries, Path(scratch) / "fake-nvml.state")
        fake.install([H100_SXM] * 4 + [A100_SXM4_80GB] * 2 + [H200] * 2)
        port, agent_port = free_port(), free_port()
        env = {**os.environ, **fake.env("full")}
        daemon = subprocess.Popen(
            serve_command(port, agent_port, str(Path(scratch) / "state")),
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_listening(port)
            run(daemon, fake, Load(port, agent_port, args.admits_per_s), args)
        finally:
            fake.release_all()
            daemon.terminate()
            daemon.wait(10)


def run(daemon: subprocess.Popen[bytes], fake: FakeNvml, load: Load, args: argparse.Namespace) -> None:
    """The soak itself: load, faults in turn, a reading a minute; then the summary."""
    process = psutil.Process(daemon.pid)
    cycle = faults(fake)
    load.start()
    started = time.monotonic()
    series: list[tuple[float, float, int, int]] = []
    print(f"soak: {args.minutes:g} min, warm-up {args.warmup_minutes:g} min, {args.admits_per_s:g} admits/s")
    print("minute  RSS MiB  fds  threads  requests  errors  admit p99 ms  faults")
    fault_index, next_fault_at, clear_at = 0, started + FIRST_FAULT_AT_S, None
    next_report_at = started + 60.0
    faults_done = 0
    try:
        while (now := time.monotonic()) < started + args.minutes * 60:
            if daemon.poll() is not None:
                raise SystemExit(f"gpuwatch exited with status {daemon.returncode} during the soak")
            if clear_at is not None and now >= clear_at:
                cycle[fault_index % len(cycle)][2]()
                fault_index, clear_at = fault_index + 1, None
            if clear_at is None and now >= next_fault_at:
                cycle[fault_index % len(cycle)][1]()
                clear_at, next_fault_at = now + FAULT_HELD_S, now + FAULT_EVERY_S
                faults_done += 1
            if now >= next_report_at:
                next_report_at += 60.0
                minute = load.take_minute()
                rss_mib = process.memory_info().rss / MIB
                fds, threads = process.num_fds(), process.num_threads()
                series.append(((now - started) / 60, rss_mib, fds, threads))
                print(
                    f"{(now - started) / 60:6.0f}  {rss_mib:7.2f}  {fds:3d}  {threads:7d}  "
                    f"{minute.requests:8d}  {minute.errors:6d}  {p99_ms(minute.admit_s):12.2f}  "
                    f"{faults_done:6d}",
                    flush=True,
                )
            time.sleep(0.05)
    finally:
        if clear_at is not None:
            cycle[fault_index % len(cycle)][2]()
        load.join()
    summarize(series, args.warmup_minutes)


def summarize(series: list[tuple[float, float, int, int]], warmup_minutes: float) -> None:
    """RSS growth after the warm-up against the target, and whether fds and threads climb."""
    after = [row for row in series if row[0] >= warmup_minutes]
    if len(after) < 2:
        print("too short a run to judge growth after the warm-up")
        return
    growth = after[-1][1] - after[0][1]
    print(
        f"after the warm-up: RSS {after[0][1]:.2f} -> {after[-1][1]:.2f} MiB (growth {growth:+.2f} MiB, "
        f"target <= {TARGET_RSS_GROWTH_MIB:g}: {'met' if growth <= TARGET_RSS_GROWTH_MIB else 'MISSED'}); "
        f"median {statistics.median(r[1] for r in after):.2f} MiB"
    )
    print(f"fds: {_trend([row[2] for row in after])}; threads: {_trend([row[3] for row in after])}")


def _trend(values: list[int]) -> str:
    """Flat when the second half of the readings never goes above the first half's highest.

    A reading can catch a short-lived thread or socket (a sampler worker, a scrape's connection),
    so single readings differ by one; what leaks climbs from half to half.
    """
    half = len(values) // 2
    first, second = max(values[: max(1, half)]), max(values[half:])
    verdict = "flat" if second <= first else f"GROWING ({first} -> {second})"
    return f"{min(values)}..{max(values)}, {verdict}"


if __name__ == "__main__":
    main()
