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

# Grafana's variables, as the test gives them: every fleet, node and GPU, a rate window of 5 scrapes.
VARIABLES = {"$job": ".+", "$instance": ".+", "$gpu": ".+", "$__rate_interval": "5s"}
# Every Grafana dashboard of dashboards/.
DASHBOARD_FILES = sorted(DASHBOARDS.glob("*.json"))
# The rules' `for:` shortened for the test, which runs for seconds, not minutes.
TEST_FOR = "2s"
_SELECTOR = re.compile(r"\b(gpuwatch_[a-z_]+|up)\b(\{[^}]*\})?")
_LABEL_VALUES = re.compile(r"^label_values\((.+), *([a-zA-Z_]\w*)\)$")
Labels = tuple[tuple[str, str], ...]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def substituted(expr: str) -> str:
    """`expr` with Grafana's variables replaced as VARIABLES gives them."""
    for variable, value in VARIABLES.items():
        expr = expr.replace(variable, value)
    return expr


def panels(board: dict) -> list[dict]:
    """Every panel of a dashboard, those inside rows included."""
    found = []
    for panel in board["panels"]:
        found.append(panel)
        found.extend(panel.get("panels", ()))
    return found


def panel_queries(path: Path | None = None) -> list[tuple[str, str]]:
    """(dashboard/panel title, expr) of every target of every panel, variables substituted.

    Of the dashboard at `path`, or of every dashboard of dashboards/.
    """
    found = []
    for board_path in [path] if path is not None else DASHBOARD_FILES:
        board = json.loads(board_path.read_text())
        found.extend(
            (f"{board_path.stem}/{panel['title']}", substituted(target["expr"]))
            for panel in panels(board)
            for target in panel.get("targets", ())
        )
    return found


def variable_queries() -> list[tuple[str, str, str]]:
    """(dashboard/variable, series selector, label) of every `label_values(...)` template variable."""
    found = []
    for path in DASHBOARD_FILES:
        for variable in json.loads(path.read_text())["templating"]["list"]:
            if variable["type"] != "query":
                continue
            match = _LABEL_VALUES.match(variable["definition"])
            assert match is not None, f"{path.name}: variable {variable['name']} is not label_values(...)"
            found.append((f"{path.stem}/{variable['name']}", substituted(match.group(1)), match.group(2)))
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
    """Debian's prometheus on loopback with a scratch TSDB, scraping `targets` every second.

    `targets` are the scrape job "gpuwatch"'s, or the targets of each job by job name.
    """

    def __init__(
        self, folder: Path, targets: list[str] | dict[str, list[str]], rule_files: list[Path]
    ) -> None:
        binary = shutil.which("prometheus")
        assert binary is not None, (
            "prometheus is missing: install Debian's prometheus package (tests/run does)"
        )
        self.port = free_port()
        jobs = targets if isinstance(targets, dict) else {"gpuwatch": targets}
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s", "scrape_timeout": "900ms"},
            "rule_files": [str(path) for path in rule_files],
            "scrape_configs": [
                {"job_name": job, "static_configs": [{"targets": addresses}]}
                for job, addresses in jobs.items()
            ],
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

    def samples(self, selector: str, window_s: int) -> dict[Labels, list[tuple[float, float]]]:
        """The samples stored for `selector` over the last `window_s` seconds, as scraped or recorded.

        By series (its labels, sorted, without __name__): (timestamp, value), oldest first.
        """
        result = self.api("query", query=f"{selector}[{window_s}s]", time=f"{time.time():.3f}")["result"]
        return {
            tuple(sorted((k, v) for k, v in series["metric"].items() if k != "__name__")): [
                (float(at), float(value)) for at, value in series["values"]
            ]
            for series in result
        }

    def firing_alerts(self) -> list[dict]:
        """Every alert firing now, as the API gives it (labels, annotations, value...)."""
        return [alert for alert in self.api("alerts")["alerts"] if alert["state"] == "firing"]

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
