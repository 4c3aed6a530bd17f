"""`/v1/drain`: the maintenance drains; GET reads them, POST and DELETE (admin API only) change them.

POST drains the node, or with `gpu=` (index or uuid) one GPU, with an optional `reason=`
(default "maintenance"). DELETE ends every drain, or with `gpu=` that GPU's. The state-changing
methods answer 403 unless `gpuwatch serve` runs with --web.enable-admin-api and the web config
names basic_auth_users (so the request was authenticated before it got here).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol
from urllib.parse import parse_qsl

from gpuwatch.exposure.board import Board
from gpuwatch.exposure.http.responses import Response, error_response, json_response
from gpuwatch.policy.drain import MAX_REASON_CHARS, Drains

DRAIN_PATH = b"/v1/drain"
DRAIN_METHODS = (b"GET", b"HEAD", b"POST", b"DELETE")
_PARAMETERS = ("gpu", "reason")
DEFAULT_REASON = "maintenance"

ADMIN_DISABLED = error_response(
    403,
    "admin_disabled",
    "state-changing routes are off: start gpuwatch serve with --web.enable-admin-api "
    "and basic_auth_users in --web.config.file",
)
ADMIN_UNAUTHENTICATED = error_response(
    403,
    "admin_needs_auth",
    "the admin API needs basic_auth_users in --web.config.file, and the web config in force names none",
)
BAD_REASON = error_response(
    400, "bad_reason", f"reason must be printable text of at most {MAX_REASON_CHARS} characters"
)
DRAIN_METHOD_NOT_ALLOWED = error_response(
    405,
    "method_not_allowed",
    "/v1/drain answers GET, HEAD, POST and DELETE",
    [("Allow", "GET, HEAD, POST, DELETE")],
)


class DrainControl(Protocol):
    """What holds the drains and lays them over the published decision (the daemon)."""

    def drains(self) -> Drains:
        """The drains in force."""
        ...

    def drain(self, gpu: int | None, reason: str) -> Drains:
        """Drain the node (None) or GPU `gpu`; the drains now in force."""
        ...

    def undrain(self, gpu: int | None) -> Drains:
        """End every drain (None) or GPU `gpu`'s; the drains now in force."""
        ...


# Whether the web config in force names basic_auth_users (it can change while serving).
AuthState = Callable[[], bool]
# The answer for a `gpu=` this node does not have: 404 or 400, as /v1/admit answers.
UnknownGpu = Callable[[str, tuple[object, ...]], Response]


class DrainRoute:
    """Answers `/v1/drain` from `control`; without one, no drain exists and none can be set."""

    def __init__(
        self,
        board: Board,
        control: DrainControl | None,
        *,
        admin: bool,
        authenticated: AuthState,
        unknown_gpu: UnknownGpu,
    ) -> None:
        self._board = board
        self._control = control
        self._admin = admin and control is not None
        self._authenticated = authenticated
        self._unknown_gpu = unknown_gpu

    def answer(self, method: bytes, query: bytes) -> Response:
        """The response to one request of `method` with `query`."""
        if method not in DRAIN_METHODS:
            return DRAIN_METHOD_NOT_ALLOWED
        if method in {b"GET", b"HEAD"}:
            return self._document(Drains() if self._control is None else self._control.drains())
        if not self._admin or self._control is None:
            return ADMIN_DISABLED
        if not self._authenticated():
            return ADMIN_UNAUTHENTICATED
        return self._change(self._control, method, query)

    def _change(self, control: DrainControl, method: bytes, query: bytes) -> Response:
        values = _parameters(query)
        if isinstance(values, Response):
            return values
        gpu = None
        if "gpu" in values:
            publication = self._board.current
            gpu = publication.gpu_index(values["gpu"])
            if gpu is None:
                return self._unknown_gpu(values["gpu"], publication.decision.gpus)
        if method == b"DELETE":
            return self._document(control.undrain(gpu))
        reason = values.get("reason", DEFAULT_REASON).strip() or DEFAULT_REASON
        if len(reason) > MAX_REASON_CHARS or not reason.isprintable():
            return BAD_REASON
        return self._document(control.drain(gpu, reason))

    def _document(self, drains: Drains) -> Response:
        return json_response(200, {"drains": drains.document(), "admin": self._admin})


def _parameters(query: bytes) -> dict[str, str] | Response:
    """`gpu=` and `reason=` from the query, or the 400 for anything else or anything twice."""
    values: dict[str, str] = {}
    for name, value in parse_qsl(query.decode("latin-1"), keep_blank_values=True):
        if name not in _PARAMETERS:
            return error_response(400, "unknown_parameter", f"/v1/drain takes gpu= and reason=, not {name}=")
        if name in values:
            return error_response(400, "repeated_parameter", f"{name} is given twice")
        values[name] = value
    return values
