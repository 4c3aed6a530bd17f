"""Fixtures for the nvml source tests: sources on a ManualClock, and sources in a child process."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping

import pytest
from nvml_helpers import SourceChild

from gpuwatch.sources.clock import ManualClock
from gpuwatch.sources.nvml import NvmlSource


@pytest.fixture
def clock() -> ManualClock:
    """Virtual time for backoff."""
    return ManualClock(start_monotonic=100.0)


@pytest.fixture
def make_source(clock: ManualClock) -> Iterator[Callable[..., NvmlSource]]:
    """Build NvmlSources on the test's ManualClock; all are closed after the test."""
    sources: list[NvmlSource] = []

    def make(**options: float) -> NvmlSource:
        source = NvmlSource(clock, **options)
        sources.append(source)
        return source

    yield make
    for source in sources:
        source.close()


@pytest.fixture
def start_child() -> Iterator[Callable[[Mapping[str, str]], SourceChild]]:
    """Start NvmlSource child processes with a given environment; all are stopped after the test."""
    children: list[SourceChild] = []

    def start(env: Mapping[str, str]) -> SourceChild:
        child = SourceChild(env)
        children.append(child)
        return child

    yield start
    for child in children:
        child.stop()
