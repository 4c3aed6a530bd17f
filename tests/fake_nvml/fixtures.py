"""Pytest fixtures for the fake NVML library: one build per session, fresh shared state per test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from fake_nvml.build import BuildError, build_all
from fake_nvml.control import FakeNvml


@pytest.fixture(scope="session")
def fake_nvml_libraries() -> dict[str, Path]:
    """Both variants of the fake libnvidia-ml.so.1, built (or reused) once per session."""
    try:
        return build_all()
    except BuildError as error:
        pytest.fail(str(error))


@pytest.fixture
def fake_nvml(fake_nvml_libraries: dict[str, Path], tmp_path: Path) -> Iterator[FakeNvml]:
    """A fake NVML with a fresh state file, loaded into this process (the full variant).

    pynvml in this process talks to it; `fake_nvml.env(variant)` gives a subprocess the
    LD_LIBRARY_PATH and FAKE_NVML_STATE to load either variant on the same state.
    """
    fake = FakeNvml(fake_nvml_libraries["full"], fake_nvml_libraries, tmp_path / "fake-nvml.state")
    yield fake
    fake.release_all()  # a test that failed mid-block must not leave a thread sleeping in the fake
    fake.set_global_return("SUCCESS")


@pytest.fixture
def fake_nvml_env(fake_nvml: FakeNvml) -> dict[str, str]:
    """Environment for a subprocess that loads the full fake library on this test's state."""
    return fake_nvml.env("full")
