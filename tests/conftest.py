"""Suite-wide fixtures: the fake NVML library and paths to recorded telemetry."""

from pathlib import Path

import pytest

pytest_plugins = ["fake_nvml.fixtures"]

DATA_DIR = Path(__file__).parent / "data"


@pytest.fixture
def data_dir() -> Path:
    """Recorded real telemetry (nvidia-smi captures and traces) kept byte for byte."""
    return DATA_DIR
