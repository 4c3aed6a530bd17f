"""dashboards/: promtool checks and unit-tests the rules; the Grafana dashboard is current and complete."""

from __future__ import annotations

import json
import re
import subprocess

import pytest
from metrics_helpers import DASHBOARDS, GOLDEN_DIR, promtool
from prom_helpers import panel_queries, rules

from gpuwatch.policy.config import DEFAULT_CRITICAL_XIDS

RULE_FILES = sorted((DASHBOARDS / "rules").glob("*.yml"))
RULE_TESTS = sorted((DASHBOARDS / "tests").glob("*.yml"))


def dashboard() -> dict:
    return json.loads((DASHBOARDS / "gpuwatch.json").read_text())


def run_promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([promtool(), *args], capture_output=True, text=True, timeout=60, check=False)


class TestRules:
    """The rule files load, and their unit tests pass."""

    def test_check_rules(self):
        result = run_promtool("check", "rules", *map(str, RULE_FILES))
        assert result.returncode == 0, result.stdout + result.stderr
        assert result.stdout.count("SUCCESS") == len(RULE_FILES) == 2

    @pytest.mark.parametrize("tests", RULE_TESTS, ids=[path.name for path in RULE_TESTS])
    def test_promtool_test_rules(self, tests):
        result = run_promtool("test", "rules", str(tests))
        assert result.returncode == 0, result.stdout + result.stderr
        assert "SUCCESS" in result.stdout

    def test_every_rule_is_unit_tested(self):
        tested = "".join(path.read_text() for path in RULE_TESTS)
        for rule in rules("alerts"):
            assert f"alertname: {rule['alert']}" in tested
        for rule in rules("recording"):
            assert f"expr: {rule['record']}" in tested

    def test_critical_xids_are_the_policys(self):
        regexes = {m for rule in rules("alerts") for m in re.findall(r'xid=~"([^"]+)"', rule["expr"])}
        assert regexes == {"|".join(map(str, DEFAULT_CRITICAL_XIDS))}


class TestDashboard:
    """Grafana's current schema: timeseries and state-timeline panels, datasource and instance variables."""

    def test_schema_and_variables(self):
        board = dashboard()
        assert board["schemaVersion"] >= 39
        variables = {variable["name"]: variable for variable in board["templating"]["list"]}
        assert variables["datasource"]["type"] == "datasource"
        assert variables["datasource"]["query"] == "prometheus"
        assert variables["instance"]["type"] == "query"
        assert variables["gpu"]["type"] == "query"

    def test_panels(self):
        panels = dashboard()["panels"]
        assert {panel["type"] for panel in panels} == {"row", "timeseries", "state-timeline"}
        assert len({panel["id"] for panel in panels}) == len(panels)
        for panel in panels:
            place = panel["gridPos"]
            assert place["x"] + place["w"] <= 24
            if panel["type"] != "row":
                assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
                assert panel["targets"]
                assert panel["description"]

    def test_shows_what_no_vendor_dashboard_shows(self):
        queries = " ".join(expr for _title, expr in panel_queries())
        for metric in (
            "gpuwatch_gpu_thermal_margin_celsius",
            "gpuwatch_gpu_predicted_margin_celsius",
            "gpuwatch_gpu_slowdown_margin_celsius",
            "gpuwatch_gpu_time_to_slowdown_seconds",
            "gpuwatch_gpu_state",
            "gpuwatch_node_state",
            "gpuwatch_admissions_total",
            "gpuwatch_gpu_slots",
            "gpuwatch_gpu_reserved_jobs",
            "gpuwatch_gpu_power_limit_watts",
            "gpuwatch_gpu_sustainable_power_watts",
            "gpuwatch_gpu_temperature_celsius",
            "gpuwatch_gpu_clock_event_active",
            "gpuwatch_gpu_xid_errors_total",
            "gpuwatch_sample_age_seconds",
        ):
            assert metric in queries, metric

    def test_queries_name_only_metrics_gpuwatch_exports(self):
        exported = set()
        for golden in GOLDEN_DIR.glob("*.prom"):
            exported |= set(re.findall(r"^(gpuwatch_[a-z_]+)[{ ]", golden.read_text(), re.MULTILINE))
        rule_exprs = [rule["expr"] for rule in (*rules("alerts"), *rules("recording"))]
        for expr in [expr for _title, expr in panel_queries()] + rule_exprs:
            for metric in re.findall(r"\b(gpuwatch_[a-z_]+)\b", expr):
                assert metric in exported, f"{metric} in {expr!r} is not a metric gpuwatch exports"
