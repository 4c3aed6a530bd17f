"""Helpers for the real-Prometheus test: the server on loopback, its HTTP API, queries from dashboards/."""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path

import yaml
from metrics_helpers import DASHBOARDS

# Grafana's variables, as the test gives them: every node and GPU, a rate window of 5 scrapes.
VARIABLES = {"$instance": ".+", "$gpu": ".+", "$__rate_interval": "5s"}
# The rules' `for:` shortened for the test, which runs for seconds, not minutes.
TEST_FOR = "2s"
_SELECTOR = re.compile(r"\b(gpuwatch_[a-z_]+|up)\b(\{[^}]*\})?")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def panel_queries() -> list[tuple[str, str]]:
    """(panel title, expr) of every target of every panel of the dashboard, variables substituted."""
    dashboard = json.loads((DASHBOARDS / "gpuwatch.json").read_text())
    found = []
    for panel in dashboard["panels"]:
        for target in panel.get("targets", ()):
            expr = target["expr"]
            for variable, value in VARIABLES.items():
                expr = expr.replace(variable, value)
            found.append((panel["title"], expr))
    return found


def rules(name: str) -> list[dict]:
    """The rules of dashboards/rules/<name>.yml."""
    document = yaml.safe_load((DASHBOARDS / "rules" / f"{name}.yml").read_text())
    return [rule for group in document["groups"] for rule in group["rules"]]


def shortened_alerts(folder: Path) -> Path:
    """A copy of alerts.yml with every `for:` set to TEST_FOR, everything else as it is."""
    text = (DASHBOARDS / "rules" / "alerts.yml").read_text()
    path = folder / "alerts.yml"
    path.write_text(re.sub(r"^(\s+)for: \S+$", rf"\1for: {TEST_FOR}", text, flags=re.MULTILINE))
    return path


def selectors(expr: str) -> list[str]:
    """The gpuwatch_* (and up) vector selectors of an expression, with their label matchers."""
    return sorted({name + (matchers or "") for name, matchers in _SELECTOR.findall(expr)})


class Prometheus:
    """Debian's prometheus on loopback with a scratch TSDB, scraping `targets` every second."""

    def __init__(self, folder: Path, targets: list[str], rule_files: list[Path]) -> None:
        binary = shutil.which("prometheus")
        assert binary is not None, (
            "prometheus is missing: install Debian's prometheus package (tests/run does)"
        )
        self.port = free_port()
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s", "scrape_timeout": "900ms"},
            "rule_files": [str(path) for path in rule_files],
            "scrape_configs": [{"job_name": "gpuwatch", "static_configs": [{"targets": targets}]}],
        }
        (folder / "prometheus.yml").write_text(yaml.safe_dump(config))
        self.log = (folder / "prometheus.log").open("w")
        self.process = subprocess.Popen(
            [
                binary,
                f"--config.file={folder / 'prometheus.yml'}",
                f"--storage.tsdb.path={folder / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--log.level=warn",
            ],
            stdin=subprocess.DEVNULL,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        self.started = time.time()

    def wait_ready(self, timeout_s: float = 20.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self.process.poll() is None, "prometheus exited; see prometheus.log"
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/-/ready", timeout=1) as answer:
                    if answer.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.1)
        raise AssertionError("prometheus was not ready in time")

    def api(self, path: str, **parameters: str) -> dict:
        query = urllib.parse.urlencode(parameters)
        with urllib.request.urlopen(
            f"http://127.0.0.1:{self.port}/api/v1/{path}?{query}", timeout=10
        ) as answer:
            document = json.loads(answer.read())
        assert document["status"] == "success", document
        return document["data"]

    def range_query(self, expr: str) -> list[dict]:
        """The series `expr` gives over the run so far (as a dashboard panel asks for them)."""
        now = time.time()
        return self.api("query_range", query=expr, start=f"{self.started:.3f}", end=f"{now:.3f}", step="1")[
            "result"
        ]

    def firing(self) -> set[tuple[str, str]]:
        """(alertname, instance) of the alerts firing now."""
        return {
            (alert["labels"]["alertname"], alert["labels"].get("instance", ""))
            for alert in self.api("alerts")["alerts"]
            if alert["state"] == "firing"
        }

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self.log.close()
