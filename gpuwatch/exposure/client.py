"""Python client for gpuwatch's signal API: one lease per job, thread-safe, honouring Retry-After."""

from __future__ import annotations

import copy
import dataclasses
import http.client
import json
import logging
import math
import threading
import time
import urllib.parse
from collections.abc import Callable, Hashable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, NamedTuple, TypeGuard, TypeVar

from gpuwatch.exposure.urls import basic_auth_headers, redacted
from gpuwatch.policy.admission import parse_priority
from gpuwatch.sources.clock import Clock, SystemClock

DEFAULT_URL = "http://127.0.0.1:9478"
DEFAULT_TIMEOUT_S = 1.0
# gpuwatch samples once a second by default, so an answer younger than that is as new as any.
DEFAULT_MAX_AGE_S = 1.0
# The signal API's answers are a few kB; anything far larger is not gpuwatch talking.
_MAX_BODY_BYTES = 4 * 1024 * 1024
# Held back without a usable Retry-After (a fallback, or a daemon that sent none): wait this, s.
_MIN_HOLD_S = 1.0
# The shortest wait between two asks while waiting for a slot, s: a Retry-After of 0 is no reason to spin.
_MIN_PAUSE_S = 0.05
# The longest job duration the client sends, s: a day, past which a duration is a mistake.
# gpuwatch itself caps what it plans with at its policy.max_job_s (600 s by default).
_MOST_EXPECTED_S = 86400.0

# What came of a release (ReleaseResult.outcome).
RELEASED = "released"  # this call ended the lease
NOT_OPEN = "not_open"  # gpuwatch's 404: released before, past its deadline, or its GPU went out
NOT_TOLD = "not_told"  # gpuwatch could not be told; the lease ends at its deadline

V = TypeVar("V")
Sleep = Callable[[float], None]

log = logging.getLogger(__name__)


class GpuwatchError(Exception):
    """gpuwatch could not be asked, or answered something that is not gpuwatch's signal API."""


class GpuwatchRequestError(ValueError):
    """The question itself is wrong: an unknown class, a GPU gpuwatch does not have, a malformed lease id."""


@dataclass(frozen=True, slots=True)
class AdmitResult:
    """The answer to "may I start one more job here?", and where it came from.

    `fallback` is True when gpuwatch did not answer (unreachable, erroring, not gpuwatch at that
    URL): then `admitted` is the client's `fail_open` choice and `reason` says what went wrong.
    `from_cache` is True when no request was made: gpuwatch held this question back and its
    Retry-After has not passed (then `retry_after_s` is what is left), or it could not be asked
    less than `max_age_s` ago. An admission (gpuwatch's own) is never from the cache: each took
    a slot for one job, as the lease `lease` on GPU `gpu` (`uuid`), which holds that slot until
    it is released (`GpuwatchClient.release`) or its deadline passes. A dry run, a fallback and
    a held-back answer have no lease.
    """

    admitted: bool
    gpu: int | None  # the GPU to start the job on (the pinned one, or gpuwatch's coolest)
    retry_after_s: float | None  # held back: seconds until it is worth asking again
    state: str | None  # node state (X-GPUWatch-State): ok, elevated, hot, ...; None on fallback
    pressure: float | None  # node pressure, 0 = cool, 1 = at the limit
    reason: str  # X-GPUWatch-Reason, or why gpuwatch could not be asked
    from_cache: bool = False
    fallback: bool = False
    lease: str | None = None  # the lease id (X-GPUWatch-Lease): release it when the job ends
    uuid: str | None = None  # the GPU's uuid, what CUDA_VISIBLE_DEVICES takes
    expected_s: float | None = None  # the job duration gpuwatch planned with, s; None: unknown
    expected_basis: str | None = None  # where that came from: request, learned, configured, unknown


