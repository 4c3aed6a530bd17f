"""`gpuwatch fleet --prometheus`: the rows from gpuwatch's own metrics, through the Prometheus HTTP API.

Reads the raw families every daemon exports (no recording rules needed), so the view covers every
node Prometheus scrapes. A target whose scrape fails (`up == 0`) is a row with the scrape error.
"""

from __future__ import annotations

import json
import math
import urllib.error
import urllib.parse
import urllib.request
from collections import defaultdict
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from gpuwatch.cli.check import EXIT_OK, EXIT_PROBLEM, PROBLEM_STATES
from gpuwatch.cli.fleet_rows import CLASSES, NodeRow, WorstGpu, finite_or_none, unreachable, worst_gpu
from gpuwatch.exposure.urls import basic_auth_headers, redacted
from gpuwatch.policy.decision import ThermalState

Sample = tuple[dict[str, str], float]
_STATES = frozenset(state.value for state in ThermalState)
_PROBLEMS = frozenset(state.value for state in PROBLEM_STATES)


class PrometheusError(Exception):
    """Prometheus did not answer a query, or not with a vector."""


def queries(job: str) -> dict[str, str]:
    """One instant query per fact, each by instance (and gpu); `job` selects gpuwatch's scrape job."""
    sel = f"job={json.dumps(job)}"  # a PromQL string literal, quotes and backslashes escaped
    age = f"gpuwatch_sample_age_seconds{{{sel}}}"
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
        "age": f"{age} + (time() - timestamp({age}))",
    }


class Prometheus:
    """A Prometheus server's HTTP API at `url` (http://user:password@host:port for basic auth)."""

    def __init__(self, url: str, timeout_s: float) -> None:
        parsed = urllib.parse.urlsplit(url if "://" in url else f"http://{url}")
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise PrometheusError(
                f"--prometheus {redacted(url)!r} is not an http(s) URL, e.g. http://prometheus:9090"
            )
        netloc = parsed.netloc.rpartition("@")[2]  # the login goes in a header, never in messages
        self.url = urllib.parse.urlunsplit((parsed.scheme, netloc, parsed.path.rstrip("/"), "", ""))
        self._headers = {"Accept": "application/json", **basic_auth_headers(parsed)}
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

    def vector(self, query: str) -> list[Sample]:
        """An instant query's samples as (labels, value)."""
        data = self.get("/api/v1/query", {"query": query})
        try:
            kind = data["resultType"]
            samples = [({**item["metric"]}, float(item["value"][1])) for item in data["result"]]
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            kind = repr(exc)
        if kind != "vector":
            raise PrometheusError(f"Prometheus at {self.url} did not answer {query!r} with a vector ({kind})")
        return samples

    def scrape_errors(self, job: str) -> dict[str, str]:
        """The last scrape error of each of `job`'s targets, by instance (empty when it cannot tell)."""
        try:
            targets = self.get("/api/v1/targets", {"state": "active"})["activeTargets"]
            return {
                str(target["labels"]["instance"]): str(target.get("lastError") or "scrape failed")
                for target in targets
                if target["labels"].get("job") == job and "instance" in target["labels"]
            }
        except (PrometheusError, KeyError, TypeError, AttributeError):
            return {}


def _api_error(exc: urllib.error.HTTPError) -> str:
    try:
        body = json.loads(exc.read())
        return f"HTTP {exc.code}: {body.get('errorType')}: {body.get('error')}"
    except (OSError, ValueError, AttributeError):
        return f"HTTP {exc.code}"


class _Node:
    """One instance's samples, gathered from every query's answer."""

    def __init__(self) -> None:
        self.values: dict[str, float] = {}
        self.state = ThermalState.UNKNOWN.value
        self.slots: dict[str, int] = {}
        self.gpus: dict[str, dict[str, float]] = defaultdict(dict)

    def row(self, instance: str) -> NodeRow:
        gpus = [
            WorstGpu(
                index=int(gpu),
                pressure=finite_or_none(values.get("gpu_pressure")),
                margin_c=finite_or_none(values.get("gpu_margin")),
                time_to_slowdown_s=finite_or_none(values.get("gpu_to_slowdown")),
            )
            for gpu, values in self.gpus.items()
            if gpu.isdigit()
        ]
        failed = (self.values.get("failed") or 0.0) > 0
        return NodeRow(
            node=instance,
            state=self.state,
            pressure=finite_or_none(self.values.get("pressure")),
            slots={name: self.slots.get(name, 0) for name in CLASSES},
            admits=tuple(name for name in CLASSES if self.slots.get(name, 0) > 0),
            gpus=int(finite_or_none(self.values.get("gpus")) or 0),
            worst=worst_gpu(gpus),
            sample_age_s=finite_or_none(self.values.get("age")),
            status=EXIT_PROBLEM if self.state in _PROBLEMS or failed else EXIT_OK,
        )


def rows_from_answers(
    answers: Mapping[str, Sequence[Sample]], scrape_errors: Mapping[str, str]
) -> list[NodeRow]:
    """One row per instance `up` names: from its samples when scraped, else the scrape error."""
    nodes: dict[str, _Node] = defaultdict(_Node)
    for name, samples in answers.items():
        for labels, value in samples:
            node = nodes[labels.get("instance", "")]
            if name == "state":
                state = labels.get("state", "")
                node.state = state if state in _STATES else ThermalState.UNKNOWN.value
            elif name == "slots":
                if labels.get("class") in CLASSES and math.isfinite(value):
                    node.slots[labels["class"]] = int(value)
            elif name.startswith("gpu_"):
                node.gpus[labels.get("gpu", "")][name] = value
            else:
                node.values[name] = value
    rows = []
    for labels, value in answers["up"]:
        instance = labels.get("instance", "")
        if value >= 1:
            rows.append(nodes[instance].row(instance))
        else:
            rows.append(unreachable(instance, f"scrape failed: {scrape_errors.get(instance, 'up is 0')}"))
    return rows


def ask_prometheus(prometheus: Prometheus, job: str) -> list[NodeRow]:
    """One row per target of `job`; raises PrometheusError when Prometheus itself does not answer."""
    asked = queries(job)
    with ThreadPoolExecutor(max_workers=len(asked)) as pool:
        answers = dict(zip(asked, pool.map(prometheus.vector, asked.values()), strict=True))
    down = any(value < 1 for _, value in answers["up"])
    return rows_from_answers(answers, prometheus.scrape_errors(job) if down else {})
