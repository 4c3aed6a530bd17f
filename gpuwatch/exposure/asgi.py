"""ASGI middleware: 503 + Retry-After while gpuwatch sheds a request's class; leases released when done."""

from __future__ import annotations

import asyncio
import json
import logging
import math
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any

from gpuwatch.exposure.client import (
    AdmitResult,
    GpuwatchClient,
    GpuwatchRequestError,
    checked_duration,
    shown,
)
from gpuwatch.policy.admission import UnknownPriorityError, parse_priority
from gpuwatch.policy.decision import PriorityClass

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
NeedsGpu = Callable[[Scope], bool]

# Where the admission answer goes for the app: `request.state.gpuwatch` in Starlette/FastAPI.
STATE_KEY = "gpuwatch"
# The messages after which the server has the whole response: the last body part, or a file sent whole.
_BODY = "http.response.body"
_PATHSEND = "http.response.pathsend"

log = logging.getLogger(__name__)


class GpuwatchAdmission:
    """Holds back HTTP requests that need a GPU while gpuwatch sheds their priority class.

    `client`, or `url` plus an explicit `fail_open` (what to do when gpuwatch does not answer),
    says whom to ask. The class comes from the `class_header` request header (default
    `x-priority-class`), else `default_class`; set that header in a trusted layer (gateway, auth
    middleware), as a client that sets its own can claim `critical`. `paths` (URL path prefixes)
    or `needs_gpu` (a predicate on the ASGI scope) picks the requests that need a GPU; without
    either, every HTTP request does. `expected_s`: how long the GPU work of one request runs, s
    (None: gpuwatch plans with what it learned or was configured with). Admitted requests reach
    the app with the AdmitResult (which names the GPU to use, and the lease) in
    `scope["state"]["gpuwatch"]`. The lease is released as soon as the response has been sent
    (its last body part), the client has gone (`http.disconnect`), or the app has raised or
    returned, whichever comes first, so the slot comes back when the job ends, not at its
    deadline. Lifespan and websocket scopes pass through untouched. Needs an asyncio event loop
    (uvicorn, hypercorn's asyncio worker).
    """

    def __init__(  # noqa: PLR0913 -- every option is keyword-only and has a default
        self,
        app: ASGIApp,
        *,
        client: GpuwatchClient | None = None,
        url: str | None = None,
        fail_open: bool | None = None,
        class_header: str = "x-priority-class",
        default_class: str = PriorityClass.DEFAULT,
        paths: Iterable[str] | None = None,
        needs_gpu: NeedsGpu | None = None,
        expected_s: float | None = None,
    ) -> None:
        self._app = app
        self._client = _client_from(client, url, fail_open=fail_open)
        try:
            self._expected_s = checked_duration(expected_s)
        except GpuwatchRequestError as exc:
            raise ValueError(str(exc)) from None
        self._class_header = class_header.lower().encode("latin-1")
        try:
            self._default_class = parse_priority(default_class).value
        except ValueError as exc:
            raise ValueError(f"default_class: {exc}") from None
        self._needs_gpu = _needs_gpu_from(paths, needs_gpu)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the request on, or answer it here when it needs a GPU and gpuwatch says wait."""
        if scope["type"] != "http" or not self._needs_gpu(scope):
            await self._app(scope, receive, send)
            return
        try:
            priority = parse_priority(self._class_of(scope)).value
            result = await self._admit(priority)
        except (UnknownPriorityError, GpuwatchRequestError) as exc:
            await _respond_json(send, 400, {"error": str(exc)}, [])
            return
        if not result.admitted:
            await _respond_held_back(send, result, priority)
            return
        if result.lease is None:  # a fallback (fail_open) or a gpuwatch that hands out no leases
            await self._app(_with_admission(scope, result), receive, send)
            return
        ending = _LeaseEnd(self._client, result.lease)

        async def receive_watching() -> Message:
            message = await receive()
            if message["type"] == "http.disconnect":
                ending.start()
            return message

        async def send_watching(message: Message) -> None:
            await send(message)
            if _is_last(message):
                ending.start()

        try:
            await self._app(_with_admission(scope, result), receive_watching, send_watching)
        finally:
            await ending.finish()

    async def _admit(self, priority: str) -> AdmitResult:
        """The client's answer: from its cache at once, else from a worker thread (it blocks on I/O)."""
        expected_s = self._expected_s
        cached = self._client.admit_cached(priority, expected_s=expected_s)
        if cached is not None:
            return cached
        asking = asyncio.ensure_future(asyncio.to_thread(self._client.admit, priority, expected_s=expected_s))
        try:
            return await asyncio.shield(asking)
        except asyncio.CancelledError:
            # The request went away while gpuwatch was asked: the thread still takes the lease,
            # so it is released as soon as it comes back, rather than held to its deadline.
            asking.add_done_callback(self._release_unused)
            raise

    def _release_unused(self, asking: asyncio.Future[AdmitResult]) -> None:
        """Release the lease an admission nobody waits for any more took, if it took one."""
        if asking.cancelled() or asking.exception() is not None:
            return
        lease = asking.result().lease
        if lease is not None:
            asyncio.get_running_loop().run_in_executor(None, _LeaseEnd(self._client, lease).release_now)

    def _class_of(self, scope: Scope) -> str:
        """The request's class header as sent, else the default class."""
        for name, value in scope.get("headers", ()):
            if name == self._class_header:
                return str(value.decode("latin-1"))
        return self._default_class


