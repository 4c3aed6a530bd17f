"""`gpuwatch admit -- COMMAND`'s child: job-ending signals passed on to it, its status as shells give it.

While a `SignalWatch` is open, SIGINT, SIGTERM, SIGHUP and SIGQUIT are blocked in this (the only)
thread and taken with sigtimedwait, never by Python's handlers: a signal can then neither kill
`gpuwatch admit` between taking a lease and releasing it, nor raise KeyboardInterrupt in the
middle of a release. Before the command runs, such a signal ends the wait for a slot
(`Interrupted`); while it runs, it is passed on to the command, and `gpuwatch admit` waits for
the command to exit. A signal the kernel sent to the terminal's foreground process group (Ctrl-C,
a hangup) already reached the command, which runs in the same group, so it is not sent twice;
one that a process sent to `gpuwatch admit` (systemd, kill, timeout) is.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Self

# The signals that end a job, passed on to the command.
FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)
# Python ignores these at startup; the command gets them back at their defaults, as subprocess does.
_PYTHON_IGNORED = (signal.SIGPIPE, signal.SIGXFSZ)
# How long one wait for a signal or the command's exit lasts at most, s: SIGCHLD ends it at once;
# this only bounds a missed one.
_POLL_S = 0.5
# Exit statuses as POSIX shells give them.
STATUS_SIGNALLED = 128  # plus the signal's number: killed by that signal
STATUS_NOT_FOUND = 127
STATUS_NOT_EXECUTABLE = 126


class Interrupted(Exception):  # noqa: N818 - a signal, not an error
    """A watched signal came before the command ran."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum

    @property
    def status(self) -> int:
        """The exit status a shell gives a process killed by this signal."""
        return STATUS_SIGNALLED + self.signum


class CannotRun(Exception):  # noqa: N818 - named for what the user reads
    """The command could not be started: not found (status 127) or not executable (126)."""

    def __init__(self, command: str, error: OSError) -> None:
        super().__init__(f"cannot run {command!r}: {error.strerror or error}")
        self.status = STATUS_NOT_FOUND if isinstance(error, FileNotFoundError) else STATUS_NOT_EXECUTABLE


class SignalWatch:
    """Holds the job-ending signals for `gpuwatch admit` while it is open; see the module's docstring."""

    def __init__(self) -> None:
        self._watched: frozenset[int] = frozenset()
        self._waited: frozenset[int] = frozenset()
        self._mask_before: set[int] = set()

    def __enter__(self) -> Self:
        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, ())
        # An ignored signal (nohup's SIGHUP) stays ignored, and one the caller blocks stays theirs.
        self._watched = frozenset(
            signum
            for signum in FORWARDED
            if signum not in blocked and signal.getsignal(signum) != signal.SIG_IGN
        )
        self._waited = self._watched | {signal.SIGCHLD}
        self._mask_before = signal.pthread_sigmask(signal.SIG_BLOCK, self._waited)
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        # A signal now comes after the command and the release: `gpuwatch admit` is ending anyway.
        while signal.sigtimedwait(self._waited, 0) is not None:
            pass
        signal.pthread_sigmask(signal.SIG_SETMASK, self._mask_before)

    def sleep(self, seconds: float) -> None:
        """Wait `seconds`; a watched signal ends the wait with Interrupted."""
        if not self._watched:  # every one of them ignored or blocked by the caller
            time.sleep(max(0.0, seconds))
            return
        info = signal.sigtimedwait(self._watched, max(0.0, seconds))
        if info is not None:
            raise Interrupted(info.si_signo)

    def check(self) -> None:
        """Raise Interrupted if a watched signal came while it was blocked."""
        self.sleep(0.0)

    def run(self, command: Sequence[str], environment: Mapping[str, str]) -> int:
        """Run `command` (found on PATH), pass watched signals on; its exit status as a shell gives it.

        Raises CannotRun when it cannot be started.
        """
        # posix_spawnp, not subprocess: it gives the command the signal mask the caller had, where
        # subprocess would hand on the signals blocked here (or need a preexec_fn, unsafe with threads).
        try:
            pid = os.posix_spawnp(
                command[0],
                list(command),
                dict(environment),
                setsigmask=tuple(self._mask_before),
                setsigdef=_PYTHON_IGNORED,
            )
        except OSError as exc:
            raise CannotRun(command[0], exc) from None
        while True:
            reaped, status = os.waitpid(pid, os.WNOHANG)
            if reaped:
                code = os.waitstatus_to_exitcode(status)
                return STATUS_SIGNALLED - code if code < 0 else code
            info = signal.sigtimedwait(self._waited, _POLL_S)
            if info is not None and info.si_signo in self._watched and _from_a_process(info, pid):
                with contextlib.suppress(ProcessLookupError):  # it exited just now: waitpid reaps it next
                    os.kill(pid, info.si_signo)


def _from_a_process(info: signal.struct_siginfo, child: int) -> bool:
    """Whether a signal was sent by a process other than the command (not by the kernel: a terminal).

    Linux's SI_FROMUSER: si_code <= 0 for kill, sigqueue and tgkill; the terminal's signals come
    as SI_KERNEL (0x80). The command signalling its own process group (which holds `gpuwatch
    admit`) is not sent back to it.
    """
    return info.si_code <= 0 and info.si_pid != child
