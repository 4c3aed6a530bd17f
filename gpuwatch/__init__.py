"""gpuwatch: NVIDIA GPU telemetry and a predictive thermal backpressure signal, per node."""

__version__ = "0.1.0"