class _LeaseEnd:
    """Releases one lease once, in a worker thread (the client blocks on I/O), when the request is over."""

    def __init__(self, client: GpuwatchClient, lease: str) -> None:
        self._client = client
        self._lease = lease
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Begin the release, unless it has begun: the response went out, or the client left."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(asyncio.to_thread(self._release))

    async def finish(self) -> None:
        """Begin the release if nothing did, and wait for it, so the request ends with its lease."""
        self.start()
        if self._task is not None:
            # Shielded: a request cancelled now still releases (the thread runs to the end anyway).
            await asyncio.shield(self._task)

    def release_now(self) -> None:
        """Release the lease on this thread (a worker's: it blocks on I/O)."""
        self._release()

    def _release(self) -> None:
        try:
            self._client.release(self._lease)  # logs what it could not do; the deadline ends it then
        except GpuwatchRequestError as exc:
            log.error("gpuwatch refused to release lease %s: %s", shown(self._lease), exc)  # noqa: TRY400 - its answer says it all


def _is_last(message: Message) -> bool:
    """Whether the server has the whole response once `message` is sent."""
    kind = message["type"]
    return (kind == _BODY and not message.get("more_body", False)) or kind == _PATHSEND


def _client_from(client: GpuwatchClient | None, url: str | None, *, fail_open: bool | None) -> GpuwatchClient:
    if (client is None) == (url is None):
        raise ValueError("pass either client= or url= (with fail_open=True or False)")
    if client is not None:
        return client
    if fail_open is None:
        raise ValueError("with url=, say fail_open=True or False: what to do when gpuwatch does not answer")
    return GpuwatchClient(str(url), fail_open=fail_open)


def _needs_gpu_from(paths: Iterable[str] | None, needs_gpu: NeedsGpu | None) -> NeedsGpu:
    if paths is not None and needs_gpu is not None:
        raise ValueError("pass paths= or needs_gpu=, not both")
    if needs_gpu is not None:
        return needs_gpu
    if paths is None:
        return lambda _scope: True
    prefixes = tuple(paths)
    return lambda scope: str(scope.get("path", "")).startswith(prefixes)


def _with_admission(scope: Scope, result: AdmitResult) -> Scope:
    """A copy of the scope whose `state` carries the answer; the server's own state is not touched."""
    return {**scope, "state": {**scope.get("state", {}), STATE_KEY: result}}


async def _respond_held_back(send: Send, result: AdmitResult, priority: str) -> None:
    """503 with Retry-After (whole seconds, at least 1) and gpuwatch's state, reason and pressure."""
    retry_after_s = max(1, math.ceil(result.retry_after_s or 1))
    headers = [(b"retry-after", str(retry_after_s).encode())]
    signal = {
        b"x-gpuwatch-state": result.state or "",  # None: gpuwatch gave no answer
        b"x-gpuwatch-reason": result.reason,
        b"x-gpuwatch-pressure": "" if result.pressure is None else f"{result.pressure:.3f}",
    }
    headers += [(name, value.encode("latin-1", "replace")) for name, value in signal.items() if value]
    body = {
        "error": "gpuwatch_unreachable" if result.fallback else "gpu_busy",
        "class": priority,
        "state": result.state,
        "reason": result.reason,
        "retry_after_s": retry_after_s,
    }
    await _respond_json(send, 503, body, headers)


async def _respond_json(
    send: Send, status: int, body: dict[str, Any], headers: list[tuple[bytes, bytes]]
) -> None:
    payload = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
                (b"cache-control", b"no-store"),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})
