"""`gpuwatch fleet --prometheus`: the rows from gpuwatch's own metrics, through the Prometheus HTTP API.

Reads the raw families every daemon exports (no recording rules needed), so the view covers every
node Prometheus scrapes. A target whose scrape fails (`up == 0`) is a row with the scrape error.
"""

from __future__ import annotations

import base64
import json
import math
import urllib.error
import urllib.parse
import urllib.request
from collections import defaultdict
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from gpuwatch.cli.check import EXIT_OK, EXIT_PROBLEM
from gpuwatch.cli.fleet_rows import CLASSES, NodeRow, WorstGpu, unreachable, worst_gpu
from gpuwatch.policy.decision import ThermalState

# `check`'s verdict from the exported state: ELEVATED is normal under load, the rest is a problem.
_FINE_STATES = frozenset({ThermalState.OK.value, ThermalState.ELEVATED.value})


class PrometheusError(Exception):
    """Prometheus did not answer a query, or not with a vector."""


def _queries(job: str) -> dict[str, str]:
    """One instant query per fact, each by instance (and gpu); `job` selects gpuwatch's scrape job."""
    sel = f'job="{job}"'
    return {
        "up": f"up{{{sel}}}",
        "state": f"gpuwatch_node_state{{{sel}}} == 1",
        "pressure": f"gpuwatch_node_pressure_ratio{{{sel}}}",
        "slots": f"sum by (instance, class) (gpuwatch_gpu_slots{{{sel}}})",
        "gpus": f"count by (instance) (gpuwatch_gpu_up{{{sel}}})",
        "failed": f'count by (instance) (gpuwatch_gpu_state{{{sel},state="failed"}} == 1)',
        "gpu_pressure": f"gpuwatch_gpu_pressure_ratio{{{sel}}}",
        "gpu_margin": f"gpuwatch_gpu_thermal_margin_celsius{{{sel}}}",
        "gpu_to_slowdown": f"gpuwatch_gpu_time_to_slowdown_seconds{{{sel}}}",
        # The daemon's sample age at the scrape, plus the time since the scrape: its age now, s.
        "age": (
            f"gpuwatch_sample_age_seconds{{{sel}}}"
            f" + (time() - timestamp(gpuwatch_sample_age_seconds{{{sel}}}))"
        ),
    }


class Prometheus:
    """A Prometheus server's HTTP API at `url` (http://user:password@host:port for basic auth)."""

    def __init__(self, url: str, timeout_s: float) -> None:
        parsed = urllib.parse.urlsplit(url if "://" in url else f"http://{url}")
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise PrometheusError(f"--prometheus {url!r} is not an http(s) URL, e.g. http://prometheus:9090")
        netloc = parsed.netloc.rpartition("@")[2]  # the password goes in a header, not in messages
        self.url = urllib.parse.urlunsplit((parsed.scheme, netloc, parsed.path.rstrip("/"), "", ""))
        self._headers = {"Accept": "application/json"}
        if parsed.username is not None:
            pair = f"{urllib.parse.unquote(parsed.username)}:{urllib.parse.unquote(parsed.password or '')}"
            self._headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode()
        self._timeout_s = timeout_s

    def get(self, path: str, params: Mapping[str, str]) -> Any:  # noqa: ANN401 - JSON's `data`
        """The `data` of an API answer; raises PrometheusError naming the server and what failed."""
        request = urllib.request.Request(  # noqa: S310 - the scheme is checked to be http(s) above
            f"{self.url}{path}?{urllib.parse.urlencode(params)}", headers=self._headers
        )
        try:
            with urllib.request.urlopen(request, timeout=self._timeout_s) as response:  # noqa: S310
                body = json.loads(response.read())
        except urllib.error.HTTPError as exc:
            raise PrometheusError(f"Prometheus at {self.url} answered {path} with {_api_error(exc)}") from exc
        except (OSError, ValueError) as exc:
            raise PrometheusError(f"no Prometheus answered at {self.url} ({exc})") from exc
        if not isinstance(body, dict) or body.get("status") != "success":
            raise PrometheusError(f"Prometheus at {self.url} answered {path} with {body!r:.200}")
        return body.get("data")

    def vector(self, query: str) -> list[tuple[dict[str, str], float]]:
        """An instant query's samples as (labels, value)."""
        data = self.get("/api/v1/query", {"query": query})
        if not isinstance(data, dict) or data.get("resultType") != "vector":
            raise PrometheusError(f"Prometheus at {self.url} did not answer {query!r} with a vector")
        return [(dict(item["metric"]), float(item["value"][1])) for item in data["result"]]

    def scrape_errors(self, job: str) -> dict[str, str]:
        """The last scrape error of each of `job`'s targets, by instance (empty when it cannot tell)."""
        try:
            data = self.get("/api/v1/targets", {"state": "active"})
        except PrometheusError:
            return {}
        return {
            str(target["labels"].get("instance")): str(target.get("lastError") or "scrape failed")
            for target in (data or {}).get("activeTargets", [])
            if target.get("labels", {}).get("job") == job
        }


