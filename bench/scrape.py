"""Latency of `/metrics` for 8 GPUs while wrk loads `/v1/admit`, and what scrapes cost `/v1/admit`.

Run: .venv/bin/python bench/scrape.py [--scrapes 1000] [--repeat 3] [--every 0.02] [--pin]
Starts `gpuwatch serve --source sim:8xH100 --interval 1 --metrics.dcgm-compat`, puts
`wrk -t1 -c16` on /v1/admit, and scrapes /metrics as Prometheus does (keep-alive,
Accept-Encoding: gzip), 10 to 30 ms apart at random, so scrapes land anywhere in the sampling
second, as Prometheus's do: some of them while the sampler thread reads the GPUs, decides and
renders. Each latency is from sending the request to the last byte of the answer. The same is
done for /v1/state, a ready-made answer: its latency is the floor any request sees under that
load on that machine. Medians over the repetitions are shown, and wrk's /v1/admit figures with
and without the scrapes. --pin puts gpuwatch on CPU 0, wrk and the scraper on the other CPUs.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import socket
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass

from admit import WrkRun, free_port, parse_wrk, percentile, pinned, running, wait_listening

ADMIT_PATH = "/v1/admit?class=default"
TARGET_P99_MS = 5.0
CONNECTIONS = 16
METRICS = b"GET /metrics HTTP/1.1\r\nHost: bench\r\nAccept-Encoding: gzip\r\nUser-Agent: Prometheus\r\n\r\n"
STATE = b"GET /v1/state HTTP/1.1\r\nHost: bench\r\n\r\n"


@dataclass(frozen=True)
class Repetition:
    """One repetition: /metrics and /v1/state latencies, ms, and wrk's /v1/admit figures meanwhile."""

    scrape_ms: list[float]
    state_ms: list[float]
    admit: WrkRun


def gpuwatch_command(port: int, interval_s: float, cpus: str | None) -> list[str]:
    """`gpuwatch serve` on 8 simulated H100s with the dcgm-exporter families too, HTTP only."""
    command = [sys.executable, "-m", "gpuwatch", "serve", "--source=sim:8xH100", f"--interval={interval_s:g}"]
    command += ["--metrics.dcgm-compat", f"--web.listen-address=127.0.0.1:{port}", "--agent.listen-address="]
    return pinned([*command, "--state-dir="], cpus)


