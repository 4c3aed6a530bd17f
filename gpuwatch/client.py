"""Where users import the Python client from: `from gpuwatch.client import GpuwatchClient`."""

from gpuwatch.exposure.client import (
    DEFAULT_MAX_AGE_S,
    DEFAULT_TIMEOUT_S,
    DEFAULT_URL,
    NOT_OPEN,
    NOT_TOLD,
    RELEASED,
    AdmitResult,
    GpuwatchClient,
    GpuwatchError,
    GpuwatchHeldBack,
    GpuwatchRequestError,
    ReleaseResult,
)

__all__ = [
    "DEFAULT_MAX_AGE_S",
    "DEFAULT_TIMEOUT_S",
    "DEFAULT_URL",
    "NOT_OPEN",
    "NOT_TOLD",
    "RELEASED",
    "AdmitResult",
    "GpuwatchClient",
    "GpuwatchError",
    "GpuwatchHeldBack",
    "GpuwatchRequestError",
    "ReleaseResult",
]
