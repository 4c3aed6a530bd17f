"""dashboards/ against a real Prometheus: every panel query and every rule returns data, HOT fires.

Debian's prometheus scrapes, every second on loopback, three `gpuwatch serve` daemons:
  - "hot": two simulated H100s, GPU 1 with a cooling fault from its first second (short dwells);
  - "cool": two simulated H100s with --metrics.dcgm-compat;
  - "xid": a recording replayed, in which GPU 0 reports XID 79 (the sim source makes no XIDs).
The rules are loaded as they are, except that every `for:` is cut to 2 s (the test lasts
seconds, not minutes); their `for:` logic is what `promtool test rules` covers.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from metrics_helpers import DASHBOARDS, Pipeline, with_xids
from prom_helpers import Prometheus, panel_queries, rules, selectors, shortened_alerts
from serve_helpers import ServeProcess, get

from gpuwatch.sources.replay import RecordingWriter

pytestmark = pytest.mark.slow

# A failed fan on GPU 1, a second in; the first-order plant (tau 20 s) so the alert fires within
# the test's wait (a two-node board's heat sink takes minutes).
FAULT = """seed = 7
inlet_c = 30.0
plant = "first-order"
[[gpus]]
sku = "H100"
count = 2
[load]
jobs = 3
[[events]]
at_s = 1
gpus = [1]
cooling_factor = 3.0
inlet_c = 45.0
"""
SHORT_HOLD = "[policy]\nstate_hold_s = 2\n"
ALERT_TIMEOUT_S = 40.0
DATA_TIMEOUT_S = 20.0
# Queries of NVIDIA's dcgm-exporter Grafana dashboard (grafana/dcgm-exporter-dashboard.json).
DCGM_DASHBOARD = (
    'max(DCGM_FI_DEV_GPU_TEMP{Hostname=~".+", gpu=~".+"}) by (Hostname, gpu, uuid)',
    'avg(DCGM_FI_DEV_GPU_TEMP{Hostname=~".+", gpu=~".+"})',
    'max(DCGM_FI_DEV_POWER_USAGE{Hostname=~".+", gpu=~".+"}) by (Hostname, gpu, uuid)',
    'sum(max(DCGM_FI_DEV_POWER_USAGE{Hostname=~".+", gpu=~".+"}) by (gpu))',
    'max(DCGM_FI_DEV_SM_CLOCK{Hostname=~".+", gpu=~".+"} * 1000000) by (Hostname, UUID, gpu)',
)


def xid_recording(folder: Path) -> Path:
    """Two minutes of two simulated H100s, GPU 0 reporting XID 79 (and two XID 13s) from the start."""
    pipeline = Pipeline("sim:2xH100", edit=with_xids(0, {"13": 2, "79": 1}, last=79))
    path = folder / "xid.jsonl"
    try:
        with RecordingWriter(path) as writer:
            for _ in range(120):
                writer.write(pipeline.run(1).latest)
    finally:
        pipeline.close()
    return path


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """Prometheus, and the targets it scrapes by daemon name; admit traffic runs meanwhile."""
    folder = tmp_path_factory.mktemp("prometheus")
    (folder / "fault.toml").write_text(FAULT)
    (folder / "policy.toml").write_text(SHORT_HOLD)
    common = ("--interval=0.5", "--web.listen-address=127.0.0.1:0", "--agent.listen-address=", "--state-dir=")
    recording = xid_recording(folder)
    daemons = {
        "hot": ServeProcess(
            f"--source=sim:{folder / 'fault.toml'}", f"--config={folder / 'policy.toml'}", *common
        ),
        "cool": ServeProcess("--source=sim:2xH100", "--metrics.dcgm-compat", *common),
        "xid": ServeProcess(f"--source=replay:{recording}?loop=1", *common),
    }
    prometheus = None
    stop_traffic = threading.Event()
    try:
        ports = {name: daemon.port("HTTP") for name, daemon in daemons.items()}
        targets = {name: f"127.0.0.1:{port}" for name, port in ports.items()}
        rule_files = [shortened_alerts(folder), DASHBOARDS / "rules" / "recording.yml"]
        prometheus = Prometheus(folder, list(targets.values()), rule_files)
        prometheus.wait_ready()
        traffic = threading.Thread(
            target=_admit_traffic, args=(list(ports.values()), stop_traffic), daemon=True
        )
        traffic.start()
        yield prometheus, targets
    finally:
        stop_traffic.set()
        if prometheus is not None:
            prometheus.stop()
        for daemon in daemons.values():
            daemon.kill()


def _admit_traffic(ports: list[int], stop: threading.Event) -> None:
    """Jobs asking to start on every node, 5 times a second per class, for admissions_total."""
    while not stop.wait(0.2):
        for port in ports:
            for priority in ("critical", "default", "sheddable"):
                try:
                    get(port, f"/v1/admit?class={priority}")
                except OSError:
                    return


def has_data(prometheus: Prometheus, expr: str, timeout_s: float = DATA_TIMEOUT_S) -> list[dict]:
    """The range query's series once it has any (series appear as scrapes and rules come in)."""
    deadline = time.monotonic() + timeout_s
    while not (series := prometheus.range_query(expr)):
        assert time.monotonic() < deadline, f"no data for {expr!r} within {timeout_s:g} s"
        time.sleep(0.5)
    return series


