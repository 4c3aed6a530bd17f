"""`gpuwatch fleet` over a real Prometheus and straight from the daemons: hottest first, silent nodes shown.

Debian's prometheus scrapes, every second on loopback, three `gpuwatch serve --source sim:...`
daemons (a cool node, a warm one, and one whose fan fails two seconds in) and one port where
nothing listens. `--targets` asks the same three daemons, a closed port and a socket that accepts
and never answers.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

import pytest
from prom_helpers import Prometheus, free_port
from serve_helpers import ServeProcess, get
from sim_nodes import COOL_NODE, HOT_NODE, SHORT_HOLD_CONFIG, cooling_fault

pytestmark = pytest.mark.slow

# The fan of the "fault" node fails 2 s in; on the first-order plant it is HOT within seconds.
FAULT_AT_S = 2.0
WAIT_S = 40.0
NODE_TIMEOUT_S = 1.0


def fleet(*args: str) -> subprocess.CompletedProcess[str]:
    environment = {key: value for key, value in os.environ.items() if not key.startswith("GPUWATCH_")}
    return subprocess.run(
        [sys.executable, "-m", "gpuwatch", "fleet", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**environment, "NO_COLOR": "1"},
        check=False,
    )


@pytest.fixture(scope="module")
def nodes(tmp_path_factory):
    """The three daemons' addresses by name, and a Prometheus scraping them and a dead port."""
    folder = tmp_path_factory.mktemp("fleet")
    scenarios = {"cool": COOL_NODE, "warm": HOT_NODE, "fault": cooling_fault(FAULT_AT_S)}
    (folder / "hold.toml").write_text(SHORT_HOLD_CONFIG)
    common = ("--web.listen-address=127.0.0.1:0", "--agent.listen-address=", "--state-dir=")
    daemons = {}
    prometheus = None
    try:
        for name, scenario in scenarios.items():
            (folder / f"{name}.toml").write_text(scenario)
            daemons[name] = ServeProcess(
                f"--source=sim:{folder / name}.toml", f"--config={folder / 'hold.toml'}", *common
            )
        addresses = {name: f"127.0.0.1:{daemon.port('HTTP')}" for name, daemon in daemons.items()}
        dead = f"127.0.0.1:{free_port()}"
        prometheus = Prometheus(folder, [*addresses.values(), dead], [])
        prometheus.wait_ready()
        yield addresses, dead, prometheus
    finally:
        if prometheus is not None:
            prometheus.stop()
        for daemon in daemons.values():
            daemon.kill()


def _until(check, what: str):
    """`check()`'s first truthy answer within WAIT_S; fails naming `what` and the last answer."""
    deadline = time.monotonic() + WAIT_S
    while True:
        answer = check()
        if answer:
            return answer
        assert time.monotonic() < deadline, f"{what} within {WAIT_S:g} s; last: {answer!r}"
        time.sleep(0.5)


def _state(address: str) -> dict:
    return get(int(address.rsplit(":", 1)[1]), "/v1/state").json()


def _fault_is_hot(addresses: dict[str, str]) -> bool:
    return _state(addresses["fault"])["state"] in ("hot", "critical")


