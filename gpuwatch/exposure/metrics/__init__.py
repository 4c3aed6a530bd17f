"""Prometheus exposition: the gpuwatch_* collector, dcgm-exporter compatible families, rendering."""
