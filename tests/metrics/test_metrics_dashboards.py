"""dashboards/: promtool checks and unit-tests the rules; the Grafana dashboards are current and complete."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
import yaml
from metrics_helpers import DASHBOARDS, GOLDEN_DIR, promtool
from prom_helpers import DASHBOARD_FILES, panel_queries, panels, rules

from gpuwatch.policy.config import DEFAULT_CRITICAL_XIDS

RULE_FILES = sorted((DASHBOARDS / "rules").glob("*.yml"))
RULE_TESTS = sorted((DASHBOARDS / "tests").glob("*.yml"))
NODE_BOARD = DASHBOARDS / "gpuwatch.json"
FLEET_BOARD = DASHBOARDS / "gpuwatch-fleet.json"
FLEET_ALERT = "GPUWatchFleetDefaultSlotsLow"
LEASE_ALERT = "GPUWatchLeasesExpiring"
# A recorded series' name: level:metric:operations.
RECORDED = re.compile(r"\b((?:instance|job):[a-z_]+:[a-z0-9_]+)\b")
# `0.25 * sum by (job) (gpuwatch_gpu_up`, `0.25 * sum(gpuwatch_gpu_up`, `0.25 * job:gpuwatch_gpu_up:sum`.
_FRACTION = re.compile(
    r"([0-9.]+) \* (?:sum(?: by \([^)]*\))? ?\(gpuwatch_gpu_up\b|job:gpuwatch_gpu_up:sum\b)"
)
# Panel types the dashboards may use (all in Grafana's core, none deprecated).
PANEL_TYPES = {"row", "timeseries", "state-timeline", "table"}


def dashboard(path: Path = NODE_BOARD) -> dict:
    return json.loads(path.read_text())


def fraction_of_gpus_up(text: str) -> list[float]:
    """Every `<number> * sum...(gpuwatch_gpu_up` or `<number> * job:gpuwatch_gpu_up:sum` in `text`."""
    return [float(f) for f in _FRACTION.findall(text)]


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
            assert re.search(rf"alertname: {rule['alert']}$", tested, re.MULTILINE), rule["alert"]
        for rule in rules("recording"):
            assert re.search(rf"expr: {rule['record']}(\{{|$)", tested, re.MULTILINE), rule["record"]

    def test_recorded_names_follow_the_convention(self):
        names = [rule["record"] for rule in rules("recording")]
        assert len(set(names)) == len(names)
        for rule in rules("recording"):
            name = rule["record"]
            assert RECORDED.fullmatch(name), name
            level, metric, _operations = name.split(":")
            assert metric.startswith("gpuwatch_"), name
            # The level names the labels the series keeps: instance: by (job, instance, ...),
            # job: by (job, ...) without instance. The outermost aggregation decides.
            grouping = re.match(r"\w+ by \(([^)]*)\)", rule["expr"].strip())
            if grouping is None:
                assert level == "instance", name  # a function of each node's own series
                continue
            kept = {label.strip() for label in grouping.group(1).split(",")}
            assert "job" in kept, name
            assert ("instance" in kept) == (level == "instance"), name

    def test_rules_read_only_series_recorded_before_them_in_their_group(self):
        document = yaml.safe_load((DASHBOARDS / "rules" / "recording.yml").read_text())
        for group in document["groups"]:
            earlier: set[str] = set()
            for rule in group["rules"]:
                for name in RECORDED.findall(rule["expr"]):
                    assert name in earlier, (
                        f"{rule['record']} reads {name}, not recorded before it in the group"
                    )
                earlier.add(rule["record"])

    def test_fleet_alert_line_is_one_fraction(self):
        """The alert's expression, its description and the fleet dashboard's line agree."""
        alert = next(rule for rule in rules("alerts") if rule["alert"] == FLEET_ALERT)
        in_expr = fraction_of_gpus_up(alert["expr"])
        in_description = fraction_of_gpus_up(alert["annotations"]["description"])
        on_board = fraction_of_gpus_up(" ".join(expr for _title, expr in panel_queries(FLEET_BOARD)))
        assert len(in_expr) == len(in_description) == len(on_board) == 1
        assert in_expr == in_description == on_board
        assert 0 < in_expr[0] < 1

    def test_critical_xids_are_the_policys(self):
        regexes = {m for rule in rules("alerts") for m in re.findall(r'xid=~"([^"]+)"', rule["expr"])}
        assert regexes == {"|".join(map(str, DEFAULT_CRITICAL_XIDS))}


@pytest.mark.parametrize("path", DASHBOARD_FILES, ids=[path.name for path in DASHBOARD_FILES])
class TestEveryDashboard:
    """Grafana's current schema, a datasource variable, panels that query it and say what they show."""

    def test_schema_and_datasource_variable(self, path):
        board = dashboard(path)
        assert board["schemaVersion"] >= 39
        assert board["uid"].startswith("gpuwatch")
        assert "gpuwatch" in board["tags"]
        variables = {variable["name"]: variable for variable in board["templating"]["list"]}
        assert variables["datasource"]["type"] == "datasource"
        assert variables["datasource"]["query"] == "prometheus"
        for variable in variables.values():
            if variable["type"] == "query":
                assert variable["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
                assert variable["definition"] == variable["query"]["query"]

    def test_panels(self, path):
        every = panels(dashboard(path))
        assert {panel["type"] for panel in every} <= PANEL_TYPES
        assert len({panel["id"] for panel in every}) == len(every)
        for panel in every:
            place = panel["gridPos"]
            assert place["x"] + place["w"] <= 24
            if panel["type"] != "row":
                assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
                assert panel["targets"]
                assert panel["description"]
                for target in panel["targets"]:
                    assert target["datasource"] == panel["datasource"]
                refs = [target["refId"] for target in panel["targets"]]
                assert len(set(refs)) == len(refs), panel["title"]

    def test_panels_do_not_overlap(self, path):
        taken: dict[tuple[int, int], str] = {}
        for panel in panels(dashboard(path)):
            place = panel["gridPos"]
            for x in range(place["x"], place["x"] + place["w"]):
                for y in range(place["y"], place["y"] + place["h"]):
                    assert (x, y) not in taken, f"{panel['title']!r} overlaps {taken[x, y]!r}"
                    taken[x, y] = panel["title"]


class TestDashboards:
    """The node dashboard (gpuwatch.json) and the fleet dashboard (gpuwatch-fleet.json)."""

    def test_every_dashboard_has_its_own_uid(self):
        uids = [dashboard(path)["uid"] for path in DASHBOARD_FILES]
        assert len(set(uids)) == len(uids)
        assert {NODE_BOARD, FLEET_BOARD} <= set(DASHBOARD_FILES)

    def test_node_dashboard_variables_and_panel_types(self):
        board = dashboard()
        variables = {variable["name"]: variable for variable in board["templating"]["list"]}
        assert variables["instance"]["type"] == "query"
        assert variables["gpu"]["type"] == "query"
        assert {panel["type"] for panel in board["panels"]} == {"row", "timeseries", "state-timeline"}

    def test_fleet_dashboard_variables(self):
        variables = {variable["name"]: variable for variable in dashboard(FLEET_BOARD)["templating"]["list"]}
        assert variables["job"]["definition"] == "label_values(gpuwatch_up, job)"
        assert variables["instance"]["definition"] == 'label_values(gpuwatch_up{job=~"$job"}, instance)'
        for name in ("job", "instance"):
            assert variables[name]["multi"]
            assert variables[name]["includeAll"]
            assert variables[name]["allValue"] == ".+"

    def test_fleet_dashboard_shows_every_capacity_rule(self):
        queries = " ".join(expr for _title, expr in panel_queries(FLEET_BOARD))
        document = yaml.safe_load((DASHBOARDS / "rules" / "recording.yml").read_text())
        capacity = next(group for group in document["groups"] if group["name"] == "gpuwatch.capacity")
        for rule in capacity["rules"]:
            assert re.search(rf"\b{rule['record']}\b", queries), rule["record"]

    def test_fleet_dashboard_per_node_and_fleet_queries(self):
        """Fleet panels (job: series) follow only $job; node panels (instance: and raw) also $instance."""
        for panel in panels(dashboard(FLEET_BOARD)):
            for target in panel.get("targets", ()):
                expr = target["expr"]
                assert 'job=~"$job"' in expr, (panel["title"], expr)
                if "job:" in expr:
                    assert "$instance" not in expr, (panel["title"], expr)
                else:
                    assert expr.count('instance=~"$instance"') == expr.count('job=~"$job"'), expr

    def test_fleet_table_lists_nodes_hottest_first(self):
        table = next(panel for panel in panels(dashboard(FLEET_BOARD)) if panel["type"] == "table")
        pressure = [target for target in table["targets"] if "gpuwatch_node_pressure_ratio" in target["expr"]]
        assert len(pressure) == 1
        assert all(target["instant"] and target["format"] == "table" for target in table["targets"])
        organize = next(step for step in table["transformations"] if step["id"] == "organize")
        assert organize["options"]["renameByName"][f"Value #{pressure[0]['refId']}"] == "Pressure"
        assert organize["options"]["renameByName"]["instance"] == "Node"
        sort = next(step for step in table["transformations"] if step["id"] == "sortBy")
        assert sort["options"]["sort"] == [{"field": "Pressure", "desc": True}]
        assert table["options"]["sortBy"] == [{"displayName": "Pressure", "desc": True}]
        assert table["transformations"][0]["id"] == "merge"

    def test_fleet_alert_panel_draws_the_alert_quantity_and_its_line(self):
        alert = next(rule for rule in rules("alerts") if rule["alert"] == FLEET_ALERT)
        quantity, _, line = alert["expr"].strip().partition("\n")
        panel = next(
            panel for panel in panels(dashboard(FLEET_BOARD)) if FLEET_ALERT in panel.get("description", "")
        )
        exprs = [target["expr"] for target in panel["targets"]]
        assert len(exprs) == 2
        # The same sums as the alert's two sides, read from the recorded series.
        assert 'class="default"' in quantity
        assert exprs[0] == 'job:gpuwatch_gpu_slots:sum{job=~"$job", class="default"}'
        assert "gpuwatch_gpu_up" in line
        assert exprs[1].endswith('job:gpuwatch_gpu_up:sum{job=~"$job"}')

    def test_shows_what_no_vendor_dashboard_shows(self):
        queries = " ".join(expr for _title, expr in panel_queries(NODE_BOARD))
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
            "gpuwatch_gpu_leases",
            "gpuwatch_leases_ended_total",
            'how="expired"',  # the panel a gateway that forgets to release shows on
            "gpuwatch_job_duration_seconds_bucket",
            "gpuwatch_gpu_power_limit_watts",
            "gpuwatch_gpu_sustainable_power_watts",
            "gpuwatch_gpu_temperature_celsius",
            "gpuwatch_gpu_clock_event_active",
            "gpuwatch_gpu_xid_errors_total",
            "gpuwatch_sample_age_seconds",
        ):
            assert metric in queries, metric

    def test_expired_share_panel_draws_the_lease_alert_quantity_and_its_line(self):
        """The node dashboard's share of expired leases: the lease alert's ratio per node, and its line."""
        alert = next(rule for rule in rules("alerts") if rule["alert"] == LEASE_ALERT)
        found = re.fullmatch(r"\(\n(.*)\n\) > ([0-9.]+)\nand .*\n", alert["expr"], re.DOTALL)
        assert found is not None, alert["expr"]
        ratio, threshold = found.groups()
        per_node = ratio.replace("by (job, instance)", "by (instance)").replace(
            "{how", '{instance=~"$instance", how'
        )
        panel = next(panel for panel in panels(dashboard()) if LEASE_ALERT in panel.get("description", ""))
        assert [target["expr"] for target in panel["targets"]] == [
            "\n".join(line.strip() for line in per_node.splitlines())
        ]
        steps = panel["fieldConfig"]["defaults"]["thresholds"]["steps"]
        assert [step["value"] for step in steps if step["color"] == "red"] == [float(threshold)]
        assert panel["fieldConfig"]["defaults"]["custom"]["thresholdsStyle"] == {"mode": "line"}
        assert 0 < float(threshold) < 1

    def test_queries_name_only_metrics_gpuwatch_exports(self):
        exported = set()
        for golden in GOLDEN_DIR.glob("*.prom"):
            exported |= set(re.findall(r"^(gpuwatch_[a-z_]+)[{ ]", golden.read_text(), re.MULTILINE))
        recorded = {rule["record"] for rule in rules("recording")}
        rule_exprs = [rule["expr"] for rule in (*rules("alerts"), *rules("recording"))]
        annotations = [text for rule in rules("alerts") for text in rule.get("annotations", {}).values()]
        for expr in [expr for _title, expr in panel_queries()] + rule_exprs + annotations:
            for name in RECORDED.findall(expr):
                assert name in recorded, (
                    f"{name} in {expr!r} is not recorded by dashboards/rules/recording.yml"
                )
            for metric in re.findall(r"\b(gpuwatch_[a-z_]+)\b", RECORDED.sub("", expr)):
                assert metric in exported, f"{metric} in {expr!r} is not a metric gpuwatch exports"
