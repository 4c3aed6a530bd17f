"""Throughput, p99 latency and freshness of `/v1/admit`, beside nginx returning a constant 200.

Run: .venv/bin/python bench/admit.py [--duration 10] [--repeat 3] [--threads 2] [--pin]
Starts `gpuwatch serve --source sim:8xH100 --interval 1` three ways: as shipped (each admission
takes a lease, so once the 8 GPUs' slots are taken the rest are held back until the next
decision); with max_slots = 10**6, so that every answer is an admission taking a lease that is
never released (each lives out its deadline); and with max_slots = 10**6 under a wrk script that
releases every lease it is handed (admit, then `POST /v1/release?lease=`, on the same thread's
keep-alive connections), so that answers alternate between an admission and a release. Beside
them nginx (Debian's nginx-light, bench/nginx-admit.conf) with one worker and with
`worker_processes auto`, and with one worker under the same wrk script (it never hands out a
lease, so the script only pays wrk's cost of reading each answer's headers). All on 127.0.0.1,
`wrk -t2 -c32 --latency` against each, medians over the repetitions; latencies are per answer.
Then restarts gpuwatch at --interval 0.1 and measures how long a published snapshot takes to
show in /v1/state (its `taken_at` to the first poll that sees its sequence), idle and under wrk
load.
--pin puts the servers on CPU 0 and wrk on the other CPUs, so they do not compete for a core.
On a 2-CPU machine, wrk's two threads and the server share both CPUs and every server's p99 is
set by that contention; `--threads 1` leaves one CPU to the server and shows its own tail.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
ADMIT_PATH = "/v1/admit?class=default"
CONNECTIONS = 32
TARGET_THROUGHPUT_RATIO = 0.5
TARGET_P99_MS = 1.0
TARGET_FRESHNESS_MS = 10.0
FRESHNESS_INTERVAL_S = 0.1
_MS_PER_UNIT = {"us": 1e-3, "ms": 1.0, "s": 1e3}
_GPUWATCH = "gpuwatch serve (1 process)"
_GPUWATCH_TAKING = "gpuwatch, each answer a lease"
_GPUWATCH_RELEASING = "gpuwatch, admit then release"
# Slots a GPU offers in the taking runs: more than wrk can take in a run, so every admit answer
# is an admission that takes a lease (the lease book's write path), not a held-back answer.
TAKING_MAX_SLOTS = 10**6
_NGINX_ONE = "nginx worker_processes 1"
_NGINX_SCRIPTED = "nginx 1 worker, same wrk script"
# wrk's Lua: each thread keeps the leases its answers carried and spends its next request on
# releasing one, so every lease is released within a request or two of its admission, on one of
# the thread's keep-alive connections. Against a server that hands out no lease (nginx) every
# request is the admit request.
RELEASE_SCRIPT = """
local leases = {}
local admit = wrk.format("GET", "%s")
request = function()
  local count = #leases
  if count == 0 then
    return admit
  end
  local lease = leases[count]
  leases[count] = nil
  return wrk.format("POST", "/v1/release?lease=" .. lease)
