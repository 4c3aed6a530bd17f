"""Telemetry sources: nvml (real GPUs), sim (simulated physics) and replay (recordings)."""
