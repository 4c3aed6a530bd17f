"""Families that change between samples, built at each scrape: admissions, slots, reserved, sample age."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

from prometheus_client.core import Metric

from gpuwatch.exposure.metrics.names import GPU_LABELS, counter, gauge
from gpuwatch.exposure.publication import Publication
from gpuwatch.exposure.tally import AdmissionTally
from gpuwatch.policy.decision import PriorityClass


class LiveCollector:
    """Families read live at each scrape, never taking anything.

    `gpuwatch_admissions_total` from the tally; `gpuwatch_gpu_slots` and
    `gpuwatch_gpu_reserved_jobs` from the publication being served less (plus) the admissions
    taken since its decision, as /v1/state shows them; `gpuwatch_sample_age_seconds` from the
    clock. `publication` returns the publication being served; `monotonic` is the clock sample
    ages are measured on.
    """

    def __init__(
        self,
        tally: AdmissionTally,
        publication: Callable[[], Publication],
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._tally = tally
        self._publication = publication
        self._monotonic = monotonic

    def collect(self) -> Iterator[Metric]:
        """The families, as of now."""
        admissions = counter(
            "admissions",
            "Admit requests answered since gpuwatch started, by decision (admit or deny) and priority class.",
            ("decision", "class"),
        )
        for (decision, priority), count in self._tally.snapshot().items():
            admissions.add_metric([decision, priority], float(count))
        yield admissions
        publication = self._publication()
        yield from self._slots(publication)
        age_s = publication.decision.sample_age_at(self._monotonic())
        if age_s is not None:
            age = gauge(
                "sample_age_seconds",
                "Age of the latest good sample at this scrape, in seconds; it grows while sampling stalls.",
            )
            age.add_metric([], age_s)
            yield age

    @staticmethod
    def _slots(publication: Publication) -> Iterator[Metric]:
        decision = publication.decision
        if not decision.gpus:
            return
        taken = publication.taken()
        slots = gauge(
            "gpu_slots",
            "Jobs of the class the GPU may start now (its slots less the admissions taken since the "
            "latest sample); 0 while drained.",
            (*GPU_LABELS, "class"),
        )
        reserved = gauge(
            "gpu_reserved_jobs",
            "The GPU's open leases now, of every class (gpuwatch_gpu_leases has them by class).",
            GPU_LABELS,
        )
        open_now = publication.open_leases()
        for gpu in decision.gpus:
            labels = [str(gpu.index), gpu.uuid]
            used = taken.get(gpu.index, 0)
            left = gpu.slots.less(used)
            for priority in PriorityClass:
                free = 0 if decision.drained else left.of(priority)
                slots.add_metric([*labels, priority.value], float(free))
            held = gpu.reserved + used if open_now is None else open_now.get(gpu.index, 0)
            reserved.add_metric(labels, float(held))
        yield slots
        yield reserved
