"""Where users import the ASGI middleware from: `from gpuwatch.asgi import GpuwatchAdmission`."""

from gpuwatch.exposure.asgi import GpuwatchAdmission

__all__ = ["GpuwatchAdmission"]
