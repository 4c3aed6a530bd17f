"""HAProxy agent-check on two real `gpuwatch serve` daemons: docs/integrations.md's backend, on loopback."""

from __future__ import annotations

import shutil
import socket
import time

import pytest
from int_apps import NamedApp
from int_procs import Spawner, free_port, http_get, wait_for
from int_readme import doc_block, with_addresses
from sim_nodes import COOL_NODE, SHORT_HOLD_CONFIG, cooling_fault

HAPROXY = shutil.which("haproxy") or "/usr/sbin/haproxy"
AGENT_INTER_S = 0.5  # `agent-inter 500ms` in the docs' block
# Node 1's fan fails this long after its gpuwatch starts, and is mended this long after, s:
# time to see both nodes serve, then to watch node 1 drain before it recovers.
FAULT_AT_S = 6.0
RECOVERED_AT_S = 17.0
# Pause between requests of a traffic burst, s: ~50 requests a second, bounded in count.
REQUEST_GAP_S = 0.02


class Haproxy:
    """HAProxy with the docs' backend, its two servers at `apps`, agents at `agent_ports`."""

    def __init__(self, spawner: Spawner, apps: list[NamedApp], agent_ports: list[int]) -> None:
        self.port = free_port()
        self.stats_socket = spawner.log_dir / "haproxy.sock"
        replacements: dict[str, str] = {}
        for number, (app, agent_port) in enumerate(zip(apps, agent_ports, strict=True), start=1):
            replacements[f"10.0.0.1{number}:8000"] = f"127.0.0.1:{app.port}"
            replacements[f"agent-addr 10.0.0.1{number}"] = f"agent-addr 127.0.0.1 agent-port {agent_port}"
        backend = with_addresses(doc_block("docs/integrations.md", "HAProxy", "haproxy"), replacements)
        config = spawner.log_dir / "haproxy.cfg"
        config.write_text(
            f"global\n    stats socket {self.stats_socket} mode 600 level admin\n"
            "defaults\n    mode http\n    timeout connect 1s\n    timeout client 5s\n    timeout server 5s\n"
            f"frontend gpu_api\n    bind 127.0.0.1:{self.port}\n    default_backend gpu_nodes\n{backend}"
        )
        ready = lambda: http_get("127.0.0.1", self.port, "/").status == 200  # noqa: E731
        spawner.start([HAPROXY, "-db", "-f", str(config)], name="haproxy", ready=ready)

    def served_by(self) -> str:
        return http_get("127.0.0.1", self.port, "/v1/images").body.decode()

    def burst(self, until: float) -> list[tuple[float, str]]:
        """Requests until monotonic time `until`: (time sent, upstream that answered)."""
        seen = []
        while (now := time.monotonic()) < until:
            seen.append((now, self.served_by()))
            time.sleep(REQUEST_GAP_S)
        return seen

    def server_status(self, name: str) -> str:
        """The server's status column from `show stat` on the stats socket (UP, DRAIN, ...)."""
        return self.server_stat(name, "status")

    def server_weight(self, name: str) -> int:
        """The server's effective weight from `show stat` (the agent's percentage of 100)."""
        return int(self.server_stat(name, "weight"))

    def server_stat(self, name: str, column: str) -> str:
        """One column of the server's row in `show stat` on the stats socket."""
        with socket.socket(socket.AF_UNIX) as connection:
            connection.connect(str(self.stats_socket))
            connection.sendall(b"show stat\n")
            chunks = []
            while chunk := connection.recv(65536):
                chunks.append(chunk)
        rows = [line.split(",") for line in b"".join(chunks).decode().splitlines()]
        header = rows[0]
        row = next(r for r in rows if r[:2] == ["gpu_nodes", name])
        return row[header.index(column)]


@pytest.fixture
def apps():
    servers = [NamedApp("node1"), NamedApp("node2")]
    yield servers
    for server in servers:
        server.close()


