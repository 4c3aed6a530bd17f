"""The /metrics text: each decision's families rendered (and deflated) once; live ones per scrape.

The collectors describe the latest snapshot and the decision made from it. Between two
decisions nothing they describe can change, so their text is rendered once per decision, by the
sampler thread before it publishes the decision (`prepare`), and every scrape until the next
decision reuses it. The same thread deflates that text once too, so a scrape that accepts gzip
compresses only the live families. A scrape then costs only the admission counters and the
sample age, which change in between and are rendered each time: about 25 µs for 8 GPUs with
the DCGM families, where rendering every family takes over a millisecond of Python and gzip of
the 70 KB text about 120 µs. `ready_body()` never waits, so the event loop answers from it; only
after a decision the sampler did not prepare (the board's expiry of a stale one) does `body()`
render, on a worker thread.

Until the board publishes a prepared decision, scrapes keep describing the one it replaces (the
decision the board still holds), so a scrape that lands between `prepare` and the publication
is served at once and never renders the old decision again.
"""

from __future__ import annotations

import struct
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass

from prometheus_client import CollectorRegistry

from gpuwatch import __version__
from gpuwatch.exposure.board import Board
from gpuwatch.exposure.metrics.collector import GpuwatchCollector, Observation
from gpuwatch.exposure.metrics.dcgm import DcgmCollector, exact_counter_names
from gpuwatch.exposure.metrics.lease_families import LeaseFamilies
from gpuwatch.exposure.metrics.live import LiveCollector
from gpuwatch.exposure.metrics.text import TextRenderer
from gpuwatch.exposure.publication import Publication
from gpuwatch.policy.decision import NodeDecision
from gpuwatch.sources.model import Snapshot

# What generate_latest writes: the Prometheus text format 0.0.4.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# Level 1: the text compresses about tenfold even at the fastest level; higher levels save
# little more and cost several times the CPU.
GZIP_LEVEL = 1
# A gzip member's header as zlib writes it at level 1: deflate, no flags, mtime 0 (the same text
# gives the same bytes, and no clock is read), XFL 4 (fastest), OS 3 (Unix).
_GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x04\x03"
# Raw deflate (no zlib or gzip wrapper) with the largest window, 32 KiB.
_RAW_DEFLATE = -zlib.MAX_WBITS


@dataclass(frozen=True, slots=True)
class _Rendered:
    """The text of one observation's families, and that text deflated to start a gzip member."""

    text: bytes
    deflated: bytes  # raw deflate, not final, ending byte-aligned: more blocks may follow
    crc: int  # CRC-32 of text, continued over whatever follows it


@dataclass(frozen=True, slots=True)
class _Serving:
    """What scrapes describe now, and its rendering once there is one (None: not rendered yet)."""

    observation: Observation
    rendered: _Rendered | None


def _deflate_start(text: bytes) -> _Rendered:
    """Deflate `text` so that an independently compressed tail can be appended to it."""
    compressor = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, _RAW_DEFLATE)
    # A sync flush ends the output on a byte boundary without a final block, so a second
    # compressor's stream (which refers to nothing before it) can follow as the same member.
    deflated = compressor.compress(text) + compressor.flush(zlib.Z_SYNC_FLUSH)
    return _Rendered(text, deflated, zlib.crc32(text))


def _gzip_member(rendered: _Rendered, tail: bytes) -> bytes:
    """One gzip member (RFC 1952) of rendered.text + tail, compressing only `tail` now."""
    compressor = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, _RAW_DEFLATE)
    deflated_tail = compressor.compress(tail) + compressor.flush(zlib.Z_FINISH)
    # The trailer: CRC-32 and length (mod 2**32) of all the uncompressed data, little-endian.
    size = (len(rendered.text) + len(tail)) & 0xFFFFFFFF
    trailer = struct.pack("<II", zlib.crc32(tail, rendered.crc), size)
    return _GZIP_HEADER + rendered.deflated + deflated_tail + trailer


