"""Routes of the signal API: which ready response answers a method, path, query and class header."""

from __future__ import annotations

import asyncio
import functools
import random
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar
from urllib.parse import parse_qsl

import httptools

from gpuwatch.exposure.board import Board
from gpuwatch.exposure.http.auth import BasicAuth, Verdict
from gpuwatch.exposure.http.drain_route import DRAIN_PATH, DrainControl, DrainRoute
from gpuwatch.exposure.http.lease_route import LEASES_PREFIX, RELEASE_PATH, LeaseRoute
from gpuwatch.exposure.http.protocol import Answer, RequestHeaders
from gpuwatch.exposure.http.responses import Response, error_response, json_response
from gpuwatch.exposure.http.scrape import Scrapes
from gpuwatch.exposure.publication import JITTER_BITS, AdmitRoute
from gpuwatch.policy.admission import UnknownGpuError
from gpuwatch.policy.classes import ClassNames
from gpuwatch.policy.decision import PriorityClass

ADMIT_PATHS = {
    b"/v1/admit": AdmitRoute.PLAIN,
    b"/v1/admit/nginx": AdmitRoute.NGINX,
    b"/v1/admit/envoy": AdmitRoute.ENVOY,
}
# Envoy's ext_authz sends the check with the original request's method (POST for most inference
# APIs) and, with `path_prefix`, appends the original path: any method and sub-path is a check.
ENVOY_PATH = b"/v1/admit/envoy"
ENVOY_SUBPATHS = ENVOY_PATH + b"/"
_T = TypeVar("_T")
CLASS_PARAMETER = "class"
GPU_PARAMETER = "gpu"
DRY_RUN_PARAMETER = "dry_run"
EXPECTED_PARAMETER = "expected_s"
EXPECTED_HEADER = "X-GPUWatch-Expected-Seconds"
# A job duration as a request may give it, s: a positive decimal number, e.g. `10`, `2.5`, `.5` or
# `1e-3` (what Python's str() and JavaScript's String() write), never 0. The digit counts are
# bounded so that every match is a finite float above zero; the policy caps what it plans with at
# policy.max_job_s (DESIGN §3), so a large value is capped, not refused. Python and the OpenAPI
# document (ECMA-262) read the pattern alike, so the fuzzer's idea of valid is the server's.
_NONZERO_MANTISSA = (
    r"(?:[0-9]{0,12}[1-9][0-9]{0,12}(?:\.[0-9]{0,32})?|[0-9]{0,12}\.[0-9]{0,32}[1-9][0-9]{0,32})"
)
DURATION_PATTERN = rf"^{_NONZERO_MANTISSA}(?:[eE][+-]?[0-9]{{1,2}})?$"
DURATION = re.compile(DURATION_PATTERN.removeprefix("^").removesuffix("$"))
# dry_run=1 asks without taking a slot; exactly these spellings say yes or no (as /openapi.json
# lists them), anything else is refused rather than guessed at.
DRY_RUN_YES = ("1", "true", "yes")
DRY_RUN_NO = ("0", "false", "no", "")
# What can name a GPU in `gpu=`: an index, or an NVML uuid (any case). Written so that Python and
# the OpenAPI document (ECMA-262 regex) read it alike.
GPU_NAME_PATTERN = "^([0-9]{1,4}|[Gg][Pp][Uu]-[0-9A-Fa-f-]{8,64})$"
_CANONICAL = ClassNames()  # the three classes by their own names; `default` when none is named
GPU_NAME = re.compile(GPU_NAME_PATTERN.removesuffix("$") + r"\Z")  # `$` would pass a final newline
# Distinct query strings and class headers remembered; the cache is emptied when it is full, so
# a client sending endless distinct queries costs a re-parse, not memory.
_CACHE_ENTRIES = 1024
_ALLOWED_METHODS = (b"GET", b"HEAD")

NOT_FOUND = error_response(404, "not_found", "no such route; GET / lists the routes")
METHOD_NOT_ALLOWED = error_response(
    405, "method_not_allowed", "only GET and HEAD are served", [("Allow", "GET, HEAD")]
)
# The methods an HTTP API's request can have (those OpenAPI can describe); not CONNECT or
# extension methods such as QUERY, which no inference API behind Envoy takes.
ENVOY_METHODS = (b"GET", b"HEAD", b"POST", b"PUT", b"DELETE", b"PATCH", b"OPTIONS", b"TRACE")
_ENVOY_ALLOW = ", ".join(m.decode() for m in ENVOY_METHODS)
ENVOY_METHOD_NOT_ALLOWED = error_response(
    405, "method_not_allowed", f"the Envoy check answers {_ENVOY_ALLOW}", [("Allow", _ENVOY_ALLOW)]
)
HEALTHY = json_response(200, {"alive": True})
# exporter-toolkit answers 401 with a bare `WWW-Authenticate: Basic`; a realm helps browsers.
UNAUTHORIZED = error_response(
    401,
    "unauthorized",
    "this gpuwatch needs HTTP basic authentication",
    [("WWW-Authenticate", 'Basic realm="gpuwatch"')],
)
AUTH_BUSY = error_response(
    503, "auth_busy", "too many logins are being checked; try again", [("Retry-After", "1")]
)