def wait_for_agent(daemon, prefix: str) -> float:
    """Poll the daemon's agent line until it starts with `prefix`; the time it was first seen.

    The line changed at most one poll (about 0.1 s: the 50 ms pause plus the agent's wait for an
    `agent-send` line) before that time.
    """
    wait_for(lambda: daemon.agent().startswith(prefix), what=f"agent line {prefix!r}", timeout_s=25.0)
    return time.monotonic()


class TestHaproxyAgentCheck:
    """A node whose GPU overheats is drained within three agent intervals, and returns when cool.

    Its weight follows its free `default` slots: admissions taking them turn it down, then drain it.
    """

    def test_weight_drops_as_admissions_take_the_slots(self, spawner, gpuwatch_serve, apps):
        # Cool GPUs, power-capped below any heat risk: each offers max_slots = 4 `default` slots,
        # 8 a node, so full weight (8 free slots per GPU) is never reached: 8 of 16 is 50 %.
        config = f"{SHORT_HOLD_CONFIG}max_slots = 4\n"
        taken = gpuwatch_serve(COOL_NODE, config=config)
        spare = gpuwatch_serve(COOL_NODE, config=config)
        for daemon in (taken, spare):
            daemon.wait_for_state("ok")
            wait_for(lambda d=daemon: d.state()["slots"]["default"] == 8, what="8 default slots")
        haproxy = Haproxy(spawner, apps, [taken.agent_port, spare.agent_port])
        wait_for(lambda: haproxy.server_weight("node1") == 50, what="node1 at weight 50")
        weights = []
        for admitted in range(1, 9):
            answer = taken.get("/v1/admit?class=default")
            assert answer.status == 200
            assert answer.headers["x-gpuwatch-slots"] == str(8 - admitted)
            if admitted in (4, 6):
                expected = round(100 * (8 - admitted) / 16)
                wait_for(lambda e=expected: haproxy.server_weight("node1") == e, what=f"weight {expected}")
                weights.append(haproxy.server_weight("node1"))
        wait_for(lambda: haproxy.server_status("node1") == "DRAIN (agent)", what="node1 drained")
        assert weights == [25, 12]
        assert taken.state()["slots"]["default"] == 0
        assert sum(g["reserved"] for g in taken.state()["gpus"]) == 8
        assert taken.get("/v1/admit?class=default").status == 503
        assert (haproxy.server_status("node2"), haproxy.server_weight("node2")) == ("UP", 50)

    @pytest.mark.slow
    def test_hot_node_drained_then_back_after_recovery(self, spawner, gpuwatch_serve, apps):
        faulty = gpuwatch_serve(cooling_fault(FAULT_AT_S, RECOVERED_AT_S), config=SHORT_HOLD_CONFIG)
        healthy = gpuwatch_serve(COOL_NODE, config=SHORT_HOLD_CONFIG)
        faulty.wait_for_state("ok", timeout_s=FAULT_AT_S)
        healthy.wait_for_state("ok")
        haproxy = Haproxy(spawner, apps, [faulty.agent_port, healthy.agent_port])
        wait_for(
            lambda: {haproxy.served_by() for _ in range(10)} == {"node1", "node2"}, what="both nodes serve"
        )

        drained_at = wait_for_agent(faulty, "up drain")
        cutoff = drained_at + 3 * AGENT_INTER_S
        traffic = haproxy.burst(until=cutoff + 1.5)
        after_cutoff = [upstream for sent, upstream in traffic if sent >= cutoff]
        assert len(after_cutoff) >= 20
        assert set(after_cutoff) == {"node2"}, (
            "node1 still got new requests three agent intervals after drain"
        )
        assert haproxy.server_status("node1") == "DRAIN (agent)"
        assert haproxy.server_status("node2") == "UP"

        ready_at = wait_for_agent(faulty, "up ready")
        time.sleep(max(0.0, ready_at + 3 * AGENT_INTER_S - time.monotonic()))
        back = [upstream for _, upstream in haproxy.burst(until=time.monotonic() + 1.0)]
        assert {"node1", "node2"} <= set(back), "traffic did not return to node1 after recovery"
        assert haproxy.server_status("node1") == "UP"
