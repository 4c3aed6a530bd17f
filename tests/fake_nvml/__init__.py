"""The fake libnvidia-ml.so.1 that gpuwatch's NVML tests run against, and its controls."""
