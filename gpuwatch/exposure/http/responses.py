"""HTTP responses as ready bytes: a head (status line and headers) and a body, built once."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from email.utils import formatdate

from gpuwatch import __version__
from gpuwatch.exposure.documents import JsonDict, error_document

REASON_PHRASES = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    414: "URI Too Long",
    429: "Too Many Requests",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    503: "Service Unavailable",
}
JSON = "application/json"
# Characters that would end a header line or are not safe in a header value.
_UNSAFE_IN_HEADER = re.compile(r"[^\x20-\x7e]")

Headers = Sequence[tuple[str, str]]


@dataclass(frozen=True, slots=True)
class Response:
    """One response, ready to send.

    `head` holds the status line and the fixed headers, each ending in CRLF; the connection adds
    `Date`, maybe `Connection`, the blank line and the body.
    """

    status: int
    head: bytes
    body: bytes


def status_line(status: int) -> bytes:
    """`HTTP/1.1 200 OK` and its CRLF."""
    return f"HTTP/1.1 {status} {REASON_PHRASES[status]}\r\n".encode("ascii")


def with_status(response: Response, status: int) -> Response:
    """The same response under another status (the admit adapters differ only in that)."""
    headers = response.head.split(b"\r\n", 1)[1]
    return Response(status=status, head=status_line(status) + headers, body=response.body)


def header_value(text: str) -> str:
    """`text` made safe for a header value: printable ASCII only, no CR or LF."""
    return _UNSAFE_IN_HEADER.sub("?", text)


def build_response(status: int, content_type: str, body: bytes, headers: Headers = ()) -> Response:
    """A response with Content-Type, Content-Length and no-store caching plus `headers`."""
    lines = [
        f"HTTP/1.1 {status} {REASON_PHRASES[status]}",
        f"Server: gpuwatch/{__version__}",
        f"Content-Type: {content_type}",
        f"Content-Length: {len(body)}",
        # Every answer describes one instant; a cache replaying it would defeat backpressure.
        "Cache-Control: no-store",
        *(f"{name}: {header_value(value)}" for name, value in headers),
    ]
    return Response(status=status, head=("\r\n".join(lines) + "\r\n").encode("ascii"), body=body)


def json_bytes(document: object) -> bytes:
    """Compact JSON, one trailing newline so `curl` output ends cleanly."""
    return json.dumps(document, separators=(",", ":"), allow_nan=False).encode() + b"\n"


def json_response(status: int, document: JsonDict, headers: Headers = ()) -> Response:
    """`document` as a JSON response."""
    return build_response(status, JSON, json_bytes(document), headers)


def error_response(status: int, code: str, message: str, headers: Headers = ()) -> Response:
    """A JSON error naming a stable `code` and saying what is wrong."""
    return json_response(status, error_document(code, message), headers)


def date_line(now_s: float) -> bytes:
    """The `Date` header line (RFC 9110 IMF-fixdate) for Unix time `now_s`."""
    return f"Date: {formatdate(now_s, usegmt=True)}\r\n".encode("ascii")
