"""Simulated GPUs with RC thermal physics and SKU profiles: the `--source sim:SPEC` source."""

from gpuwatch.sources.sim.source import SimSource, open_sim

__all__ = ["SimSource", "open_sim"]
