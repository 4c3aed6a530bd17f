"""Exposure: the HTTP signal API, the HAProxy agent and the state files, fed from one board."""
