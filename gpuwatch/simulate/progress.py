"""A one-line progress bar on stderr, for runs that take more than a second on a terminal."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO

SHOW_AFTER_S = 1.0  # wall seconds before the bar appears: shorter runs never show it
REDRAW_S = 0.1  # wall seconds between redraws
WIDTH = 30  # characters of bar


class ProgressBar:
    """Called with (share done 0-1, what is running); draws nothing unless `stream` is a terminal."""

    def __init__(self, stream: TextIO | None = None, wall: Callable[[], float] = time.monotonic) -> None:
        self._stream = stream or sys.stderr
        self._wall = wall
        self._started = wall()
        self._drawn_at: float | None = None
        self._enabled = self._stream.isatty()

    def __call__(self, share: float, running: str) -> None:
        """Redraw if due."""
        if not self._enabled:
            return
        now = self._wall()
        if now - self._started < SHOW_AFTER_S or (
            self._drawn_at is not None and now - self._drawn_at < REDRAW_S
        ):
            return
        self._drawn_at = now
        filled = round(min(1.0, share) * WIDTH)
        self._stream.write(f"\r\033[K[{'#' * filled}{' ' * (WIDTH - filled)}] {share:4.0%} {running}")
        self._stream.flush()

    def close(self) -> None:
        """Clear the bar's line, if one was drawn."""
        if self._drawn_at is not None:
            self._stream.write("\r\033[K")
            self._stream.flush()
