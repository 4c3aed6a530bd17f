"""--web.config.file: the Prometheus exporter-toolkit YAML (TLS, basic auth), read and checked.

The format is exporter-toolkit's (docs/web-configuration.md), so the same file can serve
node_exporter and gpuwatch:

    tls_server_config:
      cert_file: server.crt              # relative paths are relative to this file
      key_file: server.key
      client_auth_type: RequireAndVerifyClientCert   # or VerifyClientCertIfGiven, NoClientCert
      client_ca_file: clients-ca.crt
      min_version: TLS12                 # TLS10 to TLS13; max_version likewise
    basic_auth_users:
      prometheus: $2b$12$...             # bcrypt hashes (htpasswd -nBC 12 user)

Every problem is a WebConfigError naming the file, the line and the key. gpuwatch verifies every
client certificate it asks for, so RequestClientCert and RequireAnyClientCert (ask, but do not
verify) are refused, as are keys it does not implement (cipher_suites, curve_preferences, ...).
"""

from __future__ import annotations

import re
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import yaml

from gpuwatch.exposure.filemodes import others_may_write
from gpuwatch.exposure.tlsconfig import CLIENT_AUTH_TYPES, TLS_VERSIONS, TlsSettings

_TOP_KEYS = ("tls_server_config", "http_server_config", "basic_auth_users")
_TLS_KEYS = (
    "cert_file",
    "key_file",
    "client_auth_type",
    "client_ca_file",
    "min_version",
    "max_version",
    "prefer_server_cipher_suites",
)
_TLS_UNSUPPORTED = ("cert", "key", "client_ca", "cipher_suites", "curve_preferences", "client_allowed_sans")
_HTTP_KEYS = ("http2",)
# bcrypt's modular-crypt form: $2a$, $2b$ or $2y$, a two-digit cost, 22 salt and 31 hash characters.
_BCRYPT = re.compile(r"\$2[aby]\$\d\d\$[./A-Za-z0-9]{53}")


class WebConfigError(ValueError):
    """The web config cannot be used; the message names the file, the line and the key."""


@dataclass(frozen=True, slots=True)
class WebConfig:
    """What a web config file asks for: TLS (None: plain HTTP) and basic-auth users (empty: none)."""

    tls: TlsSettings | None = None
    users: Mapping[str, bytes] = field(default_factory=lambda: MappingProxyType({}))  # user -> bcrypt hash

    def files(self) -> tuple[Path, ...]:
        """The certificate and key files the config reads (watched for rotation)."""
        return () if self.tls is None else self.tls.files()


class _Located:
    """Line numbers of the keys in a YAML document, for messages."""

    def __init__(self, path: Path, root: yaml.Node | None) -> None:
        self._path = path
        self._root = root

    def error(self, keys: tuple[str, ...], problem: str) -> WebConfigError:
        """An error naming `path:line: a.b.c: problem`."""
        line = self._line(keys)
        where = f"{self._path}:{line}" if line is not None else str(self._path)
        return WebConfigError(f"{where}: {'.'.join(keys)}: {problem}")

    def _line(self, keys: tuple[str, ...]) -> int | None:
        node, line = self._root, None
        for key in keys:
            if not isinstance(node, yaml.MappingNode):
                break
            found = next(((k, v) for k, v in node.value if getattr(k, "value", None) == key), None)
            if found is None:
                break
            line, node = found[0].start_mark.line + 1, found[1]
        return line


