"""The HTML landing page at `/`: what this daemon is, a link to each route, and the release routes."""

from __future__ import annotations

import html

from gpuwatch import __version__

ROUTES = (
    ("/v1/state", "Node and per-GPU thermal state, pressure, margins and predictions (JSON)."),
    (
        "/v1/admit?class=default&dry_run=1",
        (
            "May one more job start here? 200 with the GPU to use and a lease to release when the job "
            "ends (dry_run=1: ask without taking one), or 503 + Retry-After."
        ),
    ),
    ("/v1/admit/nginx?class=default", "The same for nginx auth_request: denies with 403."),
    ("/v1/admit/envoy?class=default", "The same for Envoy ext_authz: denies with 429."),
    ("/v1/drain", "Maintenance drains in force; POST and DELETE with --web.enable-admin-api and a login."),
    ("/readyz", "200 while /v1/admit admits class default (node state and some GPU allow it), else 503."),
    ("/metrics", "Prometheus metrics: readings, margins, predictions, states, admissions."),
    ("/healthz", "200 while the daemon is alive."),
    ("/openapi.json", "OpenAPI 3.1 description of every route."),
)
# Routes that change something, so not links: (method, path as /openapi.json names it, about).
ACTIONS = (
    (
        "POST",
        "/v1/release?lease={lease}",
        (
            "The job ended: ends the lease its admission took (X-GPUWatch-Lease). 200 with the GPU and "
            "the time held; 404 once the lease has ended (released, past its deadline, or its GPU out)."
        ),
    ),
    ("DELETE", "/v1/leases/{lease}", "The same as POST /v1/release?lease={lease}."),
)


def routes(telemetry_path: str = "/metrics") -> tuple[tuple[str, str], ...]:
    """ROUTES with the metrics where --web.telemetry-path puts them."""
    return tuple((telemetry_path if path == "/metrics" else path, about) for path, about in ROUTES)


def landing_page(telemetry_path: str = "/metrics") -> str:
    """The page; static, so it is rendered once at start."""
    items = "\n".join(
        f'    <li><a href="{link}"><code>{link}</code></a> — {html.escape(about)}</li>'
        for link, about in ((html.escape(path), about) for path, about in routes(telemetry_path))
    )
    actions = "\n".join(
        f"    <li><code>{method} {html.escape(path)}</code> — {html.escape(about)}</li>"
        for method, path, about in ACTIONS
    )
    return f"""<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>gpuwatch</title></head>
<body>
  <h1>gpuwatch {html.escape(__version__)}</h1>
  <p>Thermal backpressure for this node's NVIDIA GPUs: admission controllers ask before starting
  a job, and are held back before a GPU reaches thermal slowdown.</p>
  <ul>
{items}
  </ul>
  <p>For gateways, when a job ends:</p>
  <ul>
{actions}
  </ul>
  <p>Classes: <code>critical</code>, <code>default</code>, <code>sheddable</code> (query
  <code>class=</code> or header <code>X-GPUWatch-Class</code>); pin a GPU with <code>gpu=INDEX</code>
  or <code>gpu=UUID</code>; say how long the job runs with <code>expected_s=</code> or header
  <code>X-GPUWatch-Expected-Seconds</code>. Each admission is a lease: release it when the job
  ends, or it ends at its deadline (expected end plus a grace).</p>
</body>
</html>
"""
