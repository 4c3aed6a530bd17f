"""Helpers for the nvml source tests: bounded polling, and an NvmlSource in a child process."""

from __future__ import annotations

import json
import os
import selectors
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from gpuwatch.sources.codec import sample_from_dict
from gpuwatch.sources.model import GpuSample

REPO_ROOT = Path(__file__).resolve().parents[2]
CHILD = Path(__file__).with_name("nvml_source_child.py")
CHILD_TIMEOUT_S = 20.0


def wait_until(condition: Callable[[], bool], timeout_s: float = 5.0, what: str = "condition") -> None:
    """Poll `condition` every 5 ms; fail the test if it is not true within `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.005)


@dataclass(frozen=True)
class ChildReading:
    """A SourceReading as a child process reported it."""

    gpus: tuple[GpuSample, ...]
    driver_version: str | None
    errors: Mapping[str, int]
    dropped: Mapping[str, int]
    error: str | None


class SourceChild:
    """An NvmlSource in a child process, steered line by line over stdin/stdout."""

    def __init__(self, env: Mapping[str, str]) -> None:
        child_env = dict(env)
        child_env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
        self._process = subprocess.Popen(
            [sys.executable, str(CHILD)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=child_env,
        )
        self._log: str | None = None
        self._selector = selectors.DefaultSelector()
        assert self._process.stdout is not None
        self._selector.register(self._process.stdout, selectors.EVENT_READ)

    def _ask(self, command: str) -> Any:
        assert self._process.stdin is not None
        assert self._process.stdout is not None
        self._process.stdin.write(command + "\n")
        self._process.stdin.flush()
        if not self._selector.select(timeout=CHILD_TIMEOUT_S):
            pytest.fail(f"child gave no answer to {command!r} within {CHILD_TIMEOUT_S} s")
        line = self._process.stdout.readline()
        if not line:
            pytest.fail(f"child exited on {command!r}: {self.stop()}")
        return json.loads(line)

    def read(self) -> ChildReading:
        """One `read()` of the child's source."""
        answer = self._ask("read")
        return ChildReading(
            gpus=tuple(sample_from_dict(gpu) for gpu in answer["gpus"]),
            driver_version=answer["driver_version"],
            errors=answer["errors"],
            dropped=answer["dropped"],
            error=answer["error"],
        )

    def advance(self, seconds: float) -> None:
        """Move the child's ManualClock."""
        self._ask(f"advance {seconds}")

    def stop(self) -> str:
        """End the child (once); its stderr, where it logs."""
        if self._log is None:
            try:
                _, self._log = self._process.communicate("exit\n", timeout=CHILD_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self._process.kill()
                _, self._log = self._process.communicate(timeout=CHILD_TIMEOUT_S)
        return self._log