@dataclass(frozen=True, slots=True)
class ReleaseResult:
    """What came of ending lease `lease`.

    `outcome` is `released` (this call ended it; `held_s` says after how long), `not_open` (gpuwatch
    has no such open lease: it was released before, passed its deadline, or its GPU went out; not
    an error, since a lease ends either way), or `not_told` (gpuwatch could not be reached or gave
    an answer that is not its own; `reason` says what happened, and the lease ends at its deadline).
    """

    lease: str
    outcome: str
    held_s: float | None = None  # released: how long gpuwatch held the lease, s
    reason: str = ""

    @property
    def released(self) -> bool:
        """Whether this call ended the lease."""
        return self.outcome == RELEASED


class GpuwatchHeldBack(Exception):  # noqa: N818 - it is an answer, not an error: "held back" says which
    """`lease()` got no admission: gpuwatch held the job back (or could not be asked, and fail_open is False).

    `result` is the answer: its `retry_after_s` says when to ask again, `fallback` whether gpuwatch
    answered at all.
    """

    def __init__(self, result: AdmitResult, priority: str) -> None:
        self.result = result
        why = f" ({result.reason})" if result.reason else ""
        wait = "" if result.retry_after_s is None else f"; retry after {result.retry_after_s:g} s"
        if result.fallback:
            super().__init__(f"class {priority} held back: gpuwatch gave no answer{why}{wait}")
        else:
            super().__init__(f"class {priority} held back: node {result.state}{why}{wait}")


class _Answer(NamedTuple):
    """One HTTP answer: status, headers with lower-case names, and the body."""

    status: int
    headers: Mapping[str, str]
    body: bytes


def _unexpired(entries: dict[Hashable, tuple[V, float]], key: Hashable, now: float) -> tuple[V, float] | None:
    """A cached value and the seconds it has left, or None when absent or expired."""
    entry = entries.get(key)
    return None if entry is None or entry[1] <= now else (entry[0], entry[1] - now)


