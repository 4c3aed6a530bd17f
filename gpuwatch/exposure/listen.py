"""Listen addresses (`HOST:PORT`, `:PORT`, `[::1]:PORT`) parsed and bound as asyncio servers."""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass


class ListenAddressError(ValueError):
    """A listen address cannot be read; the message says what form is expected."""


@dataclass(frozen=True, slots=True)
class ListenAddress:
    """Where to listen: `host` None means every interface, IPv4 and IPv6."""

    host: str | None
    port: int

    def __str__(self) -> str:
        if self.host is None:
            return f":{self.port}"
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def parse_listen_address(text: str) -> ListenAddress:
    """`:9478`, `0.0.0.0:9478`, `localhost:9478`, `[::1]:9478`; port 0 picks a free port."""
    host, colon, port_text = text.strip().rpartition(":")
    if not colon or not port_text.isdigit() or int(port_text) > 65535:
        raise ListenAddressError(f"listen address {text!r}: expected HOST:PORT, :PORT or [IPV6]:PORT")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise ListenAddressError(f"listen address {text!r}: write IPv6 hosts in brackets, e.g. [::1]:9478")
    return ListenAddress(host=host or None, port=int(port_text))


def bound_addresses(server: asyncio.Server) -> list[str]:
    """The `host:port` pairs a server actually listens on (ephemeral ports resolved)."""
    out = []
    for sock in server.sockets:
        name = sock.getsockname()
        host, port = name[0], name[1]
        out.append(f"[{host}]:{port}" if sock.family == socket.AF_INET6 else f"{host}:{port}")
    return out


async def listen(
    address: ListenAddress,
    protocol_factory: Callable[[], asyncio.Protocol],
    *,
    backlog: int = 1024,
    tls: ssl.SSLContext | None = None,
    tls_handshake_timeout_s: float | None = None,
) -> asyncio.Server:
    """Bind and start serving (TLS with `tls`); raises OSError (e.g. address in use) naming the address."""
    loop = asyncio.get_running_loop()
    try:
        return await loop.create_server(
            protocol_factory,
            host=address.host,
            port=address.port,
            backlog=backlog,
            reuse_address=True,
            ssl=tls,
            ssl_handshake_timeout=tls_handshake_timeout_s if tls is not None else None,
        )
    except OSError as exc:
        raise OSError(exc.errno, f"cannot listen on {address}: {exc.strerror or exc}") from exc
