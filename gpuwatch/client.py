"""Where users import the Python client from: `from gpuwatch.client import GpuwatchClient`."""

from gpuwatch.exposure.client import (
    AdmitResult,
    GpuwatchClient,
    GpuwatchError,
    GpuwatchRequestError,
)

__all__ = ["AdmitResult", "GpuwatchClient", "GpuwatchError", "GpuwatchRequestError"]
