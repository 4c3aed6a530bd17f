"""Checks of single settings shared by the flags and the config file; each returns the problem or None."""

from __future__ import annotations

from gpuwatch.sources.spec import SPEC_HELP

# Paths the signal API answers itself; the metrics cannot take one of them.
TAKEN_PATHS = frozenset(
    {
        "/",
        "/v1/state",
        "/v1/admit",
        "/v1/admit/nginx",
        "/v1/admit/envoy",
        "/v1/drain",
        "/healthz",
        "/readyz",
        "/openapi.json",
    }
)
_SOURCE_KINDS = ("nvml", "sim", "replay")


def telemetry_path_problem(value: str) -> str | None:
    """Why `value` cannot be the metrics path: it must be absolute, plain, and not an API route."""
    if not value.startswith("/") or "?" in value or "#" in value or " " in value:
        return f"{value!r}: expected an absolute path such as /metrics"
    if value in TAKEN_PATHS or value.startswith("/v1/admit/envoy/"):
        return f"{value} is a route of the signal API; choose another path"
    return None


def source_problem(spec: str) -> str | None:
    """Why `spec` is not a source spec, judged by its form only (opening it is the daemon's job)."""
    kind, has_argument, argument = spec.strip().partition(":")
    if kind not in _SOURCE_KINDS or (kind == "nvml" and has_argument):
        return f"unknown source {spec!r}: expected {SPEC_HELP}"
    if kind == "replay" and not argument:
        return "replay needs a file: replay:FILE"
    return None