class GpuwatchClient:
    """Asks one gpuwatch daemon whether to start a job, sharing answers between threads.

    `url`: the daemon's HTTP API (`http://user:password@host:port/prefix` for basic auth or a
    path prefix behind a proxy; https works). `timeout_s`: per connect and per read, seconds.
    `max_age_s`: how long a `state()` document, or a failure to reach gpuwatch, is reused
    without asking (0 asks every time). `fail_open`: what `admit` answers when gpuwatch does not:
    True admits, False holds back. It is required, because either choice is a policy the caller
    must own.

    One admission per job: every `admit` that gpuwatch admits took a slot for that job, as a
    lease, so admitted answers are never reused. A held-back answer is reused until its
    Retry-After (asking sooner would only be refused again); concurrent callers asking a question
    that is being asked wait for that answer if it holds back, and ask for themselves if it admits.
    `with client.lease(...) as job:` admits, and releases the lease when the block ends, exception
    or not; `release` ends a lease `admit` took.
    """

    def __init__(
        self,
        url: str = DEFAULT_URL,
        *,
        fail_open: bool,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        max_age_s: float = DEFAULT_MAX_AGE_S,
        clock: Clock | None = None,
    ) -> None:
        if not timeout_s > 0 or not max_age_s >= 0:
            raise ValueError(f"timeout_s must be > 0 and max_age_s >= 0 (got {timeout_s}, {max_age_s})")
        self.url = url
        # What messages name: the URL without its password.
        self._shown = redacted(url)
        self.fail_open = fail_open
        self._timeout_s = timeout_s
        self._max_age_s = max_age_s
        self._clock = clock or SystemClock()
        self._target = _Target.parse(url)
        self._lock = threading.Lock()
        self._flights: dict[Hashable, threading.Lock] = {}
        # Answers by question, and the state document, each with its monotonic expiry time.
        self._answers: dict[Hashable, tuple[AdmitResult, float]] = {}
        self._states: dict[Hashable, tuple[dict[str, Any], float]] = {}

    def admit(
        self,
        priority: str = "default",
        gpu: int | None = None,
        *,
        expected_s: float | None = None,
        dry_run: bool = False,
    ) -> AdmitResult:
        """May one more job of class `priority` start (on GPU `gpu`, or on any)?

        `expected_s`: how long the job runs, s (None: gpuwatch plans with what it learned or was
        configured with). An admission is a lease that holds a slot until `release` or its
        deadline; `dry_run` asks without taking one. Never raises for an unreachable or broken
        daemon (see `fail_open`); raises GpuwatchRequestError for an unknown class or a bad
        `expected_s`, or when gpuwatch says the GPU does not exist.
        """
        priority = _class_name(priority)
        expected_s = checked_duration(expected_s)
        key = ("admit", priority, gpu, expected_s, dry_run)
        cached = self._cached_answer(key)
        if cached is not None:
            return cached
        with self._single_flight(key):
            cached = self._cached_answer(key)
            if cached is not None:
                return cached
            result, keep_s = self._ask_admit(priority, gpu, expected_s, dry_run=dry_run)
            if keep_s > 0:
                with self._lock:
                    self._answers[key] = (result, self._clock.monotonic() + keep_s)
            return result

    def admit_cached(
        self, priority: str = "default", gpu: int | None = None, *, expected_s: float | None = None
    ) -> AdmitResult | None:
        """The held-back (or fallback) answer `admit` would give without asking, or None; never does I/O."""
        return self._cached_answer(("admit", _class_name(priority), gpu, checked_duration(expected_s), False))

    def admit_waiting(
        self,
        priority: str = "default",
        gpu: int | None = None,
        *,
        expected_s: float | None = None,
        wait_s: float = 0.0,
        sleep: Sleep = time.sleep,
    ) -> AdmitResult:
        """`admit`, asked again after each Retry-After while gpuwatch holds the job back, for up to `wait_s`.

        Returns the first admission, else the last held-back answer. A fallback (gpuwatch gave no
        answer) ends the wait at once: Retry-After is gpuwatch's promise, and without one the
        caller's `fail_open` decides. `sleep(seconds)` waits (time.sleep; one that raises ends the
        wait early, e.g. on a signal).
        """
        if not wait_s >= 0:
            raise ValueError(f"wait_s must be >= 0 (got {wait_s})")
        deadline = self._clock.monotonic() + wait_s
        while True:
            result = self.admit(priority, gpu, expected_s=expected_s)
            left_s = deadline - self._clock.monotonic()
            if result.admitted or result.fallback or left_s <= 0:
                return result
            pause_s = result.retry_after_s if result.retry_after_s is not None else _MIN_HOLD_S
            sleep(min(max(pause_s, _MIN_PAUSE_S), left_s))

    @contextmanager
    def lease(
        self,
        class_: str = "default",
        gpu: int | None = None,
        *,
        expected_s: float | None = None,
        wait_s: float = 0.0,
        sleep: Sleep = time.sleep,
    ) -> Iterator[AdmitResult]:
        """Admit one job of class `class_` and release its lease when the block ends, exception or not.

        Yields the admission (`.gpu`, `.uuid`, `.lease`, `.expected_s`); held back (after waiting
        up to `wait_s` as `admit_waiting` does), it raises GpuwatchHeldBack before the block runs.
        With `fail_open` and gpuwatch unreachable, the block runs on an admission without a lease
        (`.fallback`, `.gpu` None unless pinned), and nothing is released. A failed release is
        logged, never raised: the lease ends at its deadline anyway.
        """
        priority = _class_name(class_)
        result = self.admit_waiting(priority, gpu, expected_s=expected_s, wait_s=wait_s, sleep=sleep)
        if not result.admitted:
            raise GpuwatchHeldBack(result, priority)
        try:
            yield result
        finally:
            if result.lease is not None:
                self._release_quietly(result.lease)

    def release(self, lease: str) -> ReleaseResult:
        """End lease `lease` (its job is over), so its slot comes back now rather than at its deadline.

        Releasing a lease that is no longer open (released before, expired, its GPU gone) is
        `not_open`, not an error. A failure to tell gpuwatch is logged and returned as `not_told`,
        never raised: the lease ends at its deadline anyway, and the job's code should not fail
        for it. Raises GpuwatchRequestError only for an id gpuwatch says cannot be a lease id.
        """
        try:
            answer = self._request("POST", "/v1/release?" + urllib.parse.urlencode({"lease": lease}))
            result = _read_release(answer, lease)
        except GpuwatchError as exc:
            log.warning("could not release gpuwatch lease %s: %s; it ends at its deadline", shown(lease), exc)
            return ReleaseResult(lease, NOT_TOLD, reason=str(exc))
        if result.outcome == NOT_OPEN:
            log.info(
                "gpuwatch lease %s was no longer open (released before, expired, or its GPU out)",
                shown(lease),
            )
        return result

    def _release_quietly(self, lease: str) -> None:
        """`release`, for the end of a block: nothing it finds may replace the block's own outcome."""
        try:
            self.release(lease)
        except GpuwatchRequestError as exc:
            log.error("gpuwatch refused to release lease %s: %s", shown(lease), exc)  # noqa: TRY400 - no traceback: its answer says it

    def _cached_answer(self, key: Hashable) -> AdmitResult | None:
        with self._lock:
            found = _unexpired(self._answers, key, self._clock.monotonic())
        if found is None:
            return None
        result, left_s = found
        retry_after_s = None if result.admitted else left_s
        return dataclasses.replace(result, from_cache=True, retry_after_s=retry_after_s)

    def state(self) -> dict[str, Any]:
        """The daemon's `/v1/state` document (a copy of it); raises GpuwatchError when it cannot."""
        document = self._cached_state()
        if document is None:
            with self._single_flight("state"):
                document = self._cached_state()
                if document is None:
                    document = self._fetch_state()
                    with self._lock:
                        self._states["state"] = (document, self._clock.monotonic() + self._max_age_s)
        return copy.deepcopy(document)

    def _cached_state(self) -> dict[str, Any] | None:
        with self._lock:
            found = _unexpired(self._states, "state", self._clock.monotonic())
        return None if found is None else found[0]

    @contextmanager
    def _single_flight(self, key: Hashable) -> Iterator[None]:
        """Hold the one lock for `key`, so one thread asks while the others wait for its answer."""
        with self._lock:
            flight = self._flights.setdefault(key, threading.Lock())
        with flight:
            yield

    def _ask_admit(
        self, priority: str, gpu: int | None, expected_s: float | None, *, dry_run: bool
    ) -> tuple[AdmitResult, float]:
        """Ask `/v1/admit`; returns the answer and how long to keep it, in s (0: never reuse it)."""
        query = {"class": priority}
        if gpu is not None:
            query["gpu"] = str(gpu)
        if expected_s is not None:
            query["expected_s"] = str(expected_s)
        if dry_run:
            query["dry_run"] = "1"
        try:
            answer = self._request("GET", "/v1/admit?" + urllib.parse.urlencode(query))
            result = _read_admit(answer, gpu)
        except GpuwatchError as exc:
            return self._fallback(str(exc), gpu), self._max_age_s
        if result.admitted:
            return result, 0.0  # it took a slot for this one job
        return result, result.retry_after_s or _MIN_HOLD_S

    def _fallback(self, why: str, gpu: int | None) -> AdmitResult:
        """The caller's fail-open/fail-closed answer when gpuwatch gave none."""
        retry_after_s = None if self.fail_open else max(self._max_age_s, _MIN_HOLD_S)
        return AdmitResult(self.fail_open, gpu, retry_after_s, None, None, why, fallback=True)

    def _fetch_state(self) -> dict[str, Any]:
        answer = self._request("GET", "/v1/state")
        if answer.status != 200:
            raise GpuwatchError(f"gpuwatch at {self._shown} answered /v1/state with HTTP {answer.status}")
        document = _json_object(answer.body, "/v1/state")
        if "gpus" not in document:
            raise GpuwatchError(f"the answer from {self._shown}/v1/state has no `gpus`: is that gpuwatch?")
        return document

    def _request(self, method: str, path: str) -> _Answer:
        """One request without a body, on a fresh connection (it is rare); raises GpuwatchError."""
        connection = self._target.connect(self._timeout_s)
        try:
            connection.request(method, self._target.base_path + path, headers=self._target.headers)
            response = connection.getresponse()
            body = response.read(_MAX_BODY_BYTES)
            headers = {name.lower(): value for name, value in response.getheaders()}
            return _Answer(response.status, headers, body)
        except TimeoutError as exc:
            raise GpuwatchError(
                f"gpuwatch at {self._shown} did not answer within {self._timeout_s:g} s"
            ) from exc
        except (OSError, http.client.HTTPException) as exc:
            raise GpuwatchError(f"cannot reach gpuwatch at {self._shown}: {_why(exc)}") from exc
        finally:
            connection.close()


