"""The board: the latest rendered decision, swapped atomically for the HTTP, agent and file sides."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from gpuwatch.exposure.leases import OUT, LeaseBook
from gpuwatch.exposure.publication import Publication
from gpuwatch.exposure.tally import AdmissionTally
from gpuwatch.policy.decision import NodeDecision, ThermalState

log = logging.getLogger(__name__)

# (decision, now_monotonic) -> the same decision while fresh, else one with every GPU UNKNOWN.
Expiry = Callable[[NodeDecision, float], NodeDecision]
# Called with (previous, new) after each swap, under the board's lock, so calls never overlap
# and arrive in publication order.
Observer = Callable[[Publication, Publication], None]


def not_yet_sampled() -> NodeDecision:
    """What the board holds before the first decision: nothing known, so nothing admitted."""
    return NodeDecision(
        state=ThermalState.UNKNOWN,
        pressure=1.0,
        reasons=("no_sample_yet",),
        sentence="gpuwatch has not sampled the GPUs yet.",
        gpus=(),
        sequence=0,
        taken_at=0.0,
        decided_at=0.0,
        sample_age_s=None,
    )


class Board:
    """Holds the current Publication; readers take `board.current`, a plain reference read.

    `publish` renders a decision (the costly part, outside the lock) and swaps it in.
    `check_expiry` is run periodically by the server: when the sampler has stopped publishing,
    it swaps in the expired decision (stale GPUs UNKNOWN) so the signal fails safe.
    """

    def __init__(
        self,
        source: str,
        expiry: Expiry,
        initial: NodeDecision | None = None,
        book: LeaseBook | None = None,
    ) -> None:
        self._source = source
        self._expiry = expiry
        self._lock = threading.Lock()
        self._observers: list[Observer] = []
        self.tally = AdmissionTally()
        self.book = book  # admissions take their leases here; None: nothing is ever taken
        self.current = Publication(initial or not_yet_sampled(), source, book)

    def observe(self, observer: Observer) -> None:
        """Call `observer(previous, new)` after each swap."""
        self._observers.append(observer)

    def publish(self, decision: NodeDecision) -> Publication:
        """Render `decision` and make it current."""
        publication = Publication(decision, self._source, self.book)
        with self._lock:
            self._swap(publication)
        return publication

    def check_expiry(self, now_monotonic: float) -> bool:
        """Swap in the decision as it stands now if readings in it have gone stale; True if so.

        The expiry returns the decision itself while nothing in it has gone stale (GPUs already
        UNKNOWN stay so), so this is cheap to run often.
        """
        current = self.current
        expired = self._expiry(current.decision, now_monotonic)
        if expired is current.decision:
            return False
        publication = Publication(expired, self._source, self.book)
        with self._lock:
            if self.current is not current:
                return False  # a fresh decision arrived meanwhile
            log.warning("no fresh decision since sequence %d: stale GPUs are now UNKNOWN", expired.sequence)
            self._swap(publication)
        return True

    def _swap(self, publication: Publication) -> None:
        previous, self.current = self.current, publication
        if self.book is not None:
            # A GPU gone FAILED or UNKNOWN ends its leases: their jobs are lost with it, or not known.
            ended = self.book.end_out(publication.decision)
            if ended:
                out = [str(gpu.index) for gpu in publication.decision.gpus if gpu.state in OUT]
                log.warning("%d open lease(s) ended: GPU %s went FAILED or UNKNOWN", ended, ", ".join(out))
        for observer in self._observers:
            try:
                observer(previous, publication)
            except Exception:
                log.exception("board observer %r failed", observer)
