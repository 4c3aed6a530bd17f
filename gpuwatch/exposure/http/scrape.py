"""Scrapes of the telemetry path: answered at once when the text is ready, else on a worker thread.

Normally the sampler thread has rendered the current decision already, and deflated it, and a
scrape costs the event loop some tens of microseconds: the live families, compressed on their
own when the scraper accepts gzip, as Prometheus does. Handing that to a thread would cost more:
the thread would wait for the GIL while the loop is busy answering /v1/admit. A scrape that finds
the decision not rendered yet (after the board expired a stale one) is answered from a worker
thread instead, so the loop never waits for a render; at most --web.max-requests of those are
in flight, and past that a scrape is answered 503 at once, as exporter-toolkit's promhttp
handler does.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import Executor
from typing import Protocol

from gpuwatch.exposure.http.responses import Response, build_response

TEXT = "text/plain; charset=utf-8"


class Exposition(Protocol):
    """What scrapes read."""

    def ready_body(self, *, gzipped: bool = False) -> bytes | None:
        """The exposition (gzip-compressed if `gzipped`) if it needs no rendering, else None; never waits."""
        ...

    def body(self, *, gzipped: bool = False) -> bytes:
        """The exposition (gzip-compressed if `gzipped`) as of now; may render (and wait for a render)."""
        ...


def accepts_gzip(accept_encoding: bytes | None) -> bool:
    """Whether an Accept-Encoding value takes gzip (and does not refuse it with q=0)."""
    if accept_encoding is None:
        return False
    for item in accept_encoding.lower().split(b","):
        coding, _, parameters = item.partition(b";")
        if coding.strip() in {b"gzip", b"*"}:
            quality = parameters.strip().removeprefix(b"q=")
            return not parameters.strip().startswith(b"q=") or _positive(quality)
    return False


def _positive(quality: bytes) -> bool:
    try:
        return float(quality) > 0
    except ValueError:
        return False


class Scrapes:
    """Answers scrapes with `exposition`'s text; `max_requests` 0 means no limit."""

    def __init__(
        self, exposition: Exposition, content_type: str, max_requests: int, executor: Executor
    ) -> None:
        self._exposition = exposition
        self._content_type = content_type
        self._max_requests = max_requests
        self._executor = executor
        self.in_flight = 0
        self._too_many = build_response(
            503, TEXT, f"Limit of concurrent requests reached ({max_requests}), try again later.\n".encode()
        )

    def answer(self, accept_encoding: bytes | None) -> Response | asyncio.Future[Response]:
        """The exposition, a future of it, or 503 past the limit; call on the event loop."""
        gzipped = accepts_gzip(accept_encoding)
        ready = self._exposition.ready_body(gzipped=gzipped)
        if ready is not None:
            return self._response(ready, gzipped=gzipped)
        if self._max_requests and self.in_flight >= self._max_requests:
            return self._too_many
        self.in_flight += 1
        loop = asyncio.get_running_loop()
        answer = loop.run_in_executor(self._executor, self._render, gzipped)
        answer.add_done_callback(self._finished)
        return answer

    def _finished(self, _answer: asyncio.Future[Response]) -> None:
        self.in_flight -= 1

    def _render(self, gzipped: bool) -> Response:  # noqa: FBT001 - run_in_executor passes it positionally
        return self._response(self._exposition.body(gzipped=gzipped), gzipped=gzipped)

    def _response(self, body: bytes, *, gzipped: bool) -> Response:
        headers = [("Vary", "Accept-Encoding")]
        if gzipped:
            headers.append(("Content-Encoding", "gzip"))
        return build_response(200, self._content_type, body, headers)