end
response = function(status, headers, body)
  local lease = headers["X-GPUWatch-Lease"]
  if lease then
    leases[#leases + 1] = lease
  end
end
"""


@dataclass(frozen=True)
class WrkRun:
    """One wrk result: throughput and latency percentiles."""

    requests_per_s: float
    p50_ms: float
    p99_ms: float


def free_port() -> int:
    """A port nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def pinned(command: list[str], cpus: str | None) -> list[str]:
    """`command` run on `cpus` (taskset syntax), or anywhere for None."""
    return command if cpus is None else ["taskset", "-c", cpus, *command]


def _milliseconds(text: str) -> float:
    found = re.fullmatch(r"([\d.]+)(us|ms|s)", text)
    if found is None:
        raise RuntimeError(f"cannot read the latency {text!r}")
    return float(found.group(1)) * _MS_PER_UNIT[found.group(2)]


def parse_wrk(output: str) -> WrkRun:
    """Requests/s and the 50 % and 99 % latencies from `wrk --latency` output."""
    latency = dict(re.findall(r"^\s+(50|99)%\s+([\d.]+\w+)\s*$", output, re.MULTILINE))
    rate = re.search(r"^Requests/sec:\s+([\d.]+)", output, re.MULTILINE)
    if rate is None or set(latency) != {"50", "99"}:
        raise RuntimeError(f"cannot read wrk's output:\n{output}")
    return WrkRun(float(rate.group(1)), _milliseconds(latency["50"]), _milliseconds(latency["99"]))


def wrk_command(
    url: str, duration_s: float, cpus: str | None, threads: int, script: Path | None = None
) -> list[str]:
    """The wrk command line every row uses (with a Lua `script`, for the releasing rows)."""
    command = ["wrk", f"-t{threads}", f"-c{CONNECTIONS}", f"-d{duration_s:g}s", "--latency"]
    if script is not None:
        command += ["-s", str(script)]
    return pinned([*command, url], cpus)


def wrk(url: str, duration_s: float, cpus: str | None, threads: int, script: Path | None = None) -> WrkRun:
    """One wrk run against `url`."""
    command = wrk_command(url, duration_s, cpus, threads, script)
    done = subprocess.run(command, capture_output=True, text=True, check=True, timeout=duration_s + 30)
    return parse_wrk(done.stdout)


def release_script(folder: Path) -> Path:
    """RELEASE_SCRIPT written to `folder`, admitting at ADMIT_PATH."""
    path = folder / "admit-release.lua"
    path.write_text(RELEASE_SCRIPT % ADMIT_PATH)
    return path


def wait_listening(port: int, timeout_s: float = 15.0) -> None:
    """Return once 127.0.0.1:`port` accepts connections."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        except OSError:
            time.sleep(0.05)
        else:
            return
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout_s} s")


@contextmanager
def running(command: list[str], port: int) -> Iterator[subprocess.Popen[bytes]]:
    """A server process for the length of the block; stopped with SIGTERM, then killed."""
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_listening(port)
        yield process
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


def gpuwatch_command(
    port: int, interval_s: float, cpus: str | None, max_slots: int | None = None
) -> list[str]:
    """`gpuwatch serve` on 8 simulated H100s, HTTP only; `max_slots` replaces the policy's cap."""
    command = [sys.executable, "-m", "gpuwatch", "serve", "--source=sim:8xH100", f"--interval={interval_s:g}"]
    command += [f"--web.listen-address=127.0.0.1:{port}", "--agent.listen-address=", "--state-dir="]
    if max_slots is not None:
        command.append(f"--policy.set=max_slots={max_slots}")
    return pinned(command, cpus)


def nginx_command(port: int, workers: str, folder: Path, cpus: str | None) -> list[str]:
    """Nginx with bench/nginx-admit.conf filled in, and `workers` worker processes."""
    config = (REPO_ROOT / "bench" / "nginx-admit.conf").read_text()
    path = folder / f"nginx-{workers}.conf"
    path.write_text(config.replace("@PORT@", str(port)).replace("@DIR@", str(folder)))
    return pinned([NGINX, "-c", str(path), "-p", str(folder), "-g", f"worker_processes {workers};"], cpus)


def measure(
    command: list[str], port: int, args: argparse.Namespace, wrk_cpus: str | None, script: Path | None = None
) -> WrkRun:
    """Median of `args.repeat` wrk runs after a 2 s warm-up."""
    url = f"http://127.0.0.1:{port}{ADMIT_PATH}"
    with running(command, port):
        wrk(url, 2, wrk_cpus, args.threads, script)
        runs = [wrk(url, args.duration, wrk_cpus, args.threads, script) for _ in range(args.repeat)]
    return median_run(runs)


def median_run(runs: list[WrkRun]) -> WrkRun:
    """Each figure's median over `runs`."""
    return WrkRun(
        statistics.median(run.requests_per_s for run in runs),
        statistics.median(run.p50_ms for run in runs),
        statistics.median(run.p99_ms for run in runs),
    )


def _read_body(sock: socket.socket) -> bytes:
    """The body of one response read from a keep-alive connection."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, body = data.split(b"\r\n\r\n", 1)
    length = re.search(rb"Content-Length: (\d+)", head)
    if length is None:
        raise RuntimeError(f"no Content-Length in {head!r}")
    while len(body) < int(length.group(1)):
        body += sock.recv(65536)
    return body


def freshness_ms(port: int, seconds: float) -> list[float]:
    """Per new snapshot: ms from its `taken_at` to the first /v1/state answer that shows it."""
    sequence_re, taken_re = re.compile(rb'"sequence":(\d+)'), re.compile(rb'"taken_at":([\d.]+)')
    delays: list[float] = []
    last = None
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            sock.sendall(b"GET /v1/state HTTP/1.1\r\nHost: bench\r\n\r\n")
            body = _read_body(sock)
            seen = time.time()
            sequence, taken = sequence_re.search(body), taken_re.search(body)
            if sequence is None or taken is None:
                raise RuntimeError("/v1/state has no sequence or taken_at")
            if last is not None and int(sequence.group(1)) == last + 1:
                delays.append((seen - float(taken.group(1))) * 1e3)
            last = int(sequence.group(1))
    return delays


def measure_freshness(
    args: argparse.Namespace, server_cpus: str | None, wrk_cpus: str | None
) -> dict[str, list[float]]:
    """Freshness delays with gpuwatch sampling every 0.1 s, idle and while wrk loads /v1/admit."""
    port = free_port()
    results = {}
    with running(gpuwatch_command(port, FRESHNESS_INTERVAL_S, server_cpus), port):
        time.sleep(1)
        results["idle"] = freshness_ms(port, args.freshness)
        url = f"http://127.0.0.1:{port}{ADMIT_PATH}"
        command = wrk_command(url, args.freshness + 2, wrk_cpus, args.threads)
        load = subprocess.Popen(command, stdout=subprocess.DEVNULL)
        try:
            time.sleep(1)
            results["under wrk load"] = freshness_ms(port, args.freshness)
        finally:
            load.wait(args.freshness + 30)
    return results


def percentile(values: list[float], fraction: float) -> float:
    """The value below which `fraction` of `values` lie (nearest rank)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def print_table(rows: dict[str, WrkRun]) -> None:
    """The throughput and latency table, and the verdicts on the targets.

    Each gpuwatch row is set against nginx with one worker under the same wrk command (the
    releasing row against nginx under the same script).
    """
    print(f"\n{'server':<34}{'req/s':>12}{'p50 ms':>10}{'p99 ms':>10}")
    for name, run in rows.items():
        print(f"{name:<34}{run.requests_per_s:>12,.0f}{run.p50_ms:>10.3f}{run.p99_ms:>10.3f}")
    for name, yardstick in (
        (_GPUWATCH, _NGINX_ONE),
        (_GPUWATCH_TAKING, _NGINX_ONE),
        (_GPUWATCH_RELEASING, _NGINX_SCRIPTED),
    ):
        ours, theirs = rows[name], rows[yardstick]
        ratio = ours.requests_per_s / theirs.requests_per_s
        ratio_verdict = "ok" if ratio >= TARGET_THROUGHPUT_RATIO else "MISSED"
        p99_verdict = "ok" if ours.p99_ms <= TARGET_P99_MS else "MISSED"
        print(f"\n{name} / {yardstick}: {ratio:.2f} (target >= {TARGET_THROUGHPUT_RATIO}) {ratio_verdict}")
        print(
            f"{name} p99: {ours.p99_ms:.3f} ms, {ours.p99_ms / theirs.p99_ms:.1f}x nginx's "
            f"(target <= {TARGET_P99_MS} ms) {p99_verdict}"
        )


def print_freshness(results: dict[str, list[float]]) -> None:
    """The freshness table."""
    target = f"target p99 <= {TARGET_FRESHNESS_MS} ms"
    print(f"\nsample -> API delay at --interval {FRESHNESS_INTERVAL_S:g} ({target})")
    print(f"{'case':<20}{'samples':>9}{'p50 ms':>10}{'p99 ms':>10}{'max ms':>10}")
    for case, delays in results.items():
        p50, p99 = percentile(delays, 0.5), percentile(delays, 0.99)
        verdict = "ok" if p99 <= TARGET_FRESHNESS_MS else "MISSED"
        print(f"{case:<20}{len(delays):>9}{p50:>10.2f}{p99:>10.2f}{max(delays):>10.2f}  {verdict}")


def main() -> None:
    """Measure and print both tables."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per wrk run (default 10)")
    parser.add_argument(
        "--repeat", type=int, default=3, help="wrk runs per server; medians shown (default 3)"
    )
    parser.add_argument(
        "--freshness", type=float, default=20.0, help="seconds of polling per case (default 20)"
    )
    parser.add_argument("--threads", type=int, default=2, help="wrk threads (default 2)")
    parser.add_argument("--pin", action="store_true", help="servers on CPU 0, wrk on the other CPUs")
    args = parser.parse_args()
    cpus = os.cpu_count() or 1
    server_cpus, wrk_cpus = ("0", f"1-{cpus - 1}") if args.pin and cpus > 1 else (None, None)
    print(
        f"wrk -t{args.threads} -c{CONNECTIONS} -d{args.duration:g}s --latency {ADMIT_PATH}, median of "
        f"{args.repeat}; {cpus} CPUs; servers pinned to CPU 0: {server_cpus is not None}"
    )
    rows = {}
    with tempfile.TemporaryDirectory(prefix="gpuwatch-bench-") as folder:
        script = release_script(Path(folder))
        port = free_port()
        rows[_GPUWATCH] = measure(gpuwatch_command(port, 1.0, server_cpus), port, args, wrk_cpus)
        port = free_port()
        taking = gpuwatch_command(port, 1.0, server_cpus, TAKING_MAX_SLOTS)
        rows[_GPUWATCH_TAKING] = measure(taking, port, args, wrk_cpus)
        port = free_port()
        releasing = gpuwatch_command(port, 1.0, server_cpus, TAKING_MAX_SLOTS)
        rows[_GPUWATCH_RELEASING] = measure(releasing, port, args, wrk_cpus, script)
        for workers in ("1", "auto"):
            port = free_port()
            command = nginx_command(port, workers, Path(folder), server_cpus)
            rows[f"nginx worker_processes {workers}"] = measure(command, port, args, wrk_cpus)
        port = free_port()
        command = nginx_command(port, "1", Path(folder), server_cpus)
        rows[_NGINX_SCRIPTED] = measure(command, port, args, wrk_cpus, script)
    print_table(rows)
    print_freshness(measure_freshness(args, server_cpus, wrk_cpus))


if __name__ == "__main__":
    main()
