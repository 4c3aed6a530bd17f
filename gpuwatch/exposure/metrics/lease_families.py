"""The lease families, read from the lease book at scrapes: open leases, leases ended, job durations.

A release or an admission changes them between two samples, so they are not part of the
decision's rendering: a scrape shows the book as it is. Their text is kept until the book or the
decision changes (a lease taken or ended, a decision published), since most scrapes of a quiet
node would otherwise render the same 80-odd lines again.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterator

from prometheus_client.core import Metric

from gpuwatch.exposure.leases import DURATION_BUCKETS_S, LeaseBook
from gpuwatch.exposure.metrics.names import GPU_LABELS, counter, gauge, histogram
from gpuwatch.exposure.metrics.text import TextRenderer
from gpuwatch.exposure.publication import Publication
from gpuwatch.policy.decision import NodeDecision, PriorityClass

# `le` of each bucket as Prometheus' clients write it ("1.0", ..., "600.0", "+Inf").
_BOUNDS = tuple("+Inf" if math.isinf(bound) else repr(bound) for bound in DURATION_BUCKETS_S)

OPEN_HELP = (
    "Open leases on the GPU by priority class: admitted jobs not yet released, expired (deadlines "
    "are checked at each sample) or ended with their GPU; read at each scrape."
)
ENDED_HELP = (
    "Leases ended since gpuwatch started, by priority class and how: released (the gateway said the "
    "job ended), expired (not released by its expected end plus the grace, or by the horizon when "
    "its duration was unknown; a release after that counts here), gpu_out (its GPU went FAILED or "
    "UNKNOWN)."
)
DURATION_HELP = (
    "How long released leases were held, from admission to release, in seconds, by priority class; "
    "expired leases and those ended with their GPU are not counted."
)


class LeaseFamilies:
    """gpuwatch_gpu_leases, gpuwatch_leases_ended_total and gpuwatch_job_duration_seconds.

    A collector (`collect`), and its text kept between scrapes (`text`). `publication` returns the
    publication being served: its decision names the GPUs (index and uuid) leases are shown for.
    """

    def __init__(self, book: LeaseBook, publication: Callable[[], Publication]) -> None:
        self._book = book
        self._publication = publication
        self._text = TextRenderer()
        # The decision and book counts the text was rendered at, and the text.
        self._cached: tuple[NodeDecision, tuple[object, ...], bytes] | None = None

    def text(self) -> bytes:
        """The families in the text format, rendered again only if a lease was taken or ended since."""
        decision = self._publication().decision
        # Open leases change only when one is taken (the slots taken only grow) or one ends (the
        # counts of ended leases only grow), and the durations only when one is released.
        counts = (tuple(self._book.totals), tuple(self._book.ended_counts().values()))
        cached = self._cached
        if cached is not None and cached[0] is decision and cached[1] == counts:
            return cached[2]
        # Rendered after the counts were read: a lease taken meanwhile is shown now, and the next
        # scrape, seeing different counts, renders again.
        text = self._text.render(self)
        self._cached = (decision, counts, text)
        return text

    def collect(self) -> Iterator[Metric]:
        """The three families, as the book stands now."""
        gpus = self._publication().decision.gpus
        if gpus:
            open_counts = self._book.open_counts()
            leases = gauge("gpu_leases", OPEN_HELP, (*GPU_LABELS, "class"))
            for gpu in gpus:
                for priority in PriorityClass:
                    count = open_counts.get((gpu.index, priority), 0)
                    leases.add_metric([str(gpu.index), gpu.uuid, priority.value], float(count))
            yield leases
        # Every class and every ending from the start, at 0: rate() and increase() then see the
        # first expiry, instead of a series appearing out of nothing.
        ended = counter("leases_ended", ENDED_HELP, ("class", "how"))
        for (priority, how), count in self._book.ended_counts().items():
            ended.add_metric([priority.value, how], float(count))
        yield ended
        durations = histogram("job_duration_seconds", DURATION_HELP, ("class",))
        for priority, (counts, total_s) in self._book.durations().items():
            cumulative = itertools.accumulate(counts)
            buckets = [(bound, float(count)) for bound, count in zip(_BOUNDS, cumulative, strict=True)]
            durations.add_metric([priority.value], buckets, total_s)
        yield durations
