"""URLs that may carry a basic-auth login: the header to send for it, and a form safe to print."""

from __future__ import annotations

import base64
import urllib.parse

_HIDDEN = "***"


def basic_auth_headers(parts: urllib.parse.SplitResult) -> dict[str, str]:
    """`Authorization: Basic ...` for `http://user:password@host`, or nothing when it names no user."""
    if parts.username is None:
        return {}
    login = f"{urllib.parse.unquote(parts.username)}:{urllib.parse.unquote(parts.password or '')}"
    return {"Authorization": "Basic " + base64.b64encode(login.encode()).decode()}


def redacted(url: str) -> str:
    """`url` with its password replaced by ***, for messages and logs; other URLs unchanged."""
    scheme, separator, rest = url.partition("://")
    if not separator:
        scheme, rest = "", url
    login, at, host = rest.partition("@")
    if not at or "/" in login or ":" not in login:
        return url
    user = login.split(":", 1)[0]
    return f"{scheme}{separator}{user}:{_HIDDEN}@{host}"
