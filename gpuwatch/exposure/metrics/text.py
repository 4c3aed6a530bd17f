"""The Prometheus text format 0.0.4 as generate_latest writes it, with each series' label text cached."""

from __future__ import annotations

import math
from collections.abc import Iterable

from prometheus_client import generate_latest
from prometheus_client.core import Metric
from prometheus_client.openmetrics.exposition import escape_label_name, escape_metric_name
from prometheus_client.registry import Collector

# Types written here: the suffix of the name their HELP and TYPE lines carry, and the suffixes
# their samples may carry. Any other family (and any family with a timestamp or an
# OpenMetrics-only sample such as _created) is left to generate_latest.
_SUFFIXES: dict[str, tuple[str, tuple[str, ...]]] = {
    "gauge": ("", ("",)),
    "counter": ("_total", ("_total",)),
    "histogram": ("", ("_bucket", "_count", "_sum")),
}
# Label sets remembered at most. Ours are bounded (GPUs x reasons, XID codes, classes: a few
# thousand), so the cache is only emptied if something unforeseen keeps adding new ones.
MAX_CACHED_LABEL_SETS = 16384


class _One:
    """A collector of one family, to hand that family to generate_latest."""

    def __init__(self, family: Metric) -> None:
        self._family = family

    def collect(self) -> Iterable[Metric]:
        return (self._family,)


def _value(number: float) -> str:
    """A sample value as generate_latest writes it (prometheus_client's floatToGoString)."""
    value = float(number)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    text = repr(value)
    point = text.find(".")
    # Go writes an exponent sooner than Python: from seven digits before the point (positive
    # values only, as floatToGoString does).
    if value > 0 and point > 6:
        mantissa = f"{text[0]}.{text[1:point]}{text[point + 1 :]}".rstrip("0.")
        return f"{mantissa}e+{point - 1:02d}"
    return text


class TextRenderer:
    """Renders collectors as generate_latest does, byte for byte, a few times faster.

    generate_latest escapes, sorts and formats every label of every sample on every call; for
    8 GPUs that is most of the milliseconds a render takes. Here each distinct label set (in the
    order its family lists it) is formatted once and kept, as are escaped names. Safe to call from
    several threads: the caches are plain dicts, and a lost race only formats one entry twice.
    """

    def __init__(self) -> None:
        self._labels: dict[tuple[tuple[str, str], ...], str] = {}
        self._names: dict[str, str] = {}

    def render(self, collector: Collector) -> bytes:
        """`collector`'s families in the text format."""
        out: list[str] = []
        for family in collector.collect():
            suffixes = _SUFFIXES.get(family.type)
            if suffixes is None:
                out.append(generate_latest(_One(family)).decode())
                continue
            head, ends = suffixes
            # The sample names the family may use: one for gauges and counters, compared as is.
            names = [family.name + end for end in ends]
            if not all(s.name in names and s.timestamp is None for s in family.samples):
                out.append(generate_latest(_One(family)).decode())
                continue
            name = self._name(family.name + head)
            documentation = family.documentation.replace("\\", r"\\").replace("\n", r"\n")
            out.append(f"# HELP {name} {documentation}\n# TYPE {name} {family.type}\n")
            if len(names) == 1:
                sample_name = self._name(names[0])
                out.extend(
                    f"{sample_name}{self._label_text(s.labels)} {_value(s.value)}\n" for s in family.samples
                )
            else:
                out.extend(
                    f"{self._name(s.name)}{self._label_text(s.labels)} {_value(s.value)}\n"
                    for s in family.samples
                )
        return "".join(out).encode()

    def _name(self, name: str) -> str:
        escaped = self._names.get(name)
        if escaped is None:
            escaped = self._names[name] = escape_metric_name(name)
        return escaped

    def _label_text(self, labels: dict[str, str]) -> str:
        key = tuple(labels.items())
        text = self._labels.get(key)
        if text is None:
            if len(self._labels) >= MAX_CACHED_LABEL_SETS:
                self._labels.clear()
            text = self._labels[key] = _format_labels(labels)
        return text


def _format_labels(labels: dict[str, str]) -> str:
    """`{name="value",...}` sorted by name, escaped as generate_latest does; empty for no labels."""
    if not labels:
        return ""
    pairs = (
        '{}="{}"'.format(
            escape_label_name(name), value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")
        )
        for name, value in sorted(labels.items())
    )
    return "{" + ",".join(pairs) + "}"
