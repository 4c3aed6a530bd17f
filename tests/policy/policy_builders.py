"""Plain-value builders of readings, samples and snapshots for the policy tests."""

from __future__ import annotations

from collections.abc import Mapping

from gpuwatch.policy.config import PolicyConfig
from gpuwatch.policy.decision import NodeDecision
from gpuwatch.policy.engine import Policy
from gpuwatch.sources.model import (
    GpuHealth,
    GpuIdentity,
    GpuReading,
    GpuSample,
    RecoveryAction,
    SampleHealth,
    Snapshot,
    frozen_counts,
)


def reading(at: float, margin: float | None = 30.0, **fields: object) -> GpuReading:
    """A reading at monotonic `at`: 400 of 700 W, memory margin 40 °C, no clock reasons, no recovery."""
    values: dict[str, object] = {
        "memory_margin_c": 40.0,
        "power_w": 400.0,
        "power_limit_w": 700.0,
        "clock_event_reasons": 0,
        "recovery_action": RecoveryAction.NONE,
    }
    values.update(fields)
    return GpuReading(taken_at=1_700_000_000.0 + at, monotonic=at, margin_c=margin, **values)  # type: ignore[arg-type]


def sample(
    index: int = 0,
    value: GpuReading | None = None,
    *,
    health: GpuHealth = GpuHealth.OK,
    xids: Mapping[str, int] | None = None,
    last_xid: int | None = None,
) -> GpuSample:
    identity = GpuIdentity(index=index, uuid=f"GPU-test-{index}", name="Test GPU")
    return GpuSample(identity, value, health, None, frozen_counts(xids), last_xid)


def snapshot(at: float, *samples: GpuSample, sequence: int = 1) -> Snapshot:
    return Snapshot(
        sequence=sequence,
        taken_at=1_700_000_000.0 + at,
        monotonic=at,
        source="test",
        gpus=samples,
        health=SampleHealth(attempts=sequence, last_success_monotonic=at),
    )


def drive(
    policy: Policy, margins: list[float], *, start: float = 0.0, **kwargs: object
) -> list[NodeDecision]:
    """One GPU read at 1 s intervals with these margins; the decision after each."""
    return [
        policy.update(snapshot(start + i, sample(0, reading(start + i, margin, **kwargs)), sequence=i + 1))  # type: ignore[arg-type]
        for i, margin in enumerate(margins)
    ]


# DESIGN §2's starting guards, wider apart than the tuned defaults, so that a test can put a
# margin between two of them: the mechanics under test do not depend on the tuning.
WIDE_GUARDS = {"critical_guard_c": 1.0, "default_guard_c": 3.0, "sheddable_guard_c": 8.0}


# And no prior allowance for the forecast's errors: a test reads a GPU's first decisions as the
# mechanics make them, not as a new board's prior holds them back (test_policy_calibration.py
# tests the priors).
NO_PRIORS = {"forecast_error_prior_c": 0.0, "start_error_prior_ratio": 0.0}


def wide_config(**settings: object) -> PolicyConfig:
    """A PolicyConfig with WIDE_GUARDS and NO_PRIORS unless `settings` say otherwise."""
    return PolicyConfig(**{**WIDE_GUARDS, **NO_PRIORS, **settings})  # type: ignore[arg-type]


def policy(**settings: object) -> Policy:
    return Policy(wide_config(**settings), interval_s=1.0)