def _api_error(exc: urllib.error.HTTPError) -> str:
    try:
        body = json.loads(exc.read())
        return f"HTTP {exc.code}: {body.get('errorType')}: {body.get('error')}"
    except (OSError, ValueError, AttributeError):
        return f"HTTP {exc.code}"


def _finite(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else value


def _by_instance(samples: list[tuple[dict[str, str], float]]) -> dict[str, float]:
    return {labels.get("instance", ""): value for labels, value in samples}


def _row(instance: str, results: Mapping[str, list[tuple[dict[str, str], float]]]) -> NodeRow:
    states = {labels.get("instance"): labels.get("state", "unknown") for labels, _ in results["state"]}
    slots: dict[str, int] = {}
    for labels, value in results["slots"]:
        if labels.get("instance") == instance and labels.get("class") in CLASSES:
            slots[labels["class"]] = int(value)
    per_gpu: dict[str, dict[str, float]] = defaultdict(dict)
    for name in ("gpu_pressure", "gpu_margin", "gpu_to_slowdown"):
        for labels, value in results[name]:
            if labels.get("instance") == instance:
                per_gpu[labels.get("gpu", "")][name] = value
    gpus = [
        WorstGpu(
            index=int(gpu),
            pressure=_finite(values.get("gpu_pressure")),
            margin_c=_finite(values.get("gpu_margin")),
            time_to_slowdown_s=_finite(values.get("gpu_to_slowdown")),
        )
        for gpu, values in per_gpu.items()
        if gpu.isdigit()
    ]
    state = states.get(instance, ThermalState.UNKNOWN.value)
    failed = _by_instance(results["failed"]).get(instance, 0.0) > 0
    return NodeRow(
        node=instance,
        state=state,
        pressure=_finite(_by_instance(results["pressure"]).get(instance)),
        slots={name: slots.get(name, 0) for name in CLASSES},
        admits=tuple(name for name in CLASSES if slots.get(name, 0) > 0),
        gpus=int(_by_instance(results["gpus"]).get(instance, 0)),
        worst=worst_gpu(gpus),
        sample_age_s=_finite(_by_instance(results["age"]).get(instance)),
        status=EXIT_OK if state in _FINE_STATES and not failed else EXIT_PROBLEM,
    )


def ask_prometheus(prometheus: Prometheus, job: str) -> list[NodeRow]:
    """One row per target of `job`; raises PrometheusError when Prometheus itself does not answer."""
    queries = _queries(job)
    with ThreadPoolExecutor(max_workers=len(queries)) as pool:
        answers = dict(zip(queries, pool.map(prometheus.vector, queries.values()), strict=True))
    up = _by_instance(answers["up"])
    down = [instance for instance, value in up.items() if value < 1]
    errors = prometheus.scrape_errors(job) if down else {}
    rows = [_row(instance, answers) for instance, value in up.items() if value >= 1]
    rows.extend(
        unreachable(instance, f"scrape failed: {errors.get(instance, 'up is 0')}") for instance in down
    )
    return rows
