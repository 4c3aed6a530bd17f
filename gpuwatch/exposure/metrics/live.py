"""The families that change between samples, built at each scrape: admissions and sample age."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

from prometheus_client.core import Metric

from gpuwatch.exposure.metrics.names import counter, gauge
from gpuwatch.exposure.tally import AdmissionTally
from gpuwatch.policy.decision import NodeDecision


class LiveCollector:
    """`gpuwatch_admissions_total` from the tally, `gpuwatch_sample_age_seconds` from the clock.

    `decision` returns the decision being served; `monotonic` is the clock sample ages are
    measured on.
    """

    def __init__(
        self,
        tally: AdmissionTally,
        decision: Callable[[], NodeDecision],
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._tally = tally
        self._decision = decision
        self._monotonic = monotonic

    def collect(self) -> Iterator[Metric]:
        """The two families, as of now."""
        admissions = counter(
            "admissions",
            "Admit requests answered since gpuwatch started, by decision (admit or deny) and priority class.",
            ("decision", "class"),
        )
        for (decision, priority), count in self._tally.snapshot().items():
            admissions.add_metric([decision, priority], float(count))
        yield admissions
        age_s = self._decision().sample_age_at(self._monotonic())
        if age_s is not None:
            age = gauge(
                "sample_age_seconds",
                "Age of the latest good sample at this scrape, in seconds; it grows while sampling stalls.",
            )
            age.add_metric([], age_s)
            yield age
