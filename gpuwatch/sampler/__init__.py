"""The sampler: reads a source at a fixed interval and publishes immutable snapshots."""

from gpuwatch.sampler.loop import Sampler

__all__ = ["Sampler"]
