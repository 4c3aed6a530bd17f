"""Replay source: plays gpuwatch recordings and nvidia-smi --query-gpu CSV as live telemetry."""

from gpuwatch.sources.replay.recording import RecordingWriter
from gpuwatch.sources.replay.source import ReplaySource, open_replay

__all__ = ["RecordingWriter", "ReplaySource", "open_replay"]