def load_web_config(path: str | Path) -> WebConfig:
    """Read and check the file at `path`; raises WebConfigError."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise WebConfigError(f"{path}: cannot read the web config: {exc}") from exc
    if problem := others_may_write(path, "web config"):
        raise WebConfigError(problem)
    return parse_web_config(text, path)


def parse_web_config(text: str, path: Path) -> WebConfig:
    """The config `text` (read from `path`, which relative file names are resolved against)."""
    try:
        document = yaml.safe_load(text)
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        raise WebConfigError(f"{where}: not valid YAML: {getattr(exc, 'problem', None) or exc}") from exc
    located = _Located(path, root)
    if document is None:
        return WebConfig()  # an empty file, as exporter-toolkit allows: plain HTTP, no users
    if not isinstance(document, dict):
        raise WebConfigError(f"{path}: expected a mapping of {', '.join(_TOP_KEYS)}")
    _known_keys(document, _TOP_KEYS, (), located)
    http = _mapping(document, "http_server_config", (), located)
    _known_keys(http, _HTTP_KEYS, ("http_server_config",), located)
    if "http2" in http and not isinstance(http["http2"], bool):
        raise located.error(("http_server_config", "http2"), "expected true or false")
    tls_values = _mapping(document, "tls_server_config", (), located)
    tls = _tls(tls_values, path.parent, located) if tls_values else None
    return WebConfig(tls=tls, users=_users(_mapping(document, "basic_auth_users", (), located), located))


def _mapping(
    values: Mapping[str, Any], key: str, parents: tuple[str, ...], located: _Located
) -> dict[str, Any]:
    value = values.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise located.error((*parents, key), "expected a mapping")
    return value


def _known_keys(
    values: Mapping[Any, Any], known: tuple[str, ...], parents: tuple[str, ...], located: _Located
) -> None:
    for key in values:
        if key not in known:
            raise located.error((*parents, str(key)), f"unknown key (known: {', '.join(known)})")


_TLS = ("tls_server_config",)


def _tls(values: Mapping[str, Any], directory: Path, located: _Located) -> TlsSettings:
    for key in values:
        if key in _TLS_UNSUPPORTED:
            raise located.error((*_TLS, key), "not supported by gpuwatch; remove it")
    _known_keys(values, _TLS_KEYS, _TLS, located)
    text = {
        key: _text(values, key, _TLS, located) for key in _TLS_KEYS if key != "prefer_server_cipher_suites"
    }
    for required in ("cert_file", "key_file"):
        if not text[required]:
            raise located.error((*_TLS, required), "missing: TLS needs both cert_file and key_file")
    client_auth = _client_auth(text["client_auth_type"], has_ca=bool(text["client_ca_file"]), located=located)
    versions = {key: _version(text[key], (*_TLS, key), located) for key in ("min_version", "max_version")}
    prefer = values.get("prefer_server_cipher_suites", False)
    if not isinstance(prefer, bool):
        raise located.error((*_TLS, "prefer_server_cipher_suites"), "expected true or false")
    settings = TlsSettings(
        cert_file=directory / text["cert_file"],
        key_file=directory / text["key_file"],
        client_auth_type=client_auth,
        client_ca_file=directory / text["client_ca_file"] if text["client_ca_file"] else None,
        min_version=versions["min_version"] or ssl.TLSVersion.TLSv1_2,
        max_version=versions["max_version"],
        prefer_server_cipher_suites=prefer,
    )
    problem = settings.problem()
    if problem is not None:
        raise located.error((*_TLS, problem[0]), problem[1])
    return settings


def _client_auth(value: str, *, has_ca: bool, located: _Located) -> str:
    """client_auth_type checked against client_ca_file: a verifying type needs it, it needs one."""
    client_auth = value or "NoClientCert"
    if client_auth not in CLIENT_AUTH_TYPES:
        raise located.error((*_TLS, "client_auth_type"), _client_auth_problem(client_auth))
    verifies = CLIENT_AUTH_TYPES[client_auth] is not ssl.CERT_NONE
    if verifies and not has_ca:
        raise located.error((*_TLS, "client_ca_file"), f"missing: client_auth_type {client_auth} needs it")
    if has_ca and not verifies:
        raise located.error(
            (*_TLS, "client_auth_type"),
            "is NoClientCert although client_ca_file is set: client certificates would not be checked; "
            "use RequireAndVerifyClientCert or VerifyClientCertIfGiven",
        )
    return client_auth


def _text(values: Mapping[str, Any], key: str, where: tuple[str, ...], located: _Located) -> str:
    value = values.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise located.error((*where, key), "expected a string")
    return value


def _client_auth_problem(value: str) -> str:
    if value in {"RequestClientCert", "RequireAnyClientCert"}:
        return (
            f"{value} asks for a client certificate without verifying it, which gpuwatch does not do; "
            "use VerifyClientCertIfGiven or RequireAndVerifyClientCert"
        )
    return f"unknown value {value!r} (known: {', '.join(CLIENT_AUTH_TYPES)})"


def _version(value: str, keys: tuple[str, ...], located: _Located) -> ssl.TLSVersion | None:
    if not value:
        return None
    if value not in TLS_VERSIONS:
        raise located.error(keys, f"unknown TLS version {value!r} (known: {', '.join(TLS_VERSIONS)})")
    return TLS_VERSIONS[value]


def _users(values: Mapping[Any, Any], located: _Located) -> Mapping[str, bytes]:
    users: dict[str, bytes] = {}
    for user, hashed in values.items():
        keys = ("basic_auth_users", str(user))
        if not isinstance(user, str) or not user or ":" in user:
            raise located.error(keys, "a user name is a non-empty string without ':'")
        if not isinstance(hashed, str) or not _BCRYPT.fullmatch(hashed):
            raise located.error(
                keys, "expected a bcrypt hash ($2b$..., as `htpasswd -nB` writes), not a password"
            )
        users[user] = hashed.encode("ascii")
    return MappingProxyType(users)
