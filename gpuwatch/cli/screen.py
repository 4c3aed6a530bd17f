"""A terminal screen redrawn in place for `--watch`, as `watch` and nvitop do; plain lines elsewhere."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import sys
import time
from collections.abc import Callable, Iterator
from types import FrameType
from typing import TextIO

# ANSI/VT100: the alternate screen keeps the shell's scrollback untouched, and it is left on exit.
# Line wrap off, so a line wider than the terminal is cut rather than pushing the frame down.
_ENTER = "\x1b[?1049h\x1b[?25l\x1b[?7l"  # alternate screen, cursor hidden, no wrap
_LEAVE = "\x1b[?7h\x1b[?25h\x1b[?1049l"  # wrap, cursor shown, normal screen back
_HOME = "\x1b[H"
_CLEAR_LINE_END = "\x1b[K"
_CLEAR_BELOW = "\x1b[J"


def colour_wanted() -> bool:
    """Colours on a terminal, none when piped or when NO_COLOR is set (https://no-color.org)."""
    return sys.stdout.isatty() and not os.environ.get("NO_COLOR")


class Screen:
    """Draws whole frames: in place on a terminal (no scrolling), appended lines elsewhere."""

    def __init__(self, *, in_place: bool, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stdout
        self.in_place = in_place and self.stream.isatty()
        self._last = ""

    def draw(self, frame: str) -> None:
        """Show `frame`: over the previous one on a terminal, after it otherwise."""
        self._last = frame
        if not self.in_place:
            self.stream.write(frame + "\n")
        else:
            self.stream.write(_HOME + self._fitted(frame) + _CLEAR_BELOW)
        self.stream.flush()

    def _fitted(self, frame: str) -> str:
        """The lines that fit the terminal's height, each cleared to its end so nothing old shows."""
        rows = shutil.get_terminal_size().lines
        lines = frame.split("\n")[:rows]
        return "\r\n".join(line + _CLEAR_LINE_END for line in lines)

    def redraw(self) -> None:
        """The last frame again (after a resize)."""
        if self._last:
            self.draw(self._last)


@contextlib.contextmanager
def watching(screen: Screen) -> Iterator[None]:
    """The alternate screen while watching, redrawn on a resize; the terminal restored however it ends."""
    if not screen.in_place:
        yield
        return
    stream = screen.stream
    previous: Callable[[int, FrameType | None], object] | int | None = None
    if hasattr(signal, "SIGWINCH"):
        previous = signal.signal(signal.SIGWINCH, lambda _signum, _frame: screen.redraw())
    stream.write(_ENTER)
    stream.flush()
    try:
        yield
    finally:
        stream.write(_LEAVE)
        stream.flush()
        if hasattr(signal, "SIGWINCH"):
            signal.signal(signal.SIGWINCH, previous)


def show_every(
    screen: Screen,
    frame: Callable[[], str],
    *,
    watch_s: float | None,
    count: int | None,
    failures: tuple[type[Exception], ...],
) -> bool:
    """Draw `frame()` once, or every `watch_s` seconds until `count` frames or Ctrl-C.

    A failure of a later frame (one of `failures`) is shown in place of the frame on a terminal
    and on stderr otherwise, so piped output (JSON lines) stays one document a line; the first
    frame's failure is raised. Returns True when the last frame was drawn, False when it failed.
    """
    drawn = False
    shown = 0
    try:
        with watching(screen):
            while True:
                try:
                    text = frame()
                except failures as exc:
                    if shown == 0:
                        raise
                    drawn = False
                    if screen.in_place:
                        screen.draw(f"gpuwatch: {exc}")
                    else:
                        print(f"gpuwatch: {exc}", file=sys.stderr, flush=True)  # noqa: T201 - a CLI's stderr
                else:
                    drawn = True
                    screen.draw(text)
                shown += 1
                if watch_s is None or (count is not None and shown >= count):
                    break
                time.sleep(watch_s)
    except KeyboardInterrupt:
        pass
    return drawn
