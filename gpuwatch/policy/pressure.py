"""Pressure in [0, 1]: how near a GPU, and the node, is to no `default` slot, for load-balancer weights.

A GPU's pressure is linear in its headroom: the lowest margin over the horizon with one more job
started on top of those reserved, less the `default` guard. It is 1 where that is at or below 0
(no `default` slot) and falls to 0 at `pressure_cool_margin_c` above it. It is continuous,
rises as the margin falls, as the forecast heats or as jobs are reserved. States that admit
nothing (CRITICAL, FAILED, UNKNOWN unless failing open) read 1.

The node's pressure is the mean over all its GPUs (a FAILED one reads 1: its capacity is gone).
It weights nodes against each other by how much headroom they have left, so one warm GPU among
eight cool ones lowers a node's weight by an eighth instead of taking it to the floor.
"""

from __future__ import annotations

from collections.abc import Sequence

from gpuwatch.policy.config import PolicyConfig


def headroom_pressure(headroom_c: float | None, config: PolicyConfig) -> float:
    """Pressure of a headroom above the `default` guard, °C: 1 at or below 0 (or unknown), 0 when cool."""
    if headroom_c is None:
        return 1.0
    return min(1.0, max(0.0, 1.0 - headroom_c / config.pressure_cool_margin_c))


def node_pressure(gpu_pressures: Sequence[float]) -> float:
    """The mean pressure of all the node's GPUs; 1 when it has none."""
    if not gpu_pressures:
        return 1.0
    return sum(gpu_pressures) / len(gpu_pressures)
