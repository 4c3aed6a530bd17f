"""What the policy remembers of one GPU between snapshots, and the moment a snapshot is judged at."""

from __future__ import annotations

from dataclasses import dataclass, field

from gpuwatch.policy.config import PolicyConfig
from gpuwatch.policy.decision import ThermalState
from gpuwatch.policy.forecast import Forecast, Load
from gpuwatch.policy.learning import MarginModel
from gpuwatch.policy.states import Ladder, Observation


@dataclass(frozen=True, slots=True)
class Moment:
    """The monotonic instant a snapshot is judged at, with the settings in force."""

    now: float
    config: PolicyConfig
    interval_s: float

    @property
    def stale_after_s(self) -> float:
        """Age past which a reading is stale, s."""
        return self.config.stale_after_s(self.interval_s)


@dataclass(frozen=True, slots=True)
class GpuTrack:
    """Everything kept about one GPU between snapshots; replaced, never changed."""

    model: MarginModel = field(default_factory=MarginModel)
    rejected_now: str | None = None  # why the latest reading was not learned from
    ladder: Ladder | None = None  # None until the first fresh reading
    observation: Observation | None = None
    prediction: Forecast | None = None
    load: Load | None = None
    pressure: float | None = None
    critical_xids: tuple[tuple[str, int], ...] = ()  # counts seen so far, by code
    xid_failed_until: float | None = None
    shown: ThermalState | None = None
    shown_since: float | None = None
