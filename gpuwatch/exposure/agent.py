"""HAProxy agent-check: one status line per TCP connection, for the node or a GPU it names.

HAProxy connects every `agent-inter`, may send its `agent-send` string first (e.g. `gpu=3` and a newline),
and reads one line: `up ready N%` sets the server's weight (here: the free `default` slots, so
it drops as admissions take them), `up drain` stops new sessions while keeping current ones,
`down#gpu-failed` marks the server down with a reason.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from typing import cast

from gpuwatch.policy.decision import ThermalState

log = logging.getLogger(__name__)

# How long to wait for an `agent-send` line, s. HAProxy sends it right after connecting, so it
# arrives within a millisecond; a client that sends nothing is answered for the whole node.
AGENT_SEND_WAIT_S = 0.05
# The longest `agent-send` line read; anything longer is answered at once, for the node.
MAX_AGENT_SEND_BYTES = 256
FAILED_LINE = b"down#gpu-failed\n"
DRAIN_LINE = b"up drain\n"
# `agent-send` values already warned about: HAProxy repeats a bad one every check, so say it once.
_warned_about: set[str] = set()
_MAX_WARNED = 64


# Free `default` slots per GPU at which a server gets its full weight: a node whose GPUs can each
# take this many more jobs is as good as any; below it, the weight falls with what is left.
FULL_WEIGHT_SLOTS_PER_GPU = 8


def agent_line(state: ThermalState, free_default: int, gpus: int) -> bytes:
    """The agent answer for a node (or a GPU, `gpus` = 1) in `state` with `free_default` free `default` slots.

    Down when FAILED; drained while no `default` slot is free; otherwise ready, weighted by the
    free `default` slots (100% at FULL_WEIGHT_SLOTS_PER_GPU per GPU), never under 1% (HAProxy
    would stop sending work the node still admits).
    """
    if state is ThermalState.FAILED:
        return FAILED_LINE
    if free_default <= 0:
        return DRAIN_LINE
    weight = max(1, min(100, round(100.0 * free_default / (FULL_WEIGHT_SLOTS_PER_GPU * max(1, gpus)))))
    return f"up ready {weight}%\n".encode("ascii")


def requested_gpu(agent_send: bytes) -> str | None:
    """The GPU an `agent-send` line names (`gpu=3`, `3`, `gpu=GPU-…` or a uuid), else None."""
    text = agent_send.split(b"\n", 1)[0].strip().decode("ascii", "replace")
    key, equals, value = text.partition("=")
    if equals:
        return value.strip() or None if key.strip().lower() == "gpu" else None
    return text or None


class AgentProtocol(asyncio.Protocol):
    """One connection: wait briefly for an `agent-send` line, answer one line, close.

    Never blocks on the client: the wait is bounded by `wait_s`, and the answer is a few bytes
    that the kernel buffers even for a client that never reads.
    """

    def __init__(
        self,
        answers: Callable[[], tuple[bytes, Mapping[str, bytes]]],
        wait_s: float = AGENT_SEND_WAIT_S,
    ) -> None:
        self._answers = answers
        self._wait_s = wait_s
        self._received = b""
        self._answered = False
        self._transport: asyncio.Transport | None = None
        self._timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Start the wait for an `agent-send` line."""
        # A TCP server's transport; uvloop's is not an asyncio.Transport subclass, so cast.
        self._transport = cast("asyncio.Transport", transport)
        self._timer = asyncio.get_running_loop().call_later(self._wait_s, self._answer)

    def data_received(self, data: bytes) -> None:
        """Answer as soon as a whole line (or too much) has arrived."""
        self._received += data
        if b"\n" in self._received or len(self._received) >= MAX_AGENT_SEND_BYTES:
            self._answer()

    def eof_received(self) -> bool:
        """The client sent all it will: answer now; keep the transport open to write it."""
        self._answer()
        return True

    def connection_lost(self, exc: Exception | None) -> None:  # noqa: ARG002 - asyncio's signature
        """Nothing left to answer."""
        self._answered = True
        if self._timer is not None:
            self._timer.cancel()

    def _answer(self) -> None:
        if self._answered or self._transport is None:
            return
        self._answered = True
        if self._timer is not None:
            self._timer.cancel()
        node_line, gpu_lines = self._answers()
        gpu = requested_gpu(self._received)
        line = node_line if gpu is None else gpu_lines.get(gpu.lower())
        if line is None:
            _warn_once(gpu)
            line = node_line
        self._transport.write(line)
        self._transport.close()


def _warn_once(gpu: str | None) -> None:
    if gpu in _warned_about or gpu is None or len(_warned_about) >= _MAX_WARNED:
        return
    _warned_about.add(gpu)
    log.warning("agent-send names no GPU this node has (%r); answering for the node", gpu)