@dataclass(frozen=True, slots=True)
class _Target:
    """Where the daemon is: scheme, host, port, path prefix and the headers every request sends."""

    https: bool
    host: str
    port: int | None
    base_path: str
    headers: Mapping[str, str]

    @classmethod
    def parse(cls, url: str) -> _Target:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in {"http", "https"} or not parts.hostname:
            raise ValueError(f"gpuwatch URL must look like http://HOST:PORT (got {redacted(url)!r})")
        headers = {"Accept": "application/json", "User-Agent": "gpuwatch-client", **basic_auth_headers(parts)}
        return cls(parts.scheme == "https", parts.hostname, parts.port, parts.path.rstrip("/"), headers)

    def connect(self, timeout_s: float) -> http.client.HTTPConnection:
        kind = http.client.HTTPSConnection if self.https else http.client.HTTPConnection
        return kind(self.host, self.port, timeout=timeout_s)


def _class_name(priority: str) -> str:
    """The class as gpuwatch spells it (`critical`, `default`, `sheddable`), else GpuwatchRequestError."""
    try:
        return parse_priority(priority).value
    except ValueError as exc:
        raise GpuwatchRequestError(str(exc)) from exc


def _read_admit(answer: _Answer, gpu: int | None) -> AdmitResult:
    """An AdmitResult from `/v1/admit`'s answer; raises GpuwatchError when it is not one."""
    if answer.status == 400 or (answer.status == 404 and _is_unknown_gpu(answer)):
        raise GpuwatchRequestError(_error_text(answer))
    node_state = answer.headers.get("x-gpuwatch-state")
    # gpuwatch puts X-GPUWatch-State on every admit answer; a 503 without it is a proxy's error.
    if node_state is None or answer.status not in {200, 503}:
        raise GpuwatchError(
            f"HTTP {answer.status} from /v1/admit is not a gpuwatch answer: {_error_text(answer)}"
        )
    state = node_state
    pressure = _seconds(answer.headers.get("x-gpuwatch-pressure"))
    reason = answer.headers.get("x-gpuwatch-reason", "")
    if answer.status != 200:
        retry_after_s = _seconds(answer.headers.get("retry-after"))
        return AdmitResult(
            admitted=False,
            gpu=gpu,
            retry_after_s=retry_after_s,
            state=state,
            pressure=pressure,
            reason=reason,
        )
    body = _json_object(answer.body, "/v1/admit")
    chosen = body.get("gpu")
    expected_s = body.get("expected_s")
    return AdmitResult(
        admitted=True,
        gpu=_chosen_gpu(body),
        retry_after_s=None,
        state=state,
        pressure=pressure,
        reason=reason,
        lease=_text(body.get("lease", answer.headers.get("x-gpuwatch-lease"))),
        uuid=_text(chosen.get("uuid")) if isinstance(chosen, dict) else None,
        expected_s=float(expected_s) if _is_number(expected_s) and expected_s > 0 else None,
        expected_basis=_text(body.get("expected_basis")),
    )


