"""The nvml source: NVIDIA GPUs read through NVML (pynvml), read-only."""

from gpuwatch.sources.nvml.source import NvmlSource

__all__ = ["NvmlSource"]
