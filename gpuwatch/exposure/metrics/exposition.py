"""The /metrics text: each decision's families rendered once, before it is published; live ones per scrape.

The collectors describe the latest snapshot and the decision made from it. Between two
decisions nothing they describe can change, so their text is rendered once per decision, by the
sampler thread before it publishes the decision (`prepare`), and every scrape until the next
decision reuses it. A scrape then costs only the admission counters and the sample age, which
change in between and are rendered each time: a fraction of a millisecond for 8 GPUs, where
rendering every family takes a few milliseconds of Python. `ready_body()` never waits, so the
event loop answers from it; only after a decision the sampler did not prepare (the board's
expiry of a stale one) does `body()` render, on a worker thread.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, generate_latest

from gpuwatch import __version__
from gpuwatch.exposure.board import Board
from gpuwatch.exposure.metrics.collector import GpuwatchCollector, Observation
from gpuwatch.exposure.metrics.dcgm import DcgmCollector, exact_counter_names
from gpuwatch.exposure.metrics.live import LiveCollector
from gpuwatch.exposure.publication import Publication
from gpuwatch.model import Snapshot
from gpuwatch.policy.decision import NodeDecision

# What generate_latest writes: the Prometheus text format 0.0.4.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


@dataclass(frozen=True, slots=True)
class _Rendered:
    """The text of one observation's families."""

    observation: Observation | None
    text: bytes


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
        self._snapshot: Snapshot | None = None
        self._observation = Observation(None, board.current.decision)
        self._rendering = self._observation  # what the collectors describe while rendering
        self._rendered = _Rendered(None, b"")
        self._render_lock = threading.Lock()
        self.registry = CollectorRegistry()
        self.registry.register(GpuwatchCollector(self.observation, interval_s, version))
        self.dcgm_registry: CollectorRegistry | None = None
        if dcgm_hostname is not None:
            self.dcgm_registry = CollectorRegistry()
            self.dcgm_registry.register(DcgmCollector(self.observation, dcgm_hostname))
        self.live_registry = CollectorRegistry()
        self.live_registry.register(LiveCollector(board.tally, lambda: board.current.decision, monotonic))
        board.observe(self._on_publication)

    def observation(self) -> Observation:
        """What the decision families describe in the render under way."""
        return self._rendering

    def prepare(self, snapshot: Snapshot, decision: NodeDecision) -> None:
        """Render the families of `decision`, made from `snapshot`, before it is published."""
        self._snapshot = snapshot
        observation = Observation(snapshot, decision)
        with self._render_lock:
            self._rendered = _Rendered(observation, self._render(observation))

    def ready_body(self) -> bytes | None:
        """The whole exposition if the current decision is rendered, else None; never waits."""
        rendered = self._rendered
        if rendered.observation is not self._observation:
            return None
        return rendered.text + generate_latest(self.live_registry)

    def body(self) -> bytes:
        """The whole exposition as of now, rendering the current decision if nobody has yet."""
        return self._decision_text() + generate_latest(self.live_registry)

    def _on_publication(self, _previous: Publication, new: Publication) -> None:
        prepared = self._rendered.observation
        if prepared is not None and prepared.decision is new.decision:
            self._observation = prepared  # its text is ready: scrapes never wait for it
        else:
            self._observation = Observation(self._snapshot, new.decision)

    def _decision_text(self) -> bytes:
        """The current observation's text; the first thread to need it renders it, others wait."""
        observation = self._observation
        rendered = self._rendered
        if rendered.observation is observation:
            return rendered.text
        with self._render_lock:
            rendered = self._rendered
            if rendered.observation is not observation:  # no other thread rendered it meanwhile
                rendered = self._rendered = _Rendered(observation, self._render(observation))
        return rendered.text

    def _render(self, observation: Observation) -> bytes:
        """The text of `observation`'s families; call with the render lock held."""
        self._rendering = observation
        text = generate_latest(self.registry)
        if self.dcgm_registry is not None:
            text += exact_counter_names(generate_latest(self.dcgm_registry))
        return text
