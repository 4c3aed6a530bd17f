"""A sampler that stops publishing makes the served signal fail safe: stale GPUs turn UNKNOWN."""

from __future__ import annotations

import dataclasses
import time

from serve_helpers import ServerThread, agent_answer, get, gpu, node

from gpuwatch.exposure.board import Board
from gpuwatch.policy.config import PolicyConfig
from gpuwatch.policy.engine import expire

INTERVAL_S = 0.05
CONFIG = PolicyConfig()


def _expiry(decision, now):
    return expire(decision, now, CONFIG, INTERVAL_S)


def _fresh_node(sequence: int = 1):
    now = time.monotonic()
    gpus = [dataclasses.replace(gpu(i, pressure=0.1), sampled_at=now) for i in range(2)]
    return dataclasses.replace(node(*gpus, sequence=sequence), decided_at=now)


def _wait_for_state(port: int, state: str, timeout_s: float = 3.0) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        document = get(port, "/v1/state").json()
        if document["state"] == state:
            return document
        time.sleep(0.02)
    raise AssertionError(f"state never became {state}; last {document['state']}")


class TestExpiry:
    """The server's periodic expiry check replaces a stale decision; a fresh one replaces it back."""

    def test_a_silent_sampler_turns_the_node_unknown_and_holds_default_back(self):
        with ServerThread(_fresh_node(), expiry=_expiry) as server:
            assert get(server.http_port, "/v1/admit").status == 200
            stale = _wait_for_state(server.http_port, "unknown")
            admit = get(server.http_port, "/v1/admit")
            agent, _ = agent_answer(server.agent_port)
        assert {g["state"] for g in stale["gpus"]} == {"unknown"}
        assert admit.status == 503
        assert 1 <= int(admit.headers["retry-after"]) <= 120
        assert agent == b"up drain\n"

    def test_a_fresh_decision_brings_it_back(self):
        with ServerThread(_fresh_node(), expiry=_expiry) as server:
            _wait_for_state(server.http_port, "unknown")
            server.board.publish(_fresh_node(sequence=2))
            assert get(server.http_port, "/v1/admit").status == 200

    def test_a_fresh_decision_is_left_alone(self):
        board = Board("sim:test", _expiry)
        board.publish(_fresh_node())
        before = board.current
        assert board.check_expiry(time.monotonic()) is False
        assert board.current is before
        assert board.check_expiry(time.monotonic() + 10) is True
        assert board.current.decision.state.value == "unknown"
        assert board.check_expiry(time.monotonic() + 20) is False