@dataclass(frozen=True, slots=True)
class AdmitQuery:
    """What an admit query asks: a class (None: from the header or `default`) and a GPU, or an error."""

    priority: PriorityClass | None = None
    gpu: str | None = None
    dry_run: bool = False  # ask without taking a slot
    expected_s: float | None = None  # how long the job runs, as the request says; None: not said
    error: Response | None = None


def parse_expected(text: str, where: str) -> float | Response:
    """A job duration a request gives (DURATION_PATTERN), s, else a 400 naming it."""
    if DURATION.fullmatch(text) is None:
        message = f"{where} must be a positive number of seconds, such as 10 or 2.5; got {text!r}"
        return error_response(400, "bad_expected_s", message)
    return float(text)


def parse_admit_query(query: bytes, classes: ClassNames = _CANONICAL) -> AdmitQuery:
    """`class=…&gpu=…`, names per `classes`; other parameters are ignored, a repeated one is an error."""
    values: dict[str, str] = {}
    for name, value in parse_qsl(query.decode("latin-1"), keep_blank_values=True):
        if name in values:
            return AdmitQuery(error=error_response(400, "repeated_parameter", f"{name} is given twice"))
        values[name] = value
    priority = None
    if CLASS_PARAMETER in values:
        try:
            priority = classes.resolve(values[CLASS_PARAMETER])
        except ValueError as exc:
            return AdmitQuery(error=error_response(400, "unknown_class", str(exc)))
    dry_run = values.get(DRY_RUN_PARAMETER, "")
    if dry_run not in DRY_RUN_YES and dry_run not in DRY_RUN_NO:
        message = f"dry_run must be 1 or 0 (true or false), got {dry_run!r}"
        return AdmitQuery(error=error_response(400, "bad_dry_run", message))
    expected_s = None
    if EXPECTED_PARAMETER in values:
        parsed = parse_expected(values[EXPECTED_PARAMETER], EXPECTED_PARAMETER)
        if isinstance(parsed, Response):
            return AdmitQuery(error=parsed)
        expected_s = parsed
    return AdmitQuery(
        priority=priority,
        gpu=values.get(GPU_PARAMETER),
        dry_run=dry_run in DRY_RUN_YES,
        expected_s=expected_s,
    )


def _cached(cache: dict[bytes, _T], key: bytes, make: Callable[[bytes], _T]) -> _T:
    """`cache[key]`, made on a miss; the cache is emptied when full."""
    found = cache.get(key)
    if found is None:
        if len(cache) >= _CACHE_ENTRIES:
            cache.clear()
        found = cache[key] = make(key)
    return found


def _header_priority(value: bytes, classes: ClassNames = _CANONICAL) -> PriorityClass | Response:
    try:
        return classes.resolve(value.decode("latin-1"))
    except ValueError as exc:
        return error_response(400, "unknown_class", f"X-GPUWatch-Class: {exc}")