class TestFleetOverPrometheus:
    def test_the_cooling_fault_comes_first_and_the_dead_target_says_why(self, nodes):
        addresses, dead, prometheus = nodes
        _until(lambda: _fault_is_hot(addresses), "the fault node HOT")
        url = f"http://127.0.0.1:{prometheus.port}"

        def scraped_hot():
            result = fleet("--prometheus", url, "--json", "--timeout", "5")
            document = json.loads(result.stdout) if result.stdout else {}
            nodes = document.get("nodes", [])
            answered = [node for node in nodes if node["reachable"]]
            if len(answered) == 3 and nodes[0]["state"] in ("hot", "critical"):
                return document
            return None

        document = _until(scraped_hot, "Prometheus showing three nodes, the fault node first")
        rows = document["nodes"]
        assert [row["node"] for row in rows[:1]] == [addresses["fault"]]
        assert {row["node"] for row in rows} == {*addresses.values(), dead}
        assert rows[-1]["node"] == dead
        assert rows[-1]["reachable"] is False
        assert rows[-1]["error"].startswith("scrape failed: ")
        assert "connection refused" in rows[-1]["error"]
        answered = rows[:3]
        # The fault first (HOT), then the two OK nodes by their hottest GPU: the warm one first.
        assert [row["node"] for row in answered] == [addresses[name] for name in ("fault", "warm", "cool")]
        by_node = {row["node"]: row for row in rows}
        cool = by_node[addresses["cool"]]
        assert cool["gpus"] == 2
        assert cool["slots"] == _state(addresses["cool"])["slots"]
        assert cool["state"] == "ok"
        fault = by_node[addresses["fault"]]
        assert fault["slots"]["default"] == 0
        assert "default" not in fault["admits"]
        assert fault["worst_gpu"]["index"] == 0
        assert fault["worst_gpu"]["margin_c"] < cool["worst_gpu"]["margin_c"]
        assert 0 <= fault["sample_age_s"] < 5
        summary = document["summary"]
        assert summary["nodes"] == 4
        assert summary["unreachable"] == 1
        assert summary["gpus"] == 4
        assert summary["nodes_admitting"]["default"] == sum("default" in row["admits"] for row in answered)
        assert summary["free_slots"]["default"] == sum(row["slots"]["default"] for row in answered)
        assert document["status"] == 1

        table = fleet("--prometheus", url)
        print(table.stdout)  # noqa: T201 - the table is this test's report
        assert table.returncode == 1, table.stderr
        lines = table.stdout.splitlines()
        assert lines[0] == f"fleet from Prometheus {url}, job gpuwatch"
        assert lines[1].startswith("4 nodes (1 unreachable), 4 GPUs | nodes admitting critical ")
        assert lines[2].split()[:4] == ["NODE", "STATE", "PRESSURE", "FREE"]
        assert lines[3].split()[0] == addresses["fault"]
        assert lines[3].split()[1] in ("hot", "critical")
        assert lines[6].split()[:2] == [dead, "unreachable"]
        assert lines[7].startswith(f"{dead}: scrape failed: ")

    def test_another_job_has_no_nodes(self, nodes):
        _, _, prometheus = nodes
        result = fleet("--prometheus", f"http://127.0.0.1:{prometheus.port}", "--job", "nothing", "--json")
        assert result.returncode == 2
        assert json.loads(result.stdout)["nodes"] == []

    def test_no_prometheus_is_one_sentence_and_status_2(self):
        result = fleet("--prometheus", f"http://127.0.0.1:{free_port()}")
        assert result.returncode == 2
        assert result.stdout == ""
        assert result.stderr.startswith("gpuwatch: no Prometheus answered at http://127.0.0.1:")
        assert len(result.stderr.splitlines()) == 1


class TestFleetFromTheDaemons:
    def test_parallel_with_a_timeout_per_node(self, nodes):
        addresses, dead, _ = nodes
        _until(lambda: _fault_is_hot(addresses), "the fault node HOT")
        with socket.socket() as silent:
            # Accepts connections (the kernel's backlog) and never answers a byte.
            silent.bind(("127.0.0.1", 0))
            silent.listen(8)
            hanging = f"127.0.0.1:{silent.getsockname()[1]}"
            targets = [addresses["cool"], hanging, addresses["warm"], dead, addresses["fault"]]
            started = time.monotonic()
            result = fleet("--targets", ",".join(targets), "--timeout", str(NODE_TIMEOUT_S))
            took_s = time.monotonic() - started
        print(result.stdout)  # noqa: T201 - the table is this test's report
        assert result.returncode == 1, result.stderr
        lines = result.stdout.splitlines()
        order = [line.split()[0] for line in lines[3:8]]
        assert order[:3] == [addresses[name] for name in ("fault", "warm", "cool")]
        assert set(order[3:]) == {hanging, dead}
        assert lines[1].startswith("5 nodes (2 unreachable), 4 GPUs | ")
        reasons = dict(line.split(": ", 1) for line in lines[8:])
        assert reasons[hanging].endswith(f"did not answer within {NODE_TIMEOUT_S:g} s")
        assert "connection refused" in reasons[dead]
        # Asked in parallel: one node's timeout (connect, then read), not one per node, plus start-up.
        assert took_s < 2 * NODE_TIMEOUT_S + 8

    def test_json_rows_match_each_daemons_state(self, nodes):
        addresses, _, _ = nodes
        result = fleet("--targets", addresses["cool"] + "," + addresses["warm"], "--json")
        document = json.loads(result.stdout)
        for row in document["nodes"]:
            state = _state(row["node"])
            assert row["gpus"] == len(state["gpus"])
            assert row["state"] == state["state"]
            assert row["slots"] == state["slots"]

    def test_watch_when_piped_appends_one_frame_per_refresh(self, nodes):
        addresses, _, _ = nodes
        result = fleet("--targets", addresses["cool"], "--watch", "0.5", "--count", "3")
        assert result.returncode == 0, result.stderr
        assert result.stdout.count("fleet from 1 target (") == 3
        assert "\x1b[" not in result.stdout

    @pytest.mark.parametrize(
        ("args", "message"),
        [
            (("--targets", "gpu-node-1"), "--targets entry 'gpu-node-1' is not host:port"),
            (("--targets", " , "), "--targets names no node"),
            ((), "give one of --prometheus URL or --targets"),
            (("--targets", "a:1", "--prometheus", "http://b:9090"), "give one of --prometheus URL"),
            (("--prometheus", "ftp://b:9090"), "is not an http(s) URL"),
        ],
    )
    def test_bad_arguments_are_named(self, args, message):
        result = fleet(*args)
        assert result.returncode == 2
        assert message in result.stderr