def _chosen_gpu(body: Mapping[str, Any]) -> int:
    """The GPU an admit answer names: `"gpu": 3` or `"gpu": {"index": 3, ...}`."""
    gpu = body.get("gpu")
    index = gpu.get("index") if isinstance(gpu, dict) else gpu
    if isinstance(index, bool) or not isinstance(index, int):
        raise GpuwatchError(f"the admit answer names no GPU index (got gpu={gpu!r})")
    return index


def _read_release(answer: _Answer, lease: str) -> ReleaseResult:
    """A ReleaseResult from `/v1/release`'s answer; raises GpuwatchError when it is not gpuwatch's."""
    document = _json_or_none(answer.body)
    error = document.get("error") if document is not None else None
    if answer.status == 200 and document is not None and document.get("released") is True:
        held_s = document.get("held_s")
        return ReleaseResult(lease, RELEASED, float(held_s) if _is_number(held_s) else None)
    if answer.status == 404 and error == "unknown_lease":
        return ReleaseResult(lease, NOT_OPEN, reason=_error_text(answer))
    if answer.status == 400 and error == "bad_lease":
        raise GpuwatchRequestError(_error_text(answer))
    raise GpuwatchError(
        f"HTTP {answer.status} from /v1/release is not a gpuwatch answer: {_error_text(answer)}"
    )


