"""The ASGI app the middleware tests serve with uvicorn: /generate needs a GPU, /health does not.

GPUWATCH_URL says where gpuwatch is; GPUWATCH_FAIL_OPEN=1 admits when it cannot be asked.
"""

from __future__ import annotations

import json
import os

from gpuwatch.asgi import GpuwatchAdmission

lifespan = {"started": False}


async def _run_lifespan(receive, send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            lifespan["started"] = True
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def generator(scope, receive, send) -> None:
    """Answers /generate with the GPU gpuwatch chose, /lifespan with whether startup ran, else ok."""
    if scope["type"] == "lifespan":
        await _run_lifespan(receive, send)
        return
    if scope["path"] == "/generate":
        admission = scope["state"]["gpuwatch"]
        body = json.dumps({"gpu": admission.gpu, "fallback": admission.fallback}).encode()
    elif scope["path"] == "/lifespan":
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
    paths=["/generate"],
)
