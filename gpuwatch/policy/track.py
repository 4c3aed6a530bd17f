"""What the policy remembers of one GPU between snapshots: each stage's own memory, nothing else."""

from __future__ import annotations

from dataclasses import dataclass, field

from gpuwatch.policy.leases import LeaseMemory
from gpuwatch.policy.model import Calibration, MarginModel
from gpuwatch.policy.readings import XidMemory
from gpuwatch.policy.states import Shown


@dataclass(frozen=True, slots=True)
class GpuTrack:
    """One GPU's memory; replaced, never changed."""

    xids: XidMemory = field(default_factory=XidMemory)  # the readings stage's
    model: MarginModel = field(default_factory=MarginModel)  # the forecast stage's model's
    leases: LeaseMemory = field(default_factory=LeaseMemory)  # the model's: leases shown or seen to end
    shown: Shown = field(default_factory=Shown)  # the states stage's
    calibration: Calibration = field(default_factory=Calibration)  # the model's: its own errors
