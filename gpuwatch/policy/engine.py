"""The policy engine: snapshots in, node decisions out, per-GPU history kept by uuid; and `expire`.

Pure in the sense that matters: no clock (the snapshot's monotonic time is "now"), no I/O, no
threads. `Policy` holds only the per-GPU tracks between calls; call `update` from one thread.
"""

from __future__ import annotations

import dataclasses

from gpuwatch.policy import reasons
from gpuwatch.policy.config import PolicyConfig
from gpuwatch.policy.decision import GpuDecision, NodeDecision, ThermalState
from gpuwatch.policy.durations import planned
from gpuwatch.policy.gpu import assess
from gpuwatch.policy.leases import NO_LEASES, NO_LEDGER, Leases
from gpuwatch.policy.node import aggregate
from gpuwatch.policy.readings import Moment
from gpuwatch.policy.track import GpuTrack
from gpuwatch.policy.verdict import as_unknown
from gpuwatch.sources.model import Snapshot


class Policy:
    """The thermal policy of one node, fed one snapshot at a time."""

    def __init__(self, config: PolicyConfig, interval_s: float) -> None:
        if not interval_s > 0:
            raise ValueError(f"the sampling interval must be > 0 s, got {interval_s}")
        self._config = config
        self._interval_s = interval_s
        self._tracks: dict[str, GpuTrack] = {}

    @property
    def config(self) -> PolicyConfig:
        """The settings in force."""
        return self._config

    @property
    def interval_s(self) -> float:
        """The sampling interval the staleness limit is counted in, s."""
        return self._interval_s

    def reconfigure(self, config: PolicyConfig) -> None:
        """Apply new settings (a SIGHUP reload), keeping every GPU's history and state."""
        self._config = config

    def update(self, snapshot: Snapshot, leases: Leases = NO_LEASES) -> NodeDecision:
        """The node decision for `snapshot`; GPUs no longer in it are forgotten.

        `leases` are the open leases on each GPU (by index) and the recent releases, as the
        exposure's book holds them when the snapshot is judged: the forecast plans with the
        power their jobs start and stop drawing, and the classes' job durations are learned
        from how long the released ones were held.
        """
        now = snapshot.monotonic
        durations = planned(leases.held_s, self._config)
        moment = Moment(now, self._config, self._interval_s, durations)
        tracks: dict[str, GpuTrack] = {}
        decisions: list[GpuDecision] = []
        for sample in snapshot.gpus:
            uuid = sample.identity.uuid
            ledger = leases.gpus.get(sample.identity.index, NO_LEDGER)
            track, decision = assess(self._tracks.get(uuid, GpuTrack()), sample, ledger, moment)
            tracks[uuid] = track
            decisions.append(decision)
        self._tracks = tracks
        return aggregate(
            tuple(decisions),
            self._config,
            sequence=snapshot.sequence,
            taken_at=snapshot.taken_at,
            decided_at=now,
            sample_age_s=snapshot.age_s(now),
            job_plans=tuple((cls, plan.seconds, str(plan.basis)) for cls, plan in durations.plans),
        )


def expire(
    decision: NodeDecision, now_monotonic: float, config: PolicyConfig, interval_s: float
) -> NodeDecision:
    """`decision` as it stands at `now_monotonic`: GPUs whose reading has gone stale become UNKNOWN.

    Returns `decision` itself (no copy) while every reading is fresh, so it is cheap to call on
    every request.
    """
    stale_after_s = config.stale_after_s(interval_s)
    if all(not _expires(g, decision, now_monotonic, stale_after_s) for g in decision.gpus):
        return decision
    gpus = tuple(
        _expired(g, decision, now_monotonic, config, interval_s)
        if _expires(g, decision, now_monotonic, stale_after_s)
        else g
        for g in decision.gpus
    )
    return aggregate(
        gpus,
        config,
        sequence=decision.sequence,
        taken_at=decision.taken_at,
        decided_at=now_monotonic,
        sample_age_s=decision.sample_age_at(now_monotonic),
        job_plans=decision.job_plans,
    )


def _sampled_at(gpu: GpuDecision, decision: NodeDecision) -> float:
    return gpu.sampled_at if gpu.sampled_at is not None else decision.decided_at


def _expires(gpu: GpuDecision, decision: NodeDecision, now: float, stale_after_s: float) -> bool:
    """Whether a GPU still judged on its reading has had that reading go stale."""
    if gpu.state in (ThermalState.UNKNOWN, ThermalState.FAILED):
        return False
    return now - _sampled_at(gpu, decision) > stale_after_s


def _expired(
    gpu: GpuDecision, decision: NodeDecision, now: float, config: PolicyConfig, interval_s: float
) -> GpuDecision:
    expected_s = interval_s  # the next sample, if the sampler is alive at all
    age_s = now - _sampled_at(gpu, decision)
    unknown = as_unknown(gpu, reasons.STALE_SAMPLE, age_s, expected_s, Moment(now, config, interval_s))
    return dataclasses.replace(unknown, state_since=now)
