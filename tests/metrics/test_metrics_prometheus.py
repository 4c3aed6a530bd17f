"""dashboards/ against a real Prometheus: every panel query and every rule returns data, alerts fire.

Debian's prometheus scrapes, every second on loopback, three `gpuwatch serve` daemons as the scrape
job "gpuwatch" (a fleet with free default slots to spare):
  - "hot": two simulated H100s, GPU 1 with a cooling fault from its first second (short dwells);
  - "cool": two simulated H100s with --metrics.dcgm-compat;
  - "xid": a recording replayed, in which GPU 0 reports XID 79 (the sim source makes no XIDs);
and one more as the scrape job "gpuwatch-hot", a fleet of one node that runs out of default slots:
  - "fan": one simulated H100 whose fan fails a second in (tests/sim_nodes.py).
Gateways ask all but "cool" to admit jobs of 1 s: the one in front of "xid" releases every lease,
the ones in front of "hot" and "fan" forget to, so their leases expire (and the lease alert fires
for them alone).
The rules are loaded as they are, except that every `for:` is cut to 2 s (the test lasts
seconds, not minutes); their `for:` logic is what `promtool test rules` covers.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pytest
from metrics_helpers import DASHBOARDS, Pipeline, with_xids
from prom_helpers import (
    Labels,
    Prometheus,
    panel_queries,
    rules,
    selectors,
    shortened_alerts,
    variable_queries,
)
from serve_helpers import ServeProcess, get
from sim_nodes import cooling_fault

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
MAIN_FLEET = "gpuwatch"
HOT_FLEET = "gpuwatch-hot"
# The scrape job of each daemon.
FLEETS = {"hot": MAIN_FLEET, "cool": MAIN_FLEET, "xid": MAIN_FLEET, "fan": HOT_FLEET}
# The daemons that get admit requests, for jobs of JOB_S. Each admission is a lease that holds
# its slot until it is released or expires (JOB_S plus the 5 s grace), and the simulated power
# does not follow admissions: 5 requests a second take every slot of a node within seconds. "cool"
# gets none, so that its free slots (64, the cap on two GPUs) keep its fleet above the fleet
# alert's line.
TRAFFIC = ("hot", "xid", "fan")
# The daemons whose gateway releases each lease at its next round (0.2 s later); the others'
# never do, so all their leases expire.
RELEASING = ("xid",)
JOB_S = 1.0
LEASE_ALERT = "GPUWatchLeasesExpiring"
FLEET_ALERT = "GPUWatchFleetDefaultSlotsLow"
CLASSES = ("critical", "default", "sheddable")
# Seconds of recorded samples the rules are compared over, and of scraped samples before them.
COMPARE_S = 15
LOOKBACK_S = 5
# A rule evaluated at t reads the samples stamped up to t; a scrape stamped just before t (a
# scrape's samples carry the time it began) may still be on its way into the TSDB. So a rule's
# value is the sum as of t or, for a node whose scrape was in flight, as of the scrape before:
# half a scrape interval (1 s) before t.
IN_FLIGHT_S = 0.5
T = TypeVar("T")
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
    """Prometheus, and the targets it scrapes by daemon name; admit traffic runs meanwhile (not to "cool")."""
    folder = tmp_path_factory.mktemp("prometheus")
    (folder / "fault.toml").write_text(FAULT)
    (folder / "policy.toml").write_text(SHORT_HOLD)
    (folder / "fan.toml").write_text(cooling_fault(1.0))
    common = ("--interval=0.5", "--web.listen-address=127.0.0.1:0", "--agent.listen-address=", "--state-dir=")
    recording = xid_recording(folder)
    daemons = {
        "hot": ServeProcess(
            f"--source=sim:{folder / 'fault.toml'}", f"--config={folder / 'policy.toml'}", *common
        ),
        "cool": ServeProcess("--source=sim:2xH100", "--metrics.dcgm-compat", *common),
        "xid": ServeProcess(f"--source=replay:{recording}?loop=1", *common),
        "fan": ServeProcess(
            f"--source=sim:{folder / 'fan.toml'}", f"--config={folder / 'policy.toml'}", *common
        ),
    }
    prometheus = None
    stop_traffic = threading.Event()
    try:
        ports = {name: daemon.port("HTTP") for name, daemon in daemons.items()}
        targets = {name: f"127.0.0.1:{port}" for name, port in ports.items()}
        rule_files = [shortened_alerts(folder), DASHBOARDS / "rules" / "recording.yml"]
        by_job = {
            job: [targets[name] for name in targets if FLEETS[name] == job] for job in set(FLEETS.values())
        }
        prometheus = Prometheus(folder, by_job, rule_files)
        prometheus.wait_ready()
        traffic = threading.Thread(
            target=_admit_traffic,
            args=(
                {port: name in RELEASING for name, port in ports.items() if name in TRAFFIC},
                stop_traffic,
            ),
            daemon=True,
        )
        traffic.start()
        yield prometheus, targets
    finally:
        stop_traffic.set()
        if prometheus is not None:
            prometheus.stop()
        for daemon in daemons.values():
            daemon.kill()


def _admit_traffic(ports: dict[int, bool], stop: threading.Event) -> None:
    """Jobs of JOB_S asking to start on every node, 5 times a second per class; released if the port's value.

    For admissions_total, and leases taken, released and expired.
    """
    leases: dict[int, list[str]] = {port: [] for port in ports}
    while not stop.wait(0.2):
        for port, releases in ports.items():
            try:
                for lease in leases[port]:
                    assert get(port, f"/v1/release?lease={lease}", method="POST").status == 200
                leases[port] = []
                for priority in CLASSES:
                    answer = get(port, f"/v1/admit?class={priority}&expected_s={JOB_S:g}")
                    if answer.status == 200 and releases:
                        leases[port].append(answer.json()["lease"])
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


def ended_by_how(prometheus: Prometheus, target: str) -> dict[str, float]:
    """gpuwatch_leases_ended_total of the node at `target` now, summed over classes, by how."""
    query = f'sum by (how) (gpuwatch_leases_ended_total{{instance="{target}"}})'
    return {s["metric"]["how"]: float(s["value"][1]) for s in prometheus.api("query", query=query)["result"]}


class TestLeases:
    """Leases taken, released and expired by the gateways show in the lease families and their alert."""

    def test_the_forgetful_gateways_leases_expire_the_releasing_ones_are_released(self, stack):
        prometheus, targets = stack
        for name in ("hot", "fan"):
            until(
                lambda name=name: ended_by_how(prometheus, targets[name]).get("expired"), f"{name}: expiries"
            )
            assert ended_by_how(prometheus, targets[name])["released"] == 0
        xid = until(lambda: ended_by_how(prometheus, targets["xid"]).get("released"), "xid: releases")
        assert xid > 0
        assert ended_by_how(prometheus, targets["xid"])["expired"] == 0
        assert set(ended_by_how(prometheus, targets["cool"]).values()) == {0}
        # The forgetful node's leases were open at some scrape; the releasing node's durations are
        # the 0.2 s between rounds, in the first bucket.
        opened = f'max_over_time(sum(gpuwatch_gpu_leases{{instance="{targets["hot"]}"}})[1m:1s])'
        assert float(prometheus.api("query", query=opened)["result"][0]["value"][1]) > 0
        counted = f'sum(gpuwatch_job_duration_seconds_bucket{{instance="{targets["xid"]}", le="1.0"}})'
        assert float(prometheus.api("query", query=counted)["result"][0]["value"][1]) > 0

    def test_job_duration_quantile_panel_gives_the_releasing_nodes_durations(self, stack):
        prometheus, targets = stack
        (expr,) = [
            expr
            for title, expr in panel_queries()
            if "histogram_quantile(0.9" in expr and "quantiles" in title
        ]
        until(lambda: ended_by_how(prometheus, targets["xid"]).get("released"), "xid: releases")

        def quantiles() -> list[float]:
            series = prometheus.api("query", query=expr)["result"]
            values = [float(s["value"][1]) for s in series if s["metric"]["instance"] == targets["xid"]]
            return [value for value in values if not math.isnan(value)]  # NaN: a class nothing released

        found = until(quantiles, "a 0.9 quantile of xid's job durations")
        assert all(0 < value <= 1.0 for value in found), found

    def test_lease_alert_fires_for_the_forgetful_nodes_alone(self, stack):
        prometheus, targets = stack
        until(
            lambda: (LEASE_ALERT, targets["hot"]) in prometheus.firing(),
            f"{LEASE_ALERT} firing for the hot node",
        )
        firing = {instance for name, instance in prometheus.firing() if name == LEASE_ALERT}
        assert targets["xid"] not in firing
        assert targets["cool"] not in firing


class TestDashboard:
    """Every panel query and template variable of dashboards/*.json returns data from the daemons."""

    @pytest.mark.parametrize(("title", "expr"), panel_queries(), ids=[title for title, _ in panel_queries()])
    def test_panel_query_returns_data(self, stack, title, expr):
        prometheus, _targets = stack
        assert has_data(prometheus, expr), title

    @pytest.mark.parametrize(
        ("name", "selector", "label"), variable_queries(), ids=[name for name, _, _ in variable_queries()]
    )
    def test_variable_lists_every_daemon(self, stack, name, selector, label):
        prometheus, targets = stack
        values = {series["metric"].get(label) for series in has_data(prometheus, selector)}
        expected = {"job": set(FLEETS.values()), "instance": set(targets.values())}.get(label)
        if expected is None:  # gpu: every index some daemon reports
            expected = {
                str(gpu["index"]) for target in targets.values() for gpu in daemon_state(target)["gpus"]
            }
        assert values == expected, name


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


def daemon_state(target: str) -> dict:
    """The daemon's own view, /v1/state."""
    return get(int(target.rsplit(":", 1)[1]), "/v1/state").json()


def until(check: Callable[[], T], what: str, timeout_s: float = ALERT_TIMEOUT_S) -> T:
    """`check()`'s first truthy answer within `timeout_s`; fails naming `what` and the last answer."""
    deadline = time.monotonic() + timeout_s
    while not (answer := check()):
        assert time.monotonic() < deadline, f"{what} within {timeout_s:g} s; last: {answer!r}"
        time.sleep(0.5)
    return answer


def node_of(labels: Labels) -> tuple[str, str]:
    found = dict(labels)
    return found["job"], found["instance"]


def latest(points: list[tuple[float, float]], at: float) -> float | None:
    """The value of the last sample stamped at or before `at`, if any."""
    before = [value for stamp, value in points if stamp <= at]
    return before[-1] if before else None


def sums_seen(
    scraped: dict[Labels, list[tuple[float, float]]], node: tuple[str, str], at: float
) -> set[float]:
    """The sums over a node's scraped series that a rule evaluated at `at` may have read (IN_FLIGHT_S)."""
    series = [points for labels, points in scraped.items() if node_of(labels) == node]
    sums = set()
    for seen in (at, at - IN_FLIGHT_S):
        values = [latest(points, seen) for points in series]
        if series and None not in values:
            sums.add(sum(v for v in values if v is not None))
    return sums


def recorded_history(
    prometheus: Prometheus, record: str, series: int, window_s: int = COMPARE_S
) -> dict[Labels, list[tuple[float, float]]]:
    """`window_s` seconds of a recorded series, once every one of its `series` has that much."""

    def enough() -> dict[Labels, list[tuple[float, float]]] | None:
        found = prometheus.samples(record, window_s)
        full = len(found) == series and all(len(points) >= window_s - 2 for points in found.values())
        return found if full else None

    return until(enough, f"{window_s} s of {record} for {series} series", DATA_TIMEOUT_S + window_s)


def every_node_scraped(prometheus: Prometheus, targets: dict[str, str]) -> None:
    """Wait until the node rules have every daemon over the fleet tests' windows (not only the first ones
    scraped, as in the stack's first seconds)."""
    recorded_history(prometheus, "instance:gpuwatch_gpu_up:count", len(targets), COMPARE_S + LOOKBACK_S)


class TestFleetRules:
    """The capacity rules against what Prometheus scraped: per node, per fleet, at every evaluation."""

    @pytest.mark.parametrize("priority", CLASSES)
    def test_node_slots_are_the_sum_of_its_scraped_gpus(self, stack, priority):
        prometheus, targets = stack
        recorded = recorded_history(
            prometheus, f'instance:gpuwatch_gpu_slots:sum{{class="{priority}"}}', len(targets)
        )
        scraped = prometheus.samples(f'gpuwatch_gpu_slots{{class="{priority}"}}', COMPARE_S + LOOKBACK_S)
        assert {node_of(labels) for labels in recorded} == {
            (FLEETS[name], target) for name, target in targets.items()
        }
        assert {node_of(labels) for labels in scraped} == {node_of(labels) for labels in recorded}
        compared = 0
        for labels, points in recorded.items():
            for at, value in points:
                seen = sums_seen(scraped, node_of(labels), at)
                assert value in seen, f"{node_of(labels)} at {at}: recorded {value}, scraped sums {seen}"
                compared += 1
        assert compared >= len(targets) * (COMPARE_S - 2)

    @pytest.mark.parametrize("priority", CLASSES)
    def test_fleet_slots_are_the_sum_over_its_daemons(self, stack, priority):
        prometheus, targets = stack
        every_node_scraped(prometheus, targets)
        fleets = recorded_history(
            prometheus, f'job:gpuwatch_gpu_slots:sum{{class="{priority}"}}', len(set(FLEETS.values()))
        )
        nodes = prometheus.samples(
            f'instance:gpuwatch_gpu_slots:sum{{class="{priority}"}}', COMPARE_S + LOOKBACK_S
        )
        scraped = prometheus.samples(f'gpuwatch_gpu_slots{{class="{priority}"}}', COMPARE_S + LOOKBACK_S)
        for labels, points in fleets.items():
            job = dict(labels)["job"]
            members = [(job, target) for name, target in targets.items() if FLEETS[name] == job]
            node_points = {
                node_of(node): points for node, points in nodes.items() if dict(node)["job"] == job
            }
            assert sorted(node_points) == sorted(members)
            for at, value in points:
                # The node rules of the same evaluation, summed: exactly the fleet's value.
                same_round = [dict(points_of_node).get(at) for points_of_node in node_points.values()]
                assert None not in same_round, f"{job} at {at}: a node rule missed the evaluation"
                assert value == sum(v for v in same_round if v is not None)
                # The daemons' scraped GPUs, summed over the fleet.
                possible = {0.0}
                for member in members:
                    possible = {total + node for total in possible for node in sums_seen(scraped, member, at)}
                assert value in possible, f"{job} at {at}: recorded {value}, scraped sums {possible}"

    @pytest.mark.parametrize("priority", CLASSES)
    def test_nodes_admitting_are_the_nodes_with_a_free_slot(self, stack, priority):
        prometheus, targets = stack
        every_node_scraped(prometheus, targets)
        admitting = recorded_history(
            prometheus, f'job:gpuwatch_nodes_admitting:count{{class="{priority}"}}', len(set(FLEETS.values()))
        )
        nodes = prometheus.samples(
            f'instance:gpuwatch_gpu_slots:sum{{class="{priority}"}}', COMPARE_S + LOOKBACK_S
        )
        for labels, points in admitting.items():
            job = dict(labels)["job"]
            for at, value in points:
                free = [
                    dict(node_points).get(at)
                    for node, node_points in nodes.items()
                    if dict(node)["job"] == job
                ]
                assert free, job
                assert None not in free, f"{job} at {at}: a node rule missed the evaluation"
                assert value == sum(1 for slots in free if slots), f"{job} at {at}: {value} of {free}"

    def test_a_node_without_default_slots_reads_0(self, stack):
        prometheus, targets = stack
        fan = targets["fan"]
        until(
            lambda: all(gpu["slots"]["default"] == 0 for gpu in daemon_state(fan)["gpus"]),
            "the fan node out of default slots",
        )
        node = f'instance:gpuwatch_gpu_slots:sum{{instance="{fan}", class="default"}}'
        fleet = f'job:gpuwatch_nodes_admitting:count{{job="{HOT_FLEET}", class="default"}}'
        for record in (node, fleet):
            answer = until(
                lambda record=record: [
                    s for s in prometheus.api("query", query=record)["result"] if s["value"][1] == "0"
                ],
                f"{record} at 0",
            )
            assert len(answer) == 1

    def test_gpu_counts_are_the_daemons(self, stack):
        prometheus, targets = stack
        every_node_scraped(prometheus, targets)
        for job in set(FLEETS.values()):
            gpus = sum(
                len(daemon_state(target)["gpus"]) for name, target in targets.items() if FLEETS[name] == job
            )
            # Every simulated or replayed GPU is read: as many up as reported.
            for record in (
                f'job:gpuwatch_gpu_up:count{{job="{job}"}}',
                f'job:gpuwatch_gpu_up:sum{{job="{job}"}}',
            ):
                (points,) = recorded_history(prometheus, record, 1).values()
                assert {value for _stamp, value in points} == {gpus}, record


class TestFleetAlert:
    """The fleet out of default slots (one node whose fan failed) alerts; the fleet with slots does not."""

    def test_fires_for_the_fleet_out_of_default_slots_alone(self, stack):
        prometheus, targets = stack
        rule = next(rule for rule in rules("alerts") if rule["alert"] == FLEET_ALERT)

        def by_fleet() -> dict[str, dict]:
            return {
                alert["labels"]["job"]: alert
                for alert in prometheus.firing_alerts()
                if alert["labels"]["alertname"] == FLEET_ALERT
            }

        alert = until(lambda: by_fleet().get(HOT_FLEET), f"{FLEET_ALERT} firing for {HOT_FLEET}")
        assert MAIN_FLEET not in by_fleet()
        # The alert's own expression says why: the hot fleet is under its line, the other is not.
        under = {series["metric"]["job"] for series in prometheus.api("query", query=rule["expr"])["result"]}
        assert under == {HOT_FLEET}
        # The description's figures come from its queries: the fan node's GPUs, all up.
        gpus = len(daemon_state(targets["fan"])["gpus"])
        free = sum(gpu["slots"]["default"] for gpu in daemon_state(targets["fan"])["gpus"])
        assert (
            alert["annotations"]["summary"]
            == f"The {HOT_FLEET} fleet can start only {free} more default jobs"
        )
        assert f"(a quarter of its {gpus} GPUs up)" in alert["annotations"]["description"]
