"""The gpuwatch_* collector: every family built fresh from the latest snapshot and decision."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

from prometheus_client.core import Metric

from gpuwatch import __version__
from gpuwatch.exposure.metrics.gpu_families import decision_families, sample_families
from gpuwatch.exposure.metrics.names import SAMPLED, counter, decided_help, gauge, non_empty
from gpuwatch.policy.decision import NodeDecision, ThermalState
from gpuwatch.sampler.loop import EXCEPTION, TIMEOUT
from gpuwatch.sources.model import SampleHealth, Snapshot

# Failure codes the sampler itself counts: shown at 0 from the start, so that rate() and
# increase() see the first failure instead of a series appearing out of nothing.
KNOWN_FAILURES = (TIMEOUT, EXCEPTION)


@dataclass(frozen=True, slots=True)
class Observation:
    """What the families describe: the latest snapshot (None before the first) and its decision."""

    snapshot: Snapshot | None
    decision: NodeDecision


class GpuwatchCollector:
    """A prometheus_client collector of the gpuwatch_* families (admissions and sample age aside).

    `observe` returns the observation to describe; it is called once per `collect()`, so one
    collection never mixes two samples. `interval_s` is the sampling interval (None: unknown).
    """

    def __init__(
        self, observe: Callable[[], Observation], interval_s: float | None, version: str = __version__
    ) -> None:
        self._observe = observe
        self._interval_s = interval_s
        self._version = version

    def collect(self) -> Iterator[Metric]:
        """The families, each built now."""
        observation = self._observe()
        snapshot, decision = observation.snapshot, observation.decision
        yield from self._self_health(snapshot)
        yield from self._node(decision)
        if snapshot is not None:
            yield from sample_families(snapshot.gpus, snapshot.driver_version)
        yield from decision_families(decision.gpus)

    def _self_health(self, snapshot: Snapshot | None) -> Iterator[Metric]:
        health = snapshot.health if snapshot is not None else SampleHealth()
        sampled = snapshot is not None and snapshot.sequence > 0
        build = gauge("build_info", "Always 1; the gpuwatch version serving these metrics.", ("version",))
        build.add_metric([self._version], 1.0)
        up = gauge("up", f"1 when the latest sample read the GPUs' source, else 0; {SAMPLED}.")
        up.add_metric([], float(sampled and health.source_error is None))
        interval = gauge("sample_interval_seconds", "Time between samples (--interval), in seconds.")
        if self._interval_s is not None:
            interval.add_metric([], self._interval_s)
        yield from non_empty((build, up, interval))
        yield from non_empty(self._health_families(health))

    @staticmethod
    def _health_families(health: SampleHealth) -> Iterator[Metric]:
        last = gauge(
            "last_sample_timestamp_seconds", "When the latest good sample was taken, in Unix seconds."
        )
        if health.last_success is not None:
            last.add_metric([], health.last_success)
        duration = gauge("sample_duration_seconds", f"Time the latest sample took, in seconds; {SAMPLED}.")
        if health.duration_s is not None:
            duration.add_metric([], health.duration_s)
        attempts = counter("samples", "Samples attempted since gpuwatch started.")
        attempts.add_metric([], float(health.attempts))
        errors = counter(
            "sample_errors",
            "Failed source calls since gpuwatch started, by NVML error name or sampler code.",
            ("code",),
        )
        for code, count in sorted({**dict.fromkeys(KNOWN_FAILURES, 0), **health.failures}.items()):
            errors.add_metric([code], float(count))
        dropped = counter(
            "sample_dropped_values",
            "Readings dropped as implausible since gpuwatch started, by field.",
            ("field",),
        )
        for name, count in health.dropped_values.items():
            dropped.add_metric([name], float(count))
        return iter((last, duration, attempts, errors, dropped))

    @staticmethod
    def _node(decision: NodeDecision) -> Iterator[Metric]:
        state = gauge(
            "node_state",
            "1 for the node's current thermal state (worst-of, or k-of-n, over its GPUs), 0 for the others; "
            "the policy's decision on the latest sample (every --interval seconds).",
            ("state",),
        )
        for candidate in ThermalState:
            state.add_metric([candidate.value], float(decision.state is candidate))
        pressure = gauge(
            "node_pressure_ratio",
            decided_help("Node thermal pressure, the mean over its GPUs (a failed GPU reads 1)", "ratio 0-1"),
        )
        pressure.add_metric([], decision.pressure)
        return iter((state, pressure))
