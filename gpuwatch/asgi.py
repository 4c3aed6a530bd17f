"""Where users import the ASGI middleware from: `from gpuwatch.asgi import GpuwatchAdmission`."""

from gpuwatch.exposure.asgi import STATE_KEY, GpuwatchAdmission

__all__ = ["STATE_KEY", "GpuwatchAdmission"]
