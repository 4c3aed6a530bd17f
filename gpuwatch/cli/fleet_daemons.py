"""`gpuwatch fleet --targets`: every daemon's `/v1/state`, asked in parallel, each within its own timeout."""

from __future__ import annotations

import urllib.parse
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from gpuwatch.cli.fleet_rows import NodeRow, row_from_state, unreachable
from gpuwatch.exposure.client import GpuwatchClient, GpuwatchError
from gpuwatch.exposure.urls import redacted

# Threads asking at once: enough that 200 nodes, a few of them hanging until their timeout, take
# a few timeouts in all, not one per node.
MAX_PARALLEL = 64


class TargetError(ValueError):
    """A --targets entry that names no daemon."""


def parse_targets(text: str) -> list[str]:
    """`host:port,http://user:pw@host:port,[::1]:9478` -> base URLs, in order, without repeats."""
    urls: list[str] = []
    for entry in (part.strip() for part in text.split(",")):
        if not entry:
            continue
        url = entry if "://" in entry else f"http://{entry}"
        parsed = urllib.parse.urlsplit(url)
        try:
            port = parsed.port
        except ValueError as exc:
            raise TargetError(f"--targets entry {redacted(entry)!r}: {exc}") from exc
        if parsed.scheme not in ("http", "https") or not parsed.hostname or port is None:
            raise TargetError(
                f"--targets entry {redacted(entry)!r} is not host:port (or http[s]://host:port), "
                "e.g. gpu-node-1:9478"
            )
        if url not in urls:
            urls.append(url)
    if not urls:
        raise TargetError("--targets names no node: give host:port[,host:port...]")
    return urls


def node_name(url: str) -> str:
    """How a node is shown: host:port, without the scheme and any password."""
    parsed = urllib.parse.urlsplit(url)
    host = f"[{parsed.hostname}]" if parsed.hostname and ":" in parsed.hostname else parsed.hostname
    return f"{host}:{parsed.port}{parsed.path.rstrip('/')}"


def _ask(url: str, timeout_s: float) -> NodeRow:
    name = node_name(url)
    try:
        client = GpuwatchClient(url, fail_open=False, timeout_s=timeout_s, max_age_s=0.0)
        return row_from_state(name, client.state())
    except (GpuwatchError, ValueError) as exc:
        return unreachable(name, str(exc))


def ask_daemons(urls: Sequence[str], timeout_s: float) -> list[NodeRow]:
    """One row per URL, in the order given; a node that fails or times out is a row saying why.

    `timeout_s` bounds the connect and each read of a node, as the client's does: a silent node
    costs one timeout, and all nodes are asked at once (up to MAX_PARALLEL).
    """
    with ThreadPoolExecutor(max_workers=max(1, min(MAX_PARALLEL, len(urls)))) as pool:
        return list(pool.map(lambda url: _ask(url, timeout_s), urls))