def read_answer(sock: socket.socket) -> int:
    """Read one response from a keep-alive connection; its body length."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(262144)
        if not chunk:
            raise RuntimeError("gpuwatch closed the connection")
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    length = re.search(rb"Content-Length: (\d+)", head)
    if length is None or not head.startswith(b"HTTP/1.1 200"):
        raise RuntimeError(f"unexpected answer {head[:200]!r}")
    while len(body) < int(length.group(1)):
        body += sock.recv(262144)
    return len(body)


def scrape(port: int, count: int, every_s: float, request: bytes = METRICS) -> tuple[list[float], int]:
    """`count` requests on one connection, 0.5 to 1.5 x `every_s` apart: latencies, ms, last body size."""
    gaps = random.Random(1)  # noqa: S311 - spacing, not security
    latencies, size = [], 0
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        next_at = time.monotonic()
        for _ in range(count):
            time.sleep(max(0.0, next_at - time.monotonic()))
            next_at += every_s * gaps.uniform(0.5, 1.5)
            started = time.perf_counter()
            sock.sendall(request)
            size = read_answer(sock)
            latencies.append((time.perf_counter() - started) * 1e3)
    return latencies, size


def wrk(port: int, duration_s: float, cpus: str | None) -> subprocess.Popen[str]:
    """Start wrk on /v1/admit for `duration_s`, in the background."""
    command = ["wrk", "-t1", f"-c{CONNECTIONS}", f"-d{duration_s:.0f}s", "--latency"]
    command.append(f"http://127.0.0.1:{port}{ADMIT_PATH}")
    return subprocess.Popen(pinned(command, cpus), stdout=subprocess.PIPE, text=True)


def repetition(port: int, args: argparse.Namespace, cpus: str | None) -> tuple[Repetition, int]:
    """Scrapes, then as many /v1/state requests, while wrk runs a little longer than both take."""
    duration_s = 2 * args.scrapes * args.every + 3
    load = wrk(port, duration_s, cpus)
    time.sleep(1)  # wrk connected and busy
    latencies, size = scrape(port, args.scrapes, args.every)
    floor, _ = scrape(port, args.scrapes, args.every, STATE)
    output, _ = load.communicate(timeout=duration_s + 30)
    return Repetition(latencies, floor, parse_wrk(output)), size


def admit_alone(port: int, args: argparse.Namespace, cpus: str | None) -> WrkRun:
    """The /v1/admit figures with no scrapes, for comparison."""
    load = wrk(port, 2 * args.scrapes * args.every + 3, cpus)
    output, _ = load.communicate(timeout=2 * args.scrapes * args.every + 40)
    return parse_wrk(output)


def main() -> None:
    """Measure and print the table."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--scrapes", type=int, default=1000, help="scrapes per repetition (default 1000)")
    parser.add_argument("--repeat", type=int, default=3, help="repetitions; medians shown (default 3)")
    parser.add_argument("--every", type=float, default=0.02, help="mean seconds between scrapes (0.02)")
    parser.add_argument("--interval", type=float, default=1.0, help="gpuwatch --interval, s (default 1)")
    parser.add_argument("--pin", action="store_true", help="gpuwatch on CPU 0, wrk and scraper elsewhere")
    args = parser.parse_args()
    cpus = os.cpu_count() or 1
    server_cpus, client_cpus = ("0", f"1-{cpus - 1}") if args.pin and cpus > 1 else (None, None)
    if client_cpus is not None:
        os.sched_setaffinity(0, set(range(1, cpus)))
    port = free_port()
    load_before = os.getloadavg()[0]
    with running(gpuwatch_command(port, args.interval, server_cpus), port):
        wait_listening(port)
        time.sleep(2)  # the first samples and the RC model's first fit
        runs, size = [], 0
        for _ in range(args.repeat):
            run, size = repetition(port, args, client_cpus)
            runs.append(run)
        alone = [admit_alone(port, args, client_cpus) for _ in range(args.repeat)]
    print(
        f"/metrics of sim:8xH100 --interval {args.interval:g} --metrics.dcgm-compat, gzip ({size:,} bytes), "
        f"a scrape every {args.every * 1e3:g} ms on average; {args.scrapes} scrapes x {args.repeat}, "
        f"medians; {cpus} CPUs; pinned: {server_cpus is not None}; "
        f"load average {load_before:.2f} before, {os.getloadavg()[0]:.2f} after"
    )
    print_table(runs, alone)


def latency_row(name: str, series: list[list[float]]) -> float:
    """Print one latency row (medians over the repetitions); its p99, ms."""
    p50, p99, worst = (
        statistics.median(statistic(latencies) for latencies in series)
        for statistic in (lambda x: percentile(x, 0.5), lambda x: percentile(x, 0.99), max)
    )
    print(f"{name:<34}{p50:>10.2f}{p99:>10.2f}{worst:>10.2f}")
    return p99


def print_table(runs: list[Repetition], alone: list[WrkRun]) -> None:
    """The scrape latencies and the /v1/admit comparison, medians over the repetitions."""
    print(f"wrk -t1 -c{CONNECTIONS} on {ADMIT_PATH} meanwhile\n")
    print(f"{'':<34}{'p50 ms':>10}{'p99 ms':>10}{'max ms':>10}{'req/s':>12}")
    p99 = latency_row("/metrics under /v1/admit load", [run.scrape_ms for run in runs])
    latency_row("/v1/state under the same load", [run.state_ms for run in runs])
    rows = (("/v1/admit while scraped", [run.admit for run in runs]), ("/v1/admit alone", alone))
    for name, figures in rows:
        admit_p50 = statistics.median(run.p50_ms for run in figures)
        admit_p99 = statistics.median(run.p99_ms for run in figures)
        rate = statistics.median(run.requests_per_s for run in figures)
        print(f"{name:<34}{admit_p50:>10.3f}{admit_p99:>10.3f}{'':>10}{rate:>12,.0f}")
    verdict = "ok" if p99 <= TARGET_P99_MS else "MISSED"
    print(f"\n/metrics p99: {p99:.2f} ms (target <= {TARGET_P99_MS} ms) {verdict}")


if __name__ == "__main__":
    main()
