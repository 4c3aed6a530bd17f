"""What systemd hears from a running daemon: READY after the first decision, STATUS, WATCHDOG while fresh."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable

from gpuwatch.exposure.board import Board
from gpuwatch.exposure.publication import Publication
from gpuwatch.sampler.loop import TIMEOUT
from gpuwatch.service.logs import fields
from gpuwatch.service.notify import Notifier
from gpuwatch.sources.model import Snapshot

log = logging.getLogger(__name__)

# Without a watchdog, the status is still checked this often, s (a change also wakes it at once).
_IDLE_TICK_S = 1.0


class SourceLiveness:
    """When the source last answered: a reading or an error, but not a read that timed out.

    A missing driver answers at once (with an error) and is retried, so it counts as alive; a
    hung NVML call keeps timing out, and is not.
    """

    def __init__(self, now_monotonic: float) -> None:
        self._lock = threading.Lock()
        self._answered_at = now_monotonic  # start-up counts as an answer: the first read is due
        self._timeouts = 0

    def observe(self, snapshot: Snapshot) -> None:
        """Note one published snapshot (on the sampler thread)."""
        timeouts = snapshot.health.failures.get(TIMEOUT, 0)
        with self._lock:
            if timeouts == self._timeouts:
                self._answered_at = snapshot.monotonic
            self._timeouts = timeouts

    def age_s(self, now_monotonic: float) -> float:
        """Seconds since the source last answered."""
        with self._lock:
            return max(0.0, now_monotonic - self._answered_at)


class ServiceReporter:
    """Tells systemd how the daemon is doing, from the event loop.

    READY=1 once the board holds a decision, STATUS= on each change, and WATCHDOG=1 every half
    watchdog period while the source answers within `fresh_s()`.

    Pinging from the event loop means a stuck loop stops the pings too.
    """

    def __init__(
        self,
        notifier: Notifier,
        board: Board,
        liveness: SourceLiveness,
        fresh_s: Callable[[], float],
        finished: Callable[[], bool],
    ) -> None:
        self._notifier = notifier
        self._board = board
        self._liveness = liveness
        self._fresh_s = fresh_s
        self._finished = finished  # a recording played to its end: nothing is hung
        self._ready = False
        self._status = ""
        self._last_ping = float("-inf")
        self._stale_logged = False
        self._wake: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        board.observe(self._on_publication)

    @property
    def ready(self) -> bool:
        """Whether READY=1 has been sent."""
        return self._ready

    async def run(self) -> None:
        """Report until cancelled."""
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        watchdog_s = self._notifier.watchdog_s
        tick_s = _IDLE_TICK_S if watchdog_s is None else min(_IDLE_TICK_S, watchdog_s / 4)
        while True:
            self.update(time.monotonic())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), tick_s)
            self._wake.clear()

    def update(self, now_monotonic: float) -> None:
        """Send what is due at `now_monotonic`."""
        decision = self._board.current.decision
        if decision.sequence >= 1:
            status = f"node {decision.state}: {decision.sentence}"
            if not self._ready:
                self._ready = True
                self._status = status
                self._notifier.ready(status)
            elif status != self._status:
                self._status = status
                self._notifier.status(status)
        self._watchdog(now_monotonic)

    def resend_ready(self) -> None:
        """READY=1 again with the current status: ends a reload that RELOADING=1 announced."""
        if self._ready:
            self._notifier.ready(self._status)

    def _watchdog(self, now: float) -> None:
        period_s = self._notifier.watchdog_s
        if period_s is None or not self._ready or now - self._last_ping < period_s / 2:
            return  # systemd arms the watchdog once READY=1 has come
        age_s = self._liveness.age_s(now)
        if age_s <= self._fresh_s() or self._finished():
            self._last_ping = now
            self._notifier.watchdog()
            if self._stale_logged:
                self._stale_logged = False
                log.info(
                    "samples are fresh again: pinging the systemd watchdog", extra=fields("watchdog_resumed")
                )
        elif not self._stale_logged:
            self._stale_logged = True
            log.error(
                "the GPU source has not answered for %.1f s: no more systemd watchdog pings, so "
                "systemd restarts gpuwatch within WatchdogSec (%g s)",
                age_s,
                period_s,
                extra=fields("watchdog_withheld", source_age_s=round(age_s, 1), watchdog_s=period_s),
            )

    def _on_publication(self, _previous: Publication, _new: Publication) -> None:
        """Wake the loop (called on the sampler thread, or on the loop for expiries)."""
        loop, wake = self._loop, self._wake
        if loop is None or wake is None:
            return
        with contextlib.suppress(RuntimeError):  # the loop has closed: nothing left to report
            loop.call_soon_threadsafe(wake.set)
