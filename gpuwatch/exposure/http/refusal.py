"""Past `--web.max-connections`: each connection gets a 503 with Retry-After and is closed."""

from __future__ import annotations

import asyncio
from typing import cast

from gpuwatch.exposure.http.protocol import DateSource
from gpuwatch.exposure.http.responses import error_response

# Refused connections waiting for their request, at most this long, s: the answer goes after the
# request (or this delay), so the client reads it instead of a reset for writing to a closed socket.
_WAIT_FOR_REQUEST_S = 1.0
# Refused connections held at once; past this a connection is closed unanswered, so a flood cannot
# use up file descriptors while it waits for its 503.
MAX_REFUSING = 256


def refusal_bytes(max_connections: int, date: bytes) -> bytes:
    """The whole 503 answer, `Connection: close` included."""
    response = error_response(
        503,
        "too_many_connections",
        f"gpuwatch serves at most {max_connections} connections at once (--web.max-connections); "
        "try again shortly",
        [("Retry-After", "1")],
    )
    return response.head + date + b"Connection: close\r\n\r\n" + response.body


class RefusingProtocol(asyncio.Protocol):
    """Answers one 503 once the request starts arriving (or after a second), then closes."""

    def __init__(self, max_connections: int, date: DateSource, refusing: set[RefusingProtocol]) -> None:
        self._max_connections = max_connections
        self._date = date
        self._refusing = refusing
        self._transport: asyncio.Transport | None = None
        self._timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Wait briefly for the request; close at once when too many refusals are pending."""
        if len(self._refusing) >= MAX_REFUSING:
            transport.close()
            return
        self._refusing.add(self)
        self._transport = cast("asyncio.Transport", transport)
        self._timer = asyncio.get_running_loop().call_later(_WAIT_FOR_REQUEST_S, self._answer)

    def data_received(self, data: bytes) -> None:  # noqa: ARG002 - whatever was asked, the answer is 503
        """The request began: answer now."""
        self._answer()

    def connection_lost(self, exc: Exception | None) -> None:  # noqa: ARG002 - asyncio's signature
        """Nothing left to answer."""
        if self._timer is not None:
            self._timer.cancel()
        self._transport = None
        self._refusing.discard(self)

    def _answer(self) -> None:
        transport, self._transport = self._transport, None
        if self._timer is not None:
            self._timer.cancel()
        if transport is not None and not transport.is_closing():
            transport.write(refusal_bytes(self._max_connections, self._date.line))
            transport.close()
