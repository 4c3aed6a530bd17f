"""What a controller answers for a job (start it there, hold it back, wait for a slot), and its protocol."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from gpuwatch.simulate.workload import Job


@dataclass(frozen=True, slots=True)
class Start:
    """Start the job now on GPU `gpu` of node `node`."""

    node: int
    gpu: int


@dataclass(frozen=True, slots=True)
class Hold:
    """Held back for heat: the job asks again after `retry_after_s`."""

    retry_after_s: float


@dataclass(frozen=True, slots=True)
class Full:
    """The controller would admit it, but every GPU it would use is at the concurrency limit."""


FULL = Full()
Decision = Start | Hold | Full


class Controller(Protocol):
    """One way of admitting jobs.

    The gateway calls `observe` at every sampling instant, after the physics has reached it,
    `decide` for each job that may start (some GPU has a free slot), and `ended` for each job
    that ends.
    """

    def observe(self, now_s: float) -> None:
        """Take in the GPUs as they are at `now_s`."""
        ...

    def decide(self, job: Job, now_s: float) -> Decision:
        """Where `job` starts now, or why it waits."""
        ...

    def ended(self, job: Job, now_s: float) -> None:
        """`job`, started by this controller, ended at `now_s`."""
        ...

    def levels(self) -> tuple[int, ...]:
        """Per node, how hard the controller holds work back now: 0 not at all ... 3 nothing admitted."""
        ...

    def close(self) -> None:
        """Release what the controller holds (threads)."""
        ...