def _is_number(value: object) -> TypeGuard[float]:
    """Whether a JSON value is a finite number (true and false are not)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _text(value: object) -> str | None:
    """A non-empty string from a JSON field, else None."""
    return value if isinstance(value, str) and value else None


def checked_duration(expected_s: float | None) -> float | None:
    """A job duration gpuwatch takes, s: None, or a number in (0, a day]; else GpuwatchRequestError."""
    if expected_s is None:
        return None
    if not _is_number(expected_s) or not 0 < expected_s <= _MOST_EXPECTED_S:
        raise GpuwatchRequestError(
            f"expected_s must be a number of seconds in (0, {_MOST_EXPECTED_S:g}], got {expected_s!r}"
        )
    return float(expected_s)


def _json_object(body: bytes, route: str) -> dict[str, Any]:
    try:
        document = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise GpuwatchError(f"the answer from {route} is not JSON: {exc}") from exc
    if not isinstance(document, dict):
        raise GpuwatchError(f"the answer from {route} is not a JSON object")
    return document


def _seconds(text: str | None) -> float | None:
    """A non-negative finite number from a header, else None (Retry-After as an HTTP date included)."""
    try:
        value = float(text) if text is not None else math.nan
    except ValueError:
        return None
    return value if math.isfinite(value) and value >= 0 else None


def _json_or_none(body: bytes) -> dict[str, Any] | None:
    """The JSON object `body` holds, or None when it holds something else."""
    try:
        document = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    return document if isinstance(document, dict) else None


def _is_unknown_gpu(answer: _Answer) -> bool:
    """Whether a 404 is gpuwatch's own for a GPU the node lacks, not a proxy's for a wrong path."""
    document = _json_or_none(answer.body)
    return document is not None and document.get("error") == "unknown_gpu"


def _error_text(answer: _Answer) -> str:
    """What an error answer says (gpuwatch's JSON `message`, else the body), on one short line."""
    document = _json_or_none(answer.body)
    text = (
        document.get("message", document) if document is not None else answer.body.decode("utf-8", "replace")
    )
    return " ".join(str(text).split())[:200] or f"HTTP {answer.status}"


def _why(exc: BaseException) -> str:
    """An OS or HTTP error in a few words: `connection refused`, not `[Errno 111] ...`."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    return str(exc) or type(exc).__name__


def shown(lease: str) -> str:
    """A lease id as logs may show it: enough to tell leases apart, not enough to end one.

    The id is the only credential a lease has (gpuwatch never logs it either).
    """
    return lease[:6] + "…"
