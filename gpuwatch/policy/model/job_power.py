"""One more job's power on a GPU (ΔP_job): configured, or learned from jobs' steps as they start and end."""

from __future__ import annotations

import statistics
from dataclasses import dataclass

from gpuwatch.policy.config import PolicyConfig

# A rise between two readings counts as a job starting when it is at least this large (W, and
# share of the limit): smaller wiggles are load noise.
MIN_STEP_W = 20.0
MIN_STEP_RATIO = 0.05
# A rise that ends within this share of the limit was cut short by the power cap: not a job's size.
CAP_RATIO = 0.97
KEEP_STEPS = 15  # the median of the last this many steps is the estimate


@dataclass(frozen=True, slots=True)
class JobPower:
    """The recent upward power steps of one GPU, W."""

    steps_w: tuple[float, ...] = ()

    def observe(
        self, before_w: float, after_w: float, limit_w: float | None, *, clocks_free: bool
    ) -> JobPower:
        """Learn from one pair of consecutive readings.

        `clocks_free` is False when either reading had clocks held down (power cap, thermal
        slowdown): power then moves for reasons other than jobs.
        """
        rise_w = after_w - before_w
        floor_w = max(MIN_STEP_W, MIN_STEP_RATIO * (limit_w or 0.0))
        capped = limit_w is not None and after_w >= CAP_RATIO * limit_w
        if not clocks_free or capped or rise_w < floor_w:
            return self
        return JobPower((*self.steps_w[-(KEEP_STEPS - 1) :], rise_w))

    def observe_fall(self, fall_w: float, limit_w: float | None) -> JobPower:
        """Learn from the fall one released job left (W): as good a measurement as a start's rise."""
        floor_w = max(MIN_STEP_W, MIN_STEP_RATIO * (limit_w or 0.0))
        if fall_w < floor_w:
            return self
        return JobPower((*self.steps_w[-(KEEP_STEPS - 1) :], fall_w))

    def estimate_w(self, limit_w: float | None, config: PolicyConfig) -> float | None:
        """ΔP_job: configured, else learned (median step), else a share of the limit; None if unknowable."""
        if config.job_power_w is not None:
            return config.job_power_w
        if self.steps_w:
            return statistics.median(self.steps_w)
        if limit_w is not None:
            return config.job_power_default_ratio * limit_w
        return None
