"""HTTP basic auth against the web config's bcrypt hashes, checked off the event loop and remembered.

bcrypt is slow on purpose (tens to hundreds of milliseconds), so a check runs on a worker
thread (bcrypt releases the GIL) and a header that verified is remembered until the web config
changes: /v1/admit stays fast for a client that authenticated once. An unknown user is checked
against a configured hash and refused whatever the result, so the time taken does not tell
which user names exist.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import enum
import hashlib
from concurrent.futures import Executor

import bcrypt

from gpuwatch.exposure.webwatch import WebSecurity

# Verified headers remembered; the memory is emptied when full.
_REMEMBERED = 1024
# Checks waiting for or running on a worker thread; past this a request is answered 503 at once,
# so a flood of guesses cannot queue unbounded bcrypt work.
MAX_PENDING_CHECKS = 64


class Verdict(enum.Enum):
    """An answer known without running bcrypt."""

    ALLOW = "allow"
    DENY = "deny"
    BUSY = "busy"


def credentials(header: bytes | None) -> tuple[str, bytes] | None:
    """(user, password) of an `Authorization: Basic …` value, else None."""
    if header is None:
        return None
    scheme, _, encoded = header.strip().partition(b" ")
    if scheme.lower() != b"basic":
        return None
    try:
        user, colon, password = base64.b64decode(encoded.strip(), validate=True).partition(b":")
        name = user.decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return (name, password) if colon else None


class BasicAuth:
    """Checks requests against the users of `security`'s web config; `executor` runs bcrypt."""

    def __init__(self, security: WebSecurity, executor: Executor) -> None:
        self._security = security
        self._executor = executor
        self._verified: dict[bytes, int] = {}  # sha256 of the header -> config generation
        self._pending: dict[bytes, asyncio.Future[bool]] = {}

    @property
    def enabled(self) -> bool:
        """Whether the web config names any users (no users: no authentication)."""
        return bool(self._security.config.users)

    def check(self, header: bytes | None) -> Verdict | asyncio.Future[bool]:
        """The verdict on a request's Authorization header, or a future of whether it verifies."""
        key = hashlib.sha256(header or b"").digest()
        generation = self._security.generation
        if self._verified.get(key) == generation:
            return Verdict.ALLOW
        login = credentials(header)
        if login is None:
            return Verdict.DENY
        pending = self._pending.get(key)
        if pending is not None:
            return pending
        if len(self._pending) >= MAX_PENDING_CHECKS:
            return Verdict.BUSY
        users = self._security.config.users
        user, password = login
        known = user in users
        hashed = users[user] if known else next(iter(users.values()))
        loop = asyncio.get_running_loop()
        check = loop.run_in_executor(self._executor, _matches, password, hashed)
        verified: asyncio.Future[bool] = loop.create_future()
        self._pending[key] = verified

        def settle(done: asyncio.Future[bool]) -> None:
            del self._pending[key]
            ok = known and not done.cancelled() and done.exception() is None and done.result()
            if ok and generation == self._security.generation:
                if len(self._verified) >= _REMEMBERED:
                    self._verified.clear()
                self._verified[key] = generation
            verified.set_result(ok)

        check.add_done_callback(settle)
        return verified


def _matches(password: bytes, hashed: bytes) -> bool:
    """Whether the password matches; one that bcrypt refuses to hash (over 72 bytes) does not match."""
    try:
        return bcrypt.checkpw(password, hashed)
    except ValueError:
        return False
