"""Ending a lease: `POST /v1/release?lease=ID` and `DELETE /v1/leases/ID` (DESIGN §3).

200 with the GPU and how long the lease was held; 404 for a lease that is unknown or already
ended (released, expired, or its GPU went out); 400 for an id that cannot be one gpuwatch hands
out, naming what is wrong. Only the holder of a lease knows its id, so only it can end it. A body
sent with the POST is read and ignored; a query string on the DELETE is ignored. No lease id is
logged: it is the only credential a lease has.
"""

from __future__ import annotations

from urllib.parse import parse_qsl, unquote

from gpuwatch.exposure.board import Board
from gpuwatch.exposure.http.responses import JSON, Response, build_response, error_response, json_bytes
from gpuwatch.exposure.leases import ID_LENGTH, Ended, well_formed

RELEASE_PATH = b"/v1/release"
LEASES_PREFIX = b"/v1/leases/"
LEASE_PARAMETER = "lease"
RELEASE_METHOD_NOT_ALLOWED = error_response(
    405, "method_not_allowed", "/v1/release answers POST", [("Allow", "POST")]
)
LEASE_METHOD_NOT_ALLOWED = error_response(
    405, "method_not_allowed", "/v1/leases/{lease} answers DELETE", [("Allow", "DELETE")]
)
NO_LEASE = error_response(404, "unknown_lease", "no such lease is open: it is unknown, or it has ended")
NO_BOOK = error_response(404, "unknown_lease", "this gpuwatch hands out no leases")
MISSING_LEASE = error_response(
    400, "missing_lease", "name the lease to release in the query string: POST /v1/release?lease=ID"
)
# The most of a bad id an error echoes back: enough to recognise it, not a whole pasted body.
_SHOWN_CHARS = 2 * ID_LENGTH
# `lease=` and an id, and nothing to decode: what every client sends, read without a parser.
_LEASE_IS = b"lease="
_PLAIN_QUERY = len(_LEASE_IS) + ID_LENGTH


class LeaseRoute:
    """Answers the release routes from the board's lease book."""

    def __init__(self, board: Board) -> None:
        self._board = board

    def release(self, method: bytes, query: bytes) -> Response:
        """`POST /v1/release?lease=ID`."""
        if method != b"POST":
            return RELEASE_METHOD_NOT_ALLOWED
        if (
            len(query) == _PLAIN_QUERY
            and query.startswith(b"lease=")
            and b"%" not in query
            and b"+" not in query
        ):
            return self._ended(query[6:].decode("latin-1"))
        values: dict[str, str] = {}
        for name, value in parse_qsl(query.decode("latin-1"), keep_blank_values=True):
            if name in values:
                return error_response(400, "repeated_parameter", f"{name} is given twice")
            values[name] = value
        lease_id = values.get(LEASE_PARAMETER)
        if lease_id is None:
            return MISSING_LEASE
        return self._ended(lease_id)

    def delete(self, method: bytes, path: bytes) -> Response:
        """`DELETE /v1/leases/ID` (`path` without its query)."""
        if method != b"DELETE":
            return LEASE_METHOD_NOT_ALLOWED
        # Percent-decoded as a query value is: a client that escapes every character still names
        # the same lease; an escaped slash decodes to one and is refused below.
        segment = unquote(path[len(LEASES_PREFIX) :].decode("latin-1"), encoding="latin-1")
        if "/" in segment:
            return _bad_lease(segment, "/v1/leases/{lease} takes one path segment, the lease id")
        return self._ended(segment)

    def _ended(self, lease_id: str) -> Response:
        if not well_formed(lease_id):
            return _bad_lease(lease_id, "it is not a lease id")
        book = self._board.book
        if book is None:
            return NO_BOOK
        ended = book.release(lease_id)
        if ended is None:
            return NO_LEASE
        return build_response(200, JSON, self._document(ended))

    def _document(self, ended: Ended) -> bytes:
        """The 200 body: the fields json.dumps would write, formatted directly (every release makes one)."""
        held = ended.held
        gpus = self._board.current.decision.gpus
        uuid = next((gpu.uuid for gpu in gpus if gpu.index == held.gpu), None)
        expected_s = held.lease.expected_s
        expected = "null" if expected_s is None else repr(round(expected_s, 3))
        # The id is URL-safe base64 and the uuid NVML's ASCII: neither needs escaping in JSON.
        return (
            f'{{"released":true,"lease":"{held.id}","class":"{held.lease.priority.value}",'
            f'"gpu":{{"index":{held.gpu},"uuid":{json_bytes(uuid).decode().strip()}}},'
            f'"held_s":{round(ended.held_s, 3)!r},"expected_s":{expected}}}\n'
        ).encode()


def _bad_lease(text: str, problem: str) -> Response:
    """400 naming what is wrong with `text` as a lease id."""
    shown = text if len(text) <= _SHOWN_CHARS else text[:_SHOWN_CHARS] + "..."
    return error_response(
        400,
        "bad_lease",
        f"lease {shown!r}: {problem}; gpuwatch's ids are {ID_LENGTH} characters of A-Z, a-z, 0-9, - and _",
    )