class Routes:
    """The router the HTTP protocol calls; every answer is read from the board's publication.

    `scrapes` answers `telemetry_path` (None: not served); `auth` (when it names users) guards
    every route. `drains` answers /v1/drain, which changes them only when `admin` is set.
    """

    def __init__(  # noqa: PLR0913 - keyword-only past the static routes; each is one concern
        self,
        board: Board,
        static: dict[bytes, Response],
        *,
        telemetry_path: bytes = b"/metrics",
        scrapes: Scrapes | None = None,
        auth: BasicAuth | None = None,
        drains: DrainControl | None = None,
        admin: bool = False,
        classes: ClassNames = _CANONICAL,
    ) -> None:
        self._board = board
        self._classes = classes
        self._parse_query = functools.partial(parse_admit_query, classes=classes)
        self._parse_header = functools.partial(_header_priority, classes=classes)
        self._drain = DrainRoute(
            board,
            drains,
            admin=admin,
            authenticated=lambda: auth is not None and auth.enabled,
            unknown_gpu=_unknown_gpu,
        )
        self._leases = LeaseRoute(board)
        self._static = static
        self._telemetry_path = telemetry_path if scrapes is not None else None
        self._scrapes = scrapes
        self._auth = auth
        self._counts = board.tally.counts
        self._queries: dict[bytes, AdmitQuery] = {}
        self._class_headers: dict[bytes, PriorityClass | Response] = {}
        self._pick = random.Random().getrandbits  # noqa: S311 - jitter, not security

    def respond(self, method: bytes, target: bytes, headers: RequestHeaders) -> Answer:
        """The response for one request, or a future of it."""
        auth = self._auth
        if auth is not None and auth.enabled:
            verdict = auth.check(headers.authorization)
            if verdict is Verdict.DENY:
                return UNAUTHORIZED
            if verdict is Verdict.BUSY:
                return AUTH_BUSY
            if verdict is not Verdict.ALLOW:
                return asyncio.ensure_future(self._after_login(verdict, method, target, headers))
        return self._route(method, target, headers)

    async def _after_login(
        self, verified: asyncio.Future[bool], method: bytes, target: bytes, headers: RequestHeaders
    ) -> Response:
        if not await verified:
            return UNAUTHORIZED
        answer = self._route(method, target, headers)
        return answer if isinstance(answer, Response) else await answer

    def _route(self, method: bytes, target: bytes, headers: RequestHeaders) -> Answer:  # noqa: PLR0911 - one return per route
        path, _, query = target.partition(b"?") if target[:1] == b"/" else _origin_form(target)
        if path == ENVOY_PATH or path.startswith(ENVOY_SUBPATHS):
            if method not in ENVOY_METHODS:
                return ENVOY_METHOD_NOT_ALLOWED
            return self._admit(AdmitRoute.ENVOY, query, headers)
        if path == DRAIN_PATH:
            return self._drain.answer(method, query)
        if path == RELEASE_PATH:
            return self._leases.release(method, query)
        if path.startswith(LEASES_PREFIX):
            return self._leases.delete(method, path)
        if method not in _ALLOWED_METHODS:
            known = (
                path in ADMIT_PATHS
                or path in self._static
                or path in (b"/v1/state", b"/readyz", self._telemetry_path)
            )
            return METHOD_NOT_ALLOWED if known else NOT_FOUND
        route = ADMIT_PATHS.get(path)
        if route is not None:
            return self._admit(route, query, headers)
        if path == self._telemetry_path and self._scrapes is not None:
            return self._scrapes.answer(headers.accept_encoding)
        return self._page(path)

    def _page(self, path: bytes) -> Response:
        """/v1/state, /readyz or a static route."""
        if path == b"/v1/state":
            return self._board.current.state
        if path == b"/readyz":
            return self._board.current.ready
        return self._static.get(path, NOT_FOUND)

    def _admit(self, route: AdmitRoute, query: bytes, headers: RequestHeaders) -> Response:
        asked = _cached(self._queries, query, self._parse_query)
        if asked.error is not None:
            return asked.error
        class_header = headers.class_header
        expected_s = asked.expected_s
        if headers.expected_header is not None:
            said = _expected(expected_s, headers.expected_header)
            if isinstance(said, Response):
                return said
            expected_s = said
        # A bad class header is refused even when the query overrides it, as a bad duration is.
        from_header = None
        if class_header is not None:
            parsed = _cached(self._class_headers, class_header, self._parse_header)
            if isinstance(parsed, Response):
                return parsed
            from_header = parsed
        priority = asked.priority or from_header or self._classes.default
        publication = self._board.current
        gpu = None
        if asked.gpu is not None:
            gpu = publication.gpu_index(asked.gpu)
            if gpu is None:
                return _unknown_gpu(asked.gpu, publication.decision.gpus)
        try:
            answer = publication.admit_answer(
                route,
                priority,
                gpu,
                jitter=self._pick(JITTER_BITS),
                take=not asked.dry_run,
                expected_s=expected_s,
            )
        except UnknownGpuError as exc:
            return error_response(404, "unknown_gpu", str(exc))
        if not asked.dry_run:
            self._counts[answer.tally] += 1
        return answer.response


def _expected(asked_s: float | None, header: bytes) -> float | Response:
    """The job duration a request with the duration header says (`asked_s`, the query's, wins), or a 400.

    A bad header is refused even when the query overrides it: it is wrong either way.
    """
    # Spaces and tabs around a field value are not part of it (RFC 9110 §5.5).
    said = parse_expected(header.decode("latin-1").strip(" \t"), EXPECTED_HEADER)
    if isinstance(said, Response) or asked_s is None:
        return said
    return asked_s


def _origin_form(target: bytes) -> tuple[bytes, bytes, bytes]:
    """Path and query of an absolute-form target (`http://host/path?q`), as proxies send them."""
    try:
        url = httptools.parse_url(target)
    except httptools.HttpParserInvalidURLError:
        return b"", b"", b""
    return url.path or b"/", b"?", url.query or b""


def _unknown_gpu(text: str, gpus: tuple[object, ...]) -> Response:
    """404 for a well-formed index or uuid this node lacks; 400 for one that cannot name any GPU."""
    valid = f"0 to {len(gpus) - 1}" if gpus else "none: no GPU is known yet"
    if GPU_NAME.match(text) is None:
        message = f"gpu {text!r} is not a GPU index or uuid (indexes of this node: {valid})"
        return error_response(400, "bad_gpu", message)
    message = f"this node has no GPU {text!r} (indexes: {valid})"
    return error_response(404, "unknown_gpu", message)
