"""The web config in force: re-read when its file or a certificate changes, so certificates rotate.

The listeners' TLS context is made once, at start. Its SNI callback, which OpenSSL calls in
every handshake (with or without a server name), hands the handshake the context built from
the latest good config, so a new certificate, key or client CA applies to the next connection
without a restart. OpenSSL takes only the certificates from a context switched this way: a
change of client_auth_type, min_version, max_version or prefer_server_cipher_suites is logged
and applies at the next restart.
"""

from __future__ import annotations

import logging
import ssl
from pathlib import Path

from gpuwatch.exposure.tlsconfig import TlsSettings
from gpuwatch.exposure.webconfig import WebConfig, WebConfigError, load_web_config

log = logging.getLogger(__name__)

# What tells a file changed: (path, inode, size, mtime in ns), or (path,) when it cannot be read.
_Signature = tuple[tuple[object, ...], ...]


class WebSecurity:
    """TLS contexts and basic-auth users of a web config, kept current by `refresh()`.

    `path` None: no web config (plain HTTP, no users). `refresh()` (the server calls it every
    second) re-reads the file when it or a file it names changed; a config that does not load
    is logged and the running one kept. TLS cannot be turned on or off without a restart: the
    listeners were opened as one or the other. `generation` grows with each reload, so caches
    of verified credentials know to forget.
    """

    def __init__(self, path: str | Path | None = None, config: WebConfig | None = None) -> None:
        self.path = None if path is None else Path(path)
        self.config = config or WebConfig()
        self.ssl_context = _context(self.config)
        self.generation = 0
        self._signature = self._stat()
        self._listener: ssl.SSLContext | None = None

    @property
    def tls(self) -> bool:
        """Whether the HTTP listeners speak TLS."""
        return self.ssl_context is not None

    def listener_context(self) -> ssl.SSLContext | None:
        """The context to open the HTTP listeners with (None: plain HTTP); made once."""
        if self._listener is None and self.config.tls is not None:
            self._listener = self.config.tls.context()
            self._listener.sni_callback = self._use_current
        return self._listener

    def refresh(self) -> bool:
        """Reload if a watched file changed; True when a new config took effect."""
        if self.path is None:
            return False
        signature = self._stat()
        if signature == self._signature:
            return False
        self._signature = signature
        try:
            config = load_web_config(self.path)
            context = _context(config)
        except (WebConfigError, OSError) as exc:  # ssl.SSLError is an OSError
            log.warning(
                "web config %s changed but cannot be used; keeping the running one: %s", self.path, exc
            )
            return False
        if (context is None) != (self.ssl_context is None):
            log.warning(
                "web config %s turns TLS on or off, which needs a restart; keeping the running one", self.path
            )
            return False
        _warn_of_settings_for_restart(self.path, self.config.tls, config.tls)
        self.config, self.ssl_context = config, context
        self._signature = self._stat()  # the new config may name other certificate files
        self.generation += 1
        log.info("web config %s reloaded", self.path)
        return True

    def _use_current(
        self, connection: ssl.SSLObject, _server_name: str | None, listener: ssl.SSLContext
    ) -> None:
        """SNI callback: let the handshake use the latest context's certificates."""
        current = self.ssl_context
        if current is not None and current is not listener:
            connection.context = current

    def _stat(self) -> _Signature:
        if self.path is None:
            return ()
        return tuple(_file_signature(path) for path in (self.path, *self.config.files()))


def _warn_of_settings_for_restart(path: Path, running: TlsSettings | None, new: TlsSettings | None) -> None:
    if running is None or new is None:
        return
    if _fixed_at_start(running) != _fixed_at_start(new):
        log.warning(
            "web config %s: new certificates apply now, other tls_server_config changes at the next restart",
            path,
        )


def _fixed_at_start(tls: TlsSettings) -> tuple[object, ...]:
    """The settings a listener keeps from its first context (OpenSSL switches only certificates)."""
    return (tls.client_auth_type, tls.min_version, tls.max_version, tls.prefer_server_cipher_suites)


def _file_signature(path: Path) -> tuple[object, ...]:
    try:
        status = path.stat()
    except OSError:
        return (path,)
    return (path, status.st_ino, status.st_size, status.st_mtime_ns)


def _context(config: WebConfig) -> ssl.SSLContext | None:
    return None if config.tls is None else config.tls.context()