class MetricsExposition:
    """gpuwatch's own registries (no global REGISTRY, no process collectors) and their rendering.

    Construction subscribes to `board`; call `prepare` with each snapshot and its decision before
    the decision is published. Every method may be called from any thread. `interval_s`
    is the sampling interval (None: not known here). `dcgm_hostname` (not None) adds
    dcgm-exporter's families with that Hostname label.
    """

    def __init__(
        self,
        board: Board,
        interval_s: float | None,
        *,
        dcgm_hostname: str | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        version: str = __version__,
    ) -> None:
        self._snapshot: Snapshot | None = None  # the latest snapshot prepared
        self._serving = _Serving(Observation(None, board.current.decision), None)
        self._prepared: tuple[Observation, _Rendered] | None = None  # prepare's latest render
        # A decision `expect`ed: published before its render, which `prepare` brings right after.
        self._expected: NodeDecision | None = None
        self._board = board
        self._rendering = self._serving.observation  # what the collectors describe while rendering
        # Held while rendering (milliseconds), so that two threads never render at once.
        self._render_lock = threading.Lock()
        # Held only to swap what is served (microseconds): the event loop may take it.
        self._swap_lock = threading.Lock()
        self._text = TextRenderer()
        self.registry = CollectorRegistry()
        self.registry.register(GpuwatchCollector(self.observation, interval_s, version))
        self.dcgm_registry: CollectorRegistry | None = None
        if dcgm_hostname is not None:
            self.dcgm_registry = CollectorRegistry()
            self.dcgm_registry.register(DcgmCollector(self.observation, dcgm_hostname))
        self.live_registry = CollectorRegistry()
        self.live_registry.register(LiveCollector(board.tally, lambda: board.current, monotonic))
        # Without a book (files, tests) nothing is ever leased: no lease families.
        self.leases = None if board.book is None else LeaseFamilies(board.book, lambda: board.current)
        board.observe(self._on_publication)

    def observation(self) -> Observation:
        """What the decision families describe in the render under way."""
        return self._rendering

    def expect(self, decision: NodeDecision) -> None:
        """`decision` is about to be published and `prepare`d just after, in that order.

        Publishing first puts a decision in front of admission clients without waiting for its
        metrics render (1-2 ms of the sampler thread, longer under load); until `prepare` is
        done, scrapes keep serving the previous decision's rendered text, one sample old.
        """
        with self._swap_lock:
            self._expected = decision

    def prepare(self, snapshot: Snapshot, decision: NodeDecision) -> None:
        """Render the families of `decision` (from `snapshot`) before it is published, or see `expect`."""
        observation = Observation(snapshot, decision)
        with self._render_lock:
            rendered = self._render(observation)
        with self._swap_lock:
            self._snapshot = snapshot
            self._prepared = (observation, rendered)
            # Published already (see `expect`): serve it now. The board swaps under its own lock
            # before telling us, so a publication that follows this check is served after it.
            if self._board.current.decision is decision:
                self._serving = _Serving(observation, rendered)

    def ready_body(self, *, gzipped: bool = False) -> bytes | None:
        """The whole exposition (gzip-compressed if `gzipped`) if no render is needed, else None.

        Never waits for a render, nor for a thread that is rendering.
        """
        rendered = self._serving.rendered
        if rendered is None:
            return None
        return self._whole(rendered, gzipped=gzipped)

    def body(self, *, gzipped: bool = False) -> bytes:
        """The whole exposition as of now, rendering the current decision if nobody has yet."""
        return self._whole(self._current_rendering(), gzipped=gzipped)

    def _whole(self, rendered: _Rendered, *, gzipped: bool) -> bytes:
        """The decision's text and the live families, rendered now (the lease families only if changed)."""
        live = self._text.render(self.live_registry)
        if self.leases is not None:
            live += self.leases.text()
        return _gzip_member(rendered, live) if gzipped else rendered.text + live

    def _on_publication(self, _previous: Publication, new: Publication) -> None:
        with self._swap_lock:
            prepared = self._prepared
            if prepared is not None and prepared[0].decision is new.decision:
                self._serving = _Serving(*prepared)  # its text is ready: scrapes never wait for it
            elif self._expected is new.decision:
                self._expected = None  # `prepare` swaps it in shortly; until then, the one before
            else:  # the board's expiry of the decision served: rendered by the first scrape
                self._serving = _Serving(Observation(self._snapshot, new.decision), None)

    def _current_rendering(self) -> _Rendered:
        """The served observation's rendering; the first thread to need it renders it, others wait."""
        serving = self._serving
        if serving.rendered is not None:
            return serving.rendered
        with self._render_lock:
            serving = self._serving
            if serving.rendered is not None:  # another thread rendered it meanwhile
                return serving.rendered
            rendered = self._render(serving.observation)
        with self._swap_lock:
            if self._serving is serving:  # else a newer decision came while rendering: keep that
                self._serving = _Serving(serving.observation, rendered)
        return rendered

    def _render(self, observation: Observation) -> _Rendered:
        """The text of `observation`'s families, deflated too; call with the render lock held."""
        self._rendering = observation
        text = self._text.render(self.registry)
        if self.dcgm_registry is not None:
            text += exact_counter_names(self._text.render(self.dcgm_registry))
        return _deflate_start(text)