class TestAlerts:
    """The cooling fault makes the HOT alert fire for the hot node alone; the XID alert fires."""

    def test_hot_alert_fires(self, stack):
        prometheus, targets = stack
        deadline = time.monotonic() + ALERT_TIMEOUT_S
        while ("GPUWatchGPUHot", targets["hot"]) not in prometheus.firing():
            assert time.monotonic() < deadline, f"GPUWatchGPUHot did not fire; firing: {prometheus.firing()}"
            time.sleep(0.5)
        hot = {instance for name, instance in prometheus.firing() if name == "GPUWatchGPUHot"}
        assert targets["cool"] not in hot

    def test_critical_xid_alert_fires(self, stack):
        prometheus, targets = stack
        deadline = time.monotonic() + ALERT_TIMEOUT_S
        while ("GPUWatchCriticalXID", targets["xid"]) not in prometheus.firing():
            assert time.monotonic() < deadline, (
                f"GPUWatchCriticalXID did not fire; firing: {prometheus.firing()}"
            )
            time.sleep(0.5)


class TestDashboard:
    """Every panel query of dashboards/gpuwatch.json returns data from the scraped daemons."""

    @pytest.mark.parametrize(("title", "expr"), panel_queries(), ids=[title for title, _ in panel_queries()])
    def test_panel_query_returns_data(self, stack, title, expr):
        prometheus, _targets = stack
        assert has_data(prometheus, expr), title


class TestRules:
    """Every rule loads healthy; recorded series exist; the series each alert watches exist."""

    @pytest.mark.parametrize("rule", rules("recording"), ids=[rule["record"] for rule in rules("recording")])
    def test_recording_rule_returns_data(self, stack, rule):
        prometheus, _targets = stack
        assert has_data(prometheus, rule["expr"])
        assert has_data(prometheus, rule["record"])

    @pytest.mark.parametrize("rule", rules("alerts"), ids=[rule["alert"] for rule in rules("alerts")])
    def test_alert_rule_watches_series_that_exist(self, stack, rule):
        prometheus, _targets = stack
        loaded = {
            loaded["name"]: loaded for group in prometheus.api("rules")["groups"] for loaded in group["rules"]
        }
        assert loaded[rule["alert"]]["health"] in {"ok", "unknown"}, loaded[rule["alert"]]
        assert not loaded[rule["alert"]].get("lastError")
        for selector in selectors(rule["expr"]):
            assert has_data(prometheus, selector), selector


class TestDcgmCompatibility:
    """Queries of NVIDIA's dcgm-exporter dashboard work unchanged against --metrics.dcgm-compat."""

    @pytest.mark.parametrize("expr", DCGM_DASHBOARD)
    def test_dcgm_dashboard_query(self, stack, expr):
        prometheus, targets = stack
        series = has_data(prometheus, expr)
        assert all(s["metric"].get("instance", targets["cool"]) == targets["cool"] for s in series)

    def test_types_as_dcgm_exporter_declares_them(self, stack):
        prometheus, _targets = stack
        metadata = prometheus.api("targets/metadata", match_target='{job="gpuwatch"}')
        types = {entry["metric"]: entry["type"] for entry in metadata}
        assert types["DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION"] == "counter"
        assert types["DCGM_FI_DEV_GPU_TEMP"] == "gauge"
