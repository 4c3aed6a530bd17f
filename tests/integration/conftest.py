"""Fixtures for the integration tests: a scripted stub, and real servers that are ready or fail."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from int_procs import Child, HttpAnswer, Spawner, agent_line, free_port, http_get, http_request, wait_for
from int_stub import StubGpuwatch
from sim_nodes import COOL_NODE, HOT_GUARDS, HOT_NODE

GPUWATCH = [sys.executable, "-m", "gpuwatch"]
# Sample 5 times a second, so the tests see a cooling fault within a second or two.
SAMPLE_INTERVAL_S = 0.2


@dataclass(frozen=True)
class Daemon:
    """A running `gpuwatch serve`: where its HTTP API and agent listen, and its process."""

    web_port: int
    agent_port: int
    state_dir: Path
    child: Child

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"

    def get(self, path: str, headers: dict[str, str] | None = None) -> HttpAnswer:
        return http_get("127.0.0.1", self.web_port, path, headers)

    def agent(self) -> str:
        return agent_line(self.agent_port)

    def release(self, lease: str) -> HttpAnswer:
        """`POST /v1/release?lease=ID`: 200 ends an open lease, 404 says it had ended (or never was)."""
        return http_request("POST", "127.0.0.1", self.web_port, f"/v1/release?lease={lease}")

    def open_leases(self, state: dict[str, Any] | None = None) -> int:
        """Open leases on every GPU, by class, summed, as /v1/state shows them."""
        return sum(sum(gpu["leases"].values()) for gpu in (state or self.state())["gpus"])

    def wait_open_leases(self, count: int, timeout_s: float = 5.0) -> int:
        """Poll /v1/state until `count` leases are open in a sample taken after this call.

        /v1/state reads the lease book at each sample, so the one published now, and the one under
        way, may predate what the test just did: only the sample after them counts.
        """
        after = self.state()["sequence"] + 2

        def check() -> bool:
            state = self.state()
            return state["sequence"] >= after and self.open_leases(state) == count

        wait_for(check, what=f"{count} open leases", timeout_s=timeout_s)
        return count

    def state(self) -> dict[str, Any]:
        """The /v1/state document."""
        document: dict[str, Any] = json.loads(self.get("/v1/state").body)
        return document

    def node_state(self) -> str:
        return str(self.state()["state"])

    def wait_for_state(self, *states: str, timeout_s: float = 10.0) -> str:
        """Poll /v1/state until the node is in one of `states`; returns that state."""
        return wait_for(
            lambda: (state := self.node_state()) in states and state,
            what=f"node state in {states}",
            timeout_s=timeout_s,
        )


def start_gpuwatch(spawner: Spawner, name: str, scenario: str, config: str | None = None) -> Daemon:
    """`gpuwatch serve` on a simulated node (scenario TOML text), ready when /healthz answers."""
    scenario_path = spawner.log_dir / f"{name}-scenario.toml"
    scenario_path.write_text(scenario)
    web_port, agent_port = free_port(), free_port()
    state_dir = spawner.log_dir / f"{name}-state"
    state_dir.mkdir()
    argv = [
        *GPUWATCH,
        "serve",
        f"--source=sim:{scenario_path}",
        f"--interval={SAMPLE_INTERVAL_S}",
        f"--web.listen-address=127.0.0.1:{web_port}",
        f"--agent.listen-address=127.0.0.1:{agent_port}",
        f"--state-dir={state_dir}",
    ]
    if config is not None:
        config_path = spawner.log_dir / f"{name}-config.toml"
        config_path.write_text(config)
        argv.append(f"--config={config_path}")
    ready = lambda: http_get("127.0.0.1", web_port, "/healthz").status == 200  # noqa: E731
    return Daemon(web_port, agent_port, state_dir, spawner.start(argv, name=name, ready=ready))


@pytest.fixture
def stub() -> Iterator[StubGpuwatch]:
    server = StubGpuwatch()
    yield server
    server.close()


@pytest.fixture
def spawner(tmp_path: Path) -> Iterator[Spawner]:
    """Servers for one test; all stopped when it ends, however it ends."""
    servers = Spawner(tmp_path)
    yield servers
    servers.stop_all()


@pytest.fixture
def gpuwatch_serve(spawner: Spawner) -> Callable[..., Daemon]:
    """Start a `gpuwatch serve` for this test: gpuwatch_serve(scenario, config=None)."""
    count = 0

    def start(scenario: str, *, config: str | None = None) -> Daemon:
        nonlocal count
        count += 1
        return start_gpuwatch(spawner, f"gpuwatch{count}", scenario, config)

    return start


@pytest.fixture
def lease_node(gpuwatch_serve: Callable[..., Daemon]) -> Daemon:
    """A node of two cool H100s for this test alone, so its open leases are this test's own."""
    daemon = gpuwatch_serve(COOL_NODE)
    daemon.wait_for_state("ok")
    return daemon


@pytest.fixture(scope="session")
def session_spawner(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Spawner]:
    servers = Spawner(tmp_path_factory.mktemp("session-servers"))
    yield servers
    servers.stop_all()


@pytest.fixture(scope="session")
def cool_node(session_spawner: Spawner) -> Daemon:
    """A node of two cool H100s (state OK), shared by the tests that only read it."""
    daemon = start_gpuwatch(session_spawner, "cool-node", COOL_NODE)
    daemon.wait_for_state("ok")
    return daemon


@pytest.fixture(scope="session")
def hot_node(session_spawner: Spawner) -> Daemon:
    """A node of one steadily HOT H100 (admits only `critical`), shared by the tests that only read it."""
    daemon = start_gpuwatch(session_spawner, "hot-node", HOT_NODE, HOT_GUARDS)
    daemon.wait_for_state("hot")
    return daemon
