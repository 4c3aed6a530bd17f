"""One HTTP/1.1 connection: httptools parses, the router answers, with keep-alive and pipelining.

Responses to requests that arrive together (pipelined) are collected while the chunk is parsed
and written with one call, in order. The router may answer with a future (a scrape rendered on
a worker thread, a password checked with bcrypt); answers after it wait for it, so responses
always leave in request order, and the connection reads no further requests meanwhile. Limits:
request target 8 KiB (414), header fields 16 KiB (431); anything llhttp cannot parse gets 400;
each of those closes the connection.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from dataclasses import dataclass
from typing import Protocol, cast

import httptools

from gpuwatch.exposure.http.responses import Response, error_response

log = logging.getLogger(__name__)

MAX_TARGET_BYTES = 8 * 1024
MAX_HEADER_BYTES = 16 * 1024
# A head still incomplete after this many bytes has a field too long to finish (slowloris or a
# huge single header); the slack covers the request line and the CRLFs.
_MAX_HEAD_BYTES = MAX_TARGET_BYTES + MAX_HEADER_BYTES + 1024
_CLASS_HEADER = b"x-gpuwatch-class"
_EXPECTED_HEADER = b"x-gpuwatch-expected-seconds"
_AUTHORIZATION = b"authorization"
_ACCEPT_ENCODING = b"accept-encoding"
_HEAD = b"HEAD"
_CRLF = b"\r\n"
_CLOSE = b"Connection: close\r\n"
_KEEP_ALIVE = b"Connection: keep-alive\r\n"

TOO_LONG_TARGET = error_response(414, "uri_too_long", f"the request target is over {MAX_TARGET_BYTES} bytes")
TOO_LARGE_HEADERS = error_response(
    431, "headers_too_large", f"the request header fields are over {MAX_HEADER_BYTES} bytes"
)
MALFORMED = error_response(400, "malformed_request", "the request is not valid HTTP/1.1")
INTERNAL_ERROR = error_response(500, "internal_error", "gpuwatch failed to answer; see its log")


Answer = Response | asyncio.Future[Response]


class RequestHeaders:
    """The header fields the routes read, as sent (None: absent); one per request."""

    __slots__ = ("accept_encoding", "authorization", "class_header", "expected_header")

    def __init__(self) -> None:
        self.class_header: bytes | None = None  # X-GPUWatch-Class
        self.expected_header: bytes | None = None  # X-GPUWatch-Expected-Seconds
        self.authorization: bytes | None = None
        self.accept_encoding: bytes | None = None


class Router(Protocol):
    """Answers one parsed request."""

    def respond(self, method: bytes, target: bytes, headers: RequestHeaders) -> Answer:
        """The response to `method target` with those header fields, or a future of it."""
        ...


@dataclass(slots=True)
class _Waiting:
    """A response not sent yet because it, or one before it, is not ready."""

    answer: Answer
    connection: bytes  # the Connection header line it goes out with, or b""
    head_only: bool  # a HEAD request: no body


class Refused(Exception):  # noqa: N818 - a signal out of the parser callbacks, not an error
    """Raised in a parser callback to stop parsing and answer `response`, then close."""

    def __init__(self, response: Response | None) -> None:
        super().__init__()
        self.response = response


class HttpProtocol(asyncio.Protocol):
    """Serves requests on one connection; `date` gives the current `Date:` line."""

    def __init__(self, router: Router, date: DateSource, connections: set[HttpProtocol]) -> None:
        self._router = router
        self._date = date
        self._connections = connections
        self._transport: asyncio.Transport | None = None
        self._parser = httptools.HttpRequestParser(self)
        self._out: list[bytes] = []
        self._waiting: deque[_Waiting] = deque()
        self._target = b""
        self._headers = RequestHeaders()
        self._writing_paused = False
        self._reading_paused = False
        self._header_bytes = 0
        self._head_bytes = 0
        self._in_head = False
        self._closing = False
        self.in_message = False  # a request has begun and is not answered yet
        self.activity = 0  # chunks received; the server's sweep finds idle connections by it
        self.swept_activity = 0  # `activity` at the last sweep
        self.idle_sweeps = 0  # sweeps (one a second) since the last chunk
        self.message_sweeps = 0  # sweeps since the request began: a trickled request is dropped too

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Track the connection for idle sweeps and shutdown."""
        # A TCP server's transport; uvloop's is not an asyncio.Transport subclass, so cast.
        self._transport = cast("asyncio.Transport", transport)
        self._connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:  # noqa: ARG002 - asyncio's signature
        """Forget the connection; answers still being made are dropped when they come."""
        self._connections.discard(self)
        self._closing = True
        self._transport = None

    def pause_writing(self) -> None:
        """The client is not reading: stop reading its requests until it does."""
        self._writing_paused = True
        self._update_reading()

    def resume_writing(self) -> None:
        """The client reads again."""
        self._writing_paused = False
        self._update_reading()

    def _update_reading(self) -> None:
        """Read requests only while the client reads answers and none is waiting to be made."""
        transport = self._transport
        pause = self._writing_paused or bool(self._waiting)
        if transport is None or pause == self._reading_paused or (self._closing and not pause):
            return
        self._reading_paused = pause
        if pause:
            transport.pause_reading()
        else:
            transport.resume_reading()

    def data_received(self, data: bytes) -> None:
        """Parse a chunk; answer every request completed in it with one write."""
        self.activity += 1
        if self._in_head:
            self._head_bytes += len(data)
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserCallbackError as exc:
            refused = exc.__context__
            if isinstance(refused, Refused):
                self._refuse(refused.response)
            else:
                log.exception("answering a request failed", exc_info=refused or exc)
                self._refuse(INTERNAL_ERROR)
        except httptools.HttpParserUpgrade:
            self._refuse(None)  # answered as plain HTTP with Connection: close; the rest is not HTTP
        except httptools.HttpParserError:
            self._refuse(MALFORMED)
        else:
            if self._in_head and self._head_bytes > _MAX_HEAD_BYTES:
                self._refuse(TOO_LARGE_HEADERS)
        self._flush()

    @property
    def waiting(self) -> bool:
        """Whether an answer is still being made (the connection is busy, not idle)."""
        return bool(self._waiting)

    def close_when_idle(self) -> None:
        """Shutdown: close now if between requests, else right after the answers owed."""
        self._closing = True
        if not self.in_message and not self._waiting and self._transport is not None:
            self._transport.close()

    def abort(self) -> None:
        """Drop the connection at once (a client that did not finish in time)."""
        if self._transport is not None:
            self._transport.abort()

    # httptools callbacks, in the order a request triggers them.

    def on_message_begin(self) -> None:
        """A request starts."""
        if self._closing:
            raise Refused(None)  # requests pipelined after a close are not answered
        self.in_message = self._in_head = True
        self.message_sweeps = 0
        self._target = b""
        self._headers = RequestHeaders()
        self._header_bytes = self._head_bytes = 0

    def on_url(self, url: bytes) -> None:
        """A piece of the request target (llhttp may deliver it in parts)."""
        self._target += url
        if len(self._target) > MAX_TARGET_BYTES:
            raise Refused(TOO_LONG_TARGET)

    def on_header(self, name: bytes, value: bytes) -> None:
        """One header field."""
        self._header_bytes += len(name) + len(value) + 4  # ": " and CRLF
        if self._header_bytes > MAX_HEADER_BYTES:
            raise Refused(TOO_LARGE_HEADERS)
        # Compared by length first: most fields are none of these, and lower() costs more.
        size = len(name)
        if size == len(_CLASS_HEADER) and name.lower() == _CLASS_HEADER:
            self._headers.class_header = value
        elif size == len(_AUTHORIZATION) and name.lower() == _AUTHORIZATION:
            self._headers.authorization = value
        elif size == len(_ACCEPT_ENCODING) and name.lower() == _ACCEPT_ENCODING:
            self._headers.accept_encoding = value
        elif size == len(_EXPECTED_HEADER) and name.lower() == _EXPECTED_HEADER:
            self._headers.expected_header = value

    def on_headers_complete(self) -> None:
        """The head is in; any body is read and ignored (no route takes one)."""
        self._in_head = False

    def on_message_complete(self) -> None:
        """Answer the request."""
        parser = self._parser
        method = parser.get_method()
        answer = self._router.respond(method, self._target, self._headers)
        # An Upgrade request is answered as plain HTTP (RFC 9110 §7.8 lets a server ignore the
        # upgrade), and the connection closed: what follows it would be another protocol.
        keep_alive = parser.should_keep_alive() and not self._closing and not parser.should_upgrade()
        if not keep_alive:
            connection = _CLOSE
            self._closing = True
        else:
            connection = _KEEP_ALIVE if parser.get_http_version() == "1.0" else b""
        if type(answer) is Response and not self._waiting:
            body = b"" if method == _HEAD else answer.body
            self._out.append(answer.head + self._date.line + connection + _CRLF + body)
        else:
            self._wait_for(answer, connection, head_only=method == _HEAD)
        self.in_message = False

    def _refuse(self, response: Response | None) -> None:
        """Answer an unusable request (when `response` is given) and close.

        Bytes after a request that closes the connection are not answered at all (llhttp
        reports them as an error).
        """
        if response is not None and not self._closing:
            if self._waiting:
                self._wait_for(response, _CLOSE, head_only=False)
            else:
                self._out.append(response.head + self._date.line + _CLOSE + _CRLF + response.body)
        self._closing = True
        self.in_message = False

    def _wait_for(self, answer: Answer, connection: bytes, *, head_only: bool) -> None:
        """Queue an answer behind those not sent yet; a future is sent when it is done."""
        self._waiting.append(_Waiting(answer, connection, head_only))
        if not isinstance(answer, Response):
            answer.add_done_callback(self._answered)

    def _answered(self, _answer: asyncio.Future[Response]) -> None:
        self._flush()

    def _release_ready(self) -> None:
        """Move the answers at the head of the queue that are ready into the output, in order."""
        while self._waiting:
            waiting = self._waiting[0]
            answer = waiting.answer
            if isinstance(answer, Response):
                response = answer
            elif not answer.done():
                return
            elif answer.cancelled():  # shutting down
                response = INTERNAL_ERROR
            elif (error := answer.exception()) is not None:
                log.error("answering a request failed", exc_info=error)
                response = INTERNAL_ERROR
            else:
                response = answer.result()
            self._waiting.popleft()
            body = b"" if waiting.head_only else response.body
            self._out.append(response.head + self._date.line + waiting.connection + _CRLF + body)

    def _flush(self) -> None:
        transport = self._transport
        if transport is None:
            self._out.clear()
            self._waiting.clear()
            return
        if self._waiting:
            self._release_ready()
        if self._out:
            transport.write(self._out[0] if len(self._out) == 1 else b"".join(self._out))
            self._out.clear()
        if self._closing and not self._waiting:
            transport.close()
        elif self._waiting or self._reading_paused:
            self._update_reading()


class DateSource(Protocol):
    """Holds the `Date:` header line for the current second."""

    line: bytes
