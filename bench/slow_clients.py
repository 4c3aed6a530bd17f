"""`/v1/admit` under wrk while 500 clients sit idle or send their requests a byte at a time.

Run: .venv/bin/python bench/slow_clients.py [--clients 500] [--duration 10] [--repeat 3] [--pin]
Starts `gpuwatch serve --source sim:8xH100 --interval 1` and runs `wrk -t1 -c16 --latency` on
/v1/admit three ways: alone; beside --clients idle connections (connected, never a byte);
and beside --clients byte-at-a-time clients (each sends one byte of a request every second;
the daemon drops a request not done in 10 s, and the client connects again). The slow clients
run in their own process. Medians over --repeat runs; the target is an admit p99 of at most
5 ms with the slow clients, and the table shows it beside the run without them. --pin puts
gpuwatch on CPU 0, and wrk and the slow clients on the other CPUs, as bench/admit.py does.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time

from admit import WrkRun, free_port, gpuwatch_command, median_run, pinned, running, wrk

TARGET_P99_MS = 5.0
REQUEST = b"GET /v1/admit?class=default HTTP/1.1\r\nHost: slow\r\nX-Padding: " + b"x" * 64 + b"\r\n\r\n"


async def hold(port: int, count: int, mode: str, seconds: float) -> None:
    """Keep `count` connections open for `seconds`: silent, or trickling a request byte by byte."""

    async def one(index: int) -> None:
        await asyncio.sleep(index * 0.002)  # connect gradually: a burst of SYNs is not the point
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                await asyncio.sleep(0.5)
                continue
            try:
                for byte in REQUEST if mode == "trickle" else b"":
                    writer.write(bytes([byte]))
                    await writer.drain()
                    await asyncio.sleep(1.0)
                    if time.monotonic() > deadline:
                        break
                await asyncio.wait_for(reader.read(), timeout=max(0.0, deadline - time.monotonic()))
            except (OSError, TimeoutError):
                pass
            finally:
                writer.close()

    await asyncio.gather(*(one(i) for i in range(count)))


def measure(port: int, clients: int, mode: str, args: argparse.Namespace, cpus: str | None) -> WrkRun:
    """Median wrk figures on /v1/admit with `clients` slow clients of `mode` held meanwhile."""
    url = f"http://127.0.0.1:{port}/v1/admit?class=default"
    holder = None
    if mode != "none":
        seconds = (args.duration + 3) * args.repeat + 10
        command = [sys.executable, __file__, "--hold", mode, "--port", str(port), "--clients", str(clients),
                   "--seconds", str(seconds)]  # fmt: skip
        holder = subprocess.Popen(pinned(command, cpus))
        time.sleep(clients * 0.002 + 2.0)  # all connected, the trickle under way
    try:
        runs = [wrk(url, args.duration, cpus, 1) for _ in range(args.repeat)]
    finally:
        if holder is not None:
            holder.terminate()
            holder.wait(10)
    return median_run(runs)


def main() -> None:
    """Parse the arguments, hold slow clients (in the child) or run the table (in the parent)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=500)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--pin", action="store_true", help="gpuwatch on CPU 0, the clients elsewhere")
    parser.add_argument("--hold", choices=("idle", "trickle"), help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--seconds", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.hold is not None:
        asyncio.run(hold(args.port, args.clients, args.hold, args.seconds))
        return
    port = free_port()
    rows: dict[str, WrkRun] = {}
    server_cpus, client_cpus = ("0", f"1-{max(1, (os.cpu_count() or 2) - 1)}") if args.pin else (None, None)
    with running(gpuwatch_command(port, 1.0, server_cpus), port):
        wrk(f"http://127.0.0.1:{port}/v1/admit?class=default", 2, client_cpus, 1)  # warm-up
        for mode, label in (
            ("none", "alone"),
            ("idle", f"{args.clients} idle connections"),
            ("trickle", f"{args.clients} byte-at-a-time clients"),
        ):
            rows[label] = measure(port, args.clients, mode, args, client_cpus)
    alone = rows["alone"]
    print(f"/v1/admit, wrk -t1 -c16, {args.duration:g} s x {args.repeat} (medians)")
    print(f"{'beside':34} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'p99 vs alone':>13}")
    for label, run in rows.items():
        ratio = run.p99_ms / alone.p99_ms if alone.p99_ms else float("nan")
        print(f"{label:34} {run.requests_per_s:9.0f} {run.p50_ms:8.2f} {run.p99_ms:8.2f} {ratio:12.2f}x")
    worst = max(run.p99_ms for run in rows.values())
    verdict = "met" if worst <= TARGET_P99_MS else "MISSED"
    print(f"target: p99 <= {TARGET_P99_MS:g} ms with the slow clients: {verdict} (worst {worst:.2f} ms)")


if __name__ == "__main__":
    main()
