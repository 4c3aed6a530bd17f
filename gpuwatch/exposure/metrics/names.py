"""Shared vocabulary of the gpuwatch_* families: label names, HELP wording, family builders."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric

PREFIX = "gpuwatch_"
GPU_LABELS = ("gpu", "uuid")
# What every sampled value's HELP ends with: Prometheus sees the latest sample, not a live read.
SAMPLED = "from the latest sample (every --interval seconds)"


def sampled_help(what: str, unit: str) -> str:
    """HELP for a value read from the GPUs: what it is, its unit, and where it comes from."""
    return f"{what}, in {unit}; {SAMPLED}."


def decided_help(what: str, unit: str) -> str:
    """HELP for a value of the thermal policy's decision on the latest sample."""
    return f"{what}, in {unit}; the policy's decision on the latest sample (every --interval seconds)."


def gauge(name: str, documentation: str, labels: Sequence[str] = ()) -> GaugeMetricFamily:
    """An empty gauge family named `gpuwatch_<name>`."""
    return GaugeMetricFamily(PREFIX + name, documentation, labels=list(labels))


def counter(name: str, documentation: str, labels: Sequence[str] = ()) -> CounterMetricFamily:
    """An empty counter family named `gpuwatch_<name>` (its samples end in `_total`)."""
    return CounterMetricFamily(PREFIX + name, documentation, labels=list(labels))


def histogram(name: str, documentation: str, labels: Sequence[str] = ()) -> HistogramMetricFamily:
    """An empty histogram family named `gpuwatch_<name>` (samples `_bucket` with `le`, `_count`, `_sum`)."""
    return HistogramMetricFamily(PREFIX + name, documentation, labels=list(labels))


def non_empty(families: Iterable[Metric]) -> Iterator[Metric]:
    """The families that have samples: a family nothing reports is left out, not shown empty."""
    return (family for family in families if family.samples)
