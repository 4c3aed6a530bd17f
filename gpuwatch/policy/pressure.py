"""Pressure in [0, 1]: how close a GPU, and the node, is to its thermal limit, for load-balancer weights.

A GPU's pressure is linear in its effective margin — the lowest of its margin, its memory
margin and its predicted margin (after the horizon, with one more job) — from 0 at
`pressure_cool_margin_c` (40 °C) to 1 at the CRITICAL enter margin (0 °C). It is continuous
and never rises with any of the three margins. States that admit nothing read 1; an UNKNOWN
GPU (unless failing open) reads at least what the HOT enter margin would.

The node's pressure is the mean over all its GPUs (a FAILED one reads 1: its capacity is gone).
It weights nodes against each other by how much headroom they have left, so one warm GPU among
eight cool ones lowers a node's weight by an eighth instead of taking it to the floor; whether
the node admits at all is its state's business (k-of-n), not the pressure's.
"""

from __future__ import annotations

from collections.abc import Sequence

from gpuwatch.policy.config import PolicyConfig
from gpuwatch.policy.decision import ThermalState


def margin_pressure(margin_c: float, config: PolicyConfig) -> float:
    """Pressure of an effective margin: 0 at or above the cool margin, 1 at or below the limit."""
    span_c = config.pressure_cool_margin_c - config.critical_enter_margin_c
    return min(1.0, max(0.0, (config.pressure_cool_margin_c - margin_c) / span_c))


def gpu_pressure(
    margin_c: float | None,
    memory_margin_c: float | None,
    predicted_margin_c: float | None,
    config: PolicyConfig,
) -> float:
    """Pressure from the lowest known margin; 1 when none is known."""
    known = [m for m in (margin_c, memory_margin_c, predicted_margin_c) if m is not None]
    return margin_pressure(min(known), config) if known else 1.0


def state_floor(state: ThermalState, config: PolicyConfig) -> float:
    """The least pressure a GPU in `state` reports."""
    if state in (ThermalState.CRITICAL, ThermalState.FAILED):
        return 1.0
    if state is ThermalState.UNKNOWN and not config.fail_open:
        return margin_pressure(config.hot_enter_margin_c, config)
    return 0.0


def node_pressure(gpu_pressures: Sequence[float]) -> float:
    """The mean pressure of all the node's GPUs; 1 when it has none."""
    if not gpu_pressures:
        return 1.0
    return sum(gpu_pressures) / len(gpu_pressures)
