"""The ASGI app the middleware tests serve with uvicorn: /generate, /stream, /hang and /boom need a GPU.

GPUWATCH_URL says where gpuwatch is; GPUWATCH_FAIL_OPEN=1 admits when it cannot be asked.
LEASE_LOG (a file path) gets one line per lease the app was handed, so a test can ask gpuwatch
about each of them afterwards.
"""

from __future__ import annotations

import asyncio
import json
import os
from urllib.parse import parse_qs

from gpuwatch.asgi import GpuwatchAdmission

lifespan = {"started": False}
# How long /hang goes on after its client left, s: longer than a test waits for the release, so
# the release a test sees came from the disconnect, not from the app returning.
HANG_AFTER_DISCONNECT_S = 8.0


async def _run_lifespan(receive, send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            lifespan["started"] = True
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


def _log_lease(scope) -> str | None:
    lease = scope["state"]["gpuwatch"].lease
    if lease is not None and "LEASE_LOG" in os.environ:
        with open(os.environ["LEASE_LOG"], "a", encoding="ascii") as log:  # noqa: PTH123 - one line
            log.write(lease + "\n")
    return lease


async def _start(send, status: int = 200) -> None:
    await send(
        {"type": "http.response.start", "status": status, "headers": [(b"content-type", b"text/plain")]}
    )


async def generator(scope, receive, send) -> None:
    """The routes the module's docstring names; /lifespan says whether startup ran; else ok."""
    if scope["type"] == "lifespan":
        await _run_lifespan(receive, send)
        return
    path = scope["path"]
    if path == "/generate":
        admission = scope["state"]["gpuwatch"]
        lease = _log_lease(scope)
        body = json.dumps({"gpu": admission.gpu, "fallback": admission.fallback, "lease": lease}).encode()
    elif path == "/stream":
        # The first part names the lease; the last comes `pause` seconds later.
        pause_s = float(parse_qs(scope["query_string"].decode())["pause"][0])
        await _start(send)
        await send(
            {"type": "http.response.body", "body": f"{_log_lease(scope)}\n".encode(), "more_body": True}
        )
        await asyncio.sleep(pause_s)
        await send({"type": "http.response.body", "body": b"done\n"})
        return
    elif path == "/hang":
        # Never answers: waits for the client to leave, then goes on working a while.
        _log_lease(scope)
        while (await receive())["type"] != "http.disconnect":
            pass
        await asyncio.sleep(HANG_AFTER_DISCONNECT_S)
        return
    elif path == "/boom":
        _log_lease(scope)
        raise RuntimeError("the app failed before answering")
    elif path == "/lifespan":
        body = json.dumps(lifespan).encode()
    else:
        body = b"ok"
    await send(
        {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]}
    )
    await send({"type": "http.response.body", "body": body})


app = GpuwatchAdmission(
    generator,
    url=os.environ["GPUWATCH_URL"],
    fail_open=os.environ.get("GPUWATCH_FAIL_OPEN") == "1",
    paths=["/generate", "/stream", "/hang", "/boom"],
    expected_s=5.0,
)
