"""Injectable clocks: the system's, and a manual one for tests and virtual time."""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    """Where components read the time, so tests and simulations can run in virtual time."""

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back; only differences mean anything."""
        ...

    def time(self) -> float:
        """Wall-clock Unix seconds."""
        ...


class SystemClock:
    """The real clocks of the machine."""

    def monotonic(self) -> float:
        """`time.monotonic()`."""
        return time.monotonic()

    def time(self) -> float:
        """`time.time()`."""
        return time.time()


class ManualClock:
    """A clock that moves only when told to; wall time keeps a fixed offset from monotonic."""

    def __init__(self, start_monotonic: float = 0.0, wall_offset: float = 1_700_000_000.0) -> None:
        self._now = start_monotonic
        self._wall_offset = wall_offset

    def monotonic(self) -> float:
        """The current virtual time."""
        return self._now

    def time(self) -> float:
        """Virtual wall-clock time."""
        return self._now + self._wall_offset

    def advance(self, seconds: float) -> None:
        """Move time forward by `seconds` (never backwards)."""
        if seconds < 0:
            msg = f"cannot move a clock backwards by {seconds} s"
            raise ValueError(msg)
        self._now += seconds
