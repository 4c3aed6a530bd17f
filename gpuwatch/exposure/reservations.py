"""The reservation book: each admission takes a slot on its GPU at once; the policy reads it each sample.

`take` runs on the event loop for each admission (not for dry runs): it bumps the GPU's running
count and notes when. The request path reads only the running counts (`totals`, a list the
event loop alone writes), so it needs no lock to know how many slots were taken since the
decision it answers from. The sampler thread asks for the `ledgers` once per sample, under a
lock held for microseconds: the counts and the recent admissions, which the policy matches
against the power steps that show them (gpuwatch/policy/reservations.py). Admissions older
than the horizon are dropped from the book whether shown or not.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from types import MappingProxyType

from gpuwatch.policy.reservations import Ledger, Ledgers

# More GPUs than any node has: indexes beyond it are refused by the routes long before.
MAX_GPUS = 1024


class ReservationBook:
    """Admissions per GPU index: running counts, and the recent ones with their times."""

    def __init__(self, horizon_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._horizon_s = horizon_s
        self._clock = clock
        self._lock = threading.Lock()
        self.totals: list[int] = []  # by GPU index; the event loop alone writes
        self._recent: list[deque[tuple[int, float]]] = []

    @property
    def horizon_s(self) -> float:
        """How long an admission stays in the book, s."""
        return self._horizon_s

    def set_horizon(self, horizon_s: float) -> None:
        """A reload changed the policy's horizon."""
        self._horizon_s = horizon_s

    def take(self, gpu: int) -> int:
        """One admission on GPU `gpu`, now; returns its number (the GPU's running count)."""
        if not 0 <= gpu < MAX_GPUS:
            raise ValueError(f"GPU index out of range: {gpu}")
        now = self._clock()
        with self._lock:
            while len(self.totals) <= gpu:
                self.totals.append(0)
                self._recent.append(deque())
            number = self.totals[gpu] + 1
            recent = self._recent[gpu]
            recent.append((number, now))
            self._forget(recent, now)
            self.totals[gpu] = number
        return number

    def total(self, gpu: int) -> int:
        """Admissions on GPU `gpu` so far (0 if none)."""
        totals = self.totals
        return totals[gpu] if gpu < len(totals) else 0

    def ledgers(self) -> Ledgers:
        """Every GPU's running count and recent admissions, as the policy reads them."""
        now = self._clock()
        with self._lock:
            for recent in self._recent:
                self._forget(recent, now)
            return MappingProxyType(
                {
                    gpu: Ledger(total, tuple(recent))
                    for gpu, (total, recent) in enumerate(zip(self.totals, self._recent, strict=True))
                }
            )

    def _forget(self, recent: deque[tuple[int, float]], now: float) -> None:
        while recent and recent[0][1] < now - self._horizon_s:
            recent.popleft()
