"""The forecast stage: the GPU's model (policy/model) run once on the sample's readings.

What it hands the slots stage is the model's Outlook: what the model learned from the readings,
the margin's path over the horizon at present power with the allowance for its own errors, the
time to slowdown, and what a job costs.
"""

from __future__ import annotations

from gpuwatch.policy import model
from gpuwatch.policy.leases import Ledger
from gpuwatch.policy.readings import Readings
from gpuwatch.policy.track import GpuTrack


def outlook(readings: Readings, track: GpuTrack, ledger: Ledger) -> model.Outlook:
    """The model's outlook after `readings`, from its memory in `track` and the GPU's leases in `ledger`."""
    return model.step(readings, track.model, track.leases, track.calibration, ledger)
