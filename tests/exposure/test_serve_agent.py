"""The HAProxy agent-check listener: one line per connection, for the node or a named GPU."""

from __future__ import annotations

import contextlib
import re
import socket
import time

import pytest
from serve_helpers import TIMEOUT_S, ServerThread, agent_answer, get, gpu, node

from gpuwatch.exposure.agent import AGENT_SEND_WAIT_S, agent_line, requested_gpu
from gpuwatch.policy.decision import Slots, ThermalState

OK, ELEVATED, HOT = ThermalState.OK, ThermalState.ELEVATED, ThermalState.HOT
CRITICAL, UNKNOWN, FAILED = ThermalState.CRITICAL, ThermalState.UNKNOWN, ThermalState.FAILED


def _weight(line: bytes) -> int:
    found = re.fullmatch(rb"up ready (\d+)%\n", line)
    assert found, line
    return int(found.group(1))


class TestAgentLine:
    """Which line a state and the free `default` slots give."""

    def test_plenty_of_free_default_slots_is_fully_ready(self):
        assert agent_line(OK, 8, 1) == b"up ready 100%\n"
        assert agent_line(OK, 40, 4) == b"up ready 100%\n"

    def test_weight_follows_the_free_default_slots_but_never_to_zero(self):
        weights = [_weight(agent_line(OK, free, 4)) for free in range(32, 0, -1)]
        assert weights == sorted(weights, reverse=True)
        assert weights[0] == 100
        assert weights[-1] == 3  # one slot of 32 for full weight
        assert _weight(agent_line(OK, 1, 100)) == 1  # never 0 while a slot is free

    @pytest.mark.parametrize("state", [OK, ELEVATED, HOT, CRITICAL, UNKNOWN])
    def test_no_free_default_slot_drains(self, state):
        assert agent_line(state, 0, 4) == b"up drain\n"

    def test_unknown_is_ready_when_the_policy_fails_open(self):
        assert agent_line(UNKNOWN, 32, 1).startswith(b"up ready")

    def test_failed_is_down_with_a_reason(self):
        assert agent_line(FAILED, 0, 1) == b"down#gpu-failed\n"

    @pytest.mark.parametrize(
        ("sent", "expected"),
        [
            (b"gpu=3\n", "3"),
            (b"3\n", "3"),
            (b" GPU = GPU-ab \r\n", "GPU-ab"),
            (b"\n", None),
            (b"x=1\n", None),
        ],
    )
    def test_agent_send_names_a_gpu(self, sent, expected):
        assert requested_gpu(sent) == expected


class TestAgentListener:
    """The TCP listener answers from the board, never waiting on a silent client for long."""

    @pytest.mark.parametrize(
        ("gpus", "pattern"),
        [
            ((gpu(0, OK, pressure=0.05), gpu(1, OK, pressure=0.2)), rb"up ready (\d+)%\n"),
            ((gpu(0, OK), gpu(1, HOT, pressure=0.9)), rb"up ready (\d+)%\n"),  # GPU 0's slots
            ((gpu(0, HOT, pressure=0.8), gpu(1, HOT, pressure=0.9)), rb"up drain\n"),
            ((gpu(0, CRITICAL, pressure=1.0),), rb"up drain\n"),
            ((gpu(0, OK), gpu(1, FAILED, pressure=1.0)), rb"down#gpu-failed\n"),
        ],
    )
    def test_node_line_follows_the_decision(self, gpus, pattern):
        with ServerThread(node(*gpus)) as server:
            line, _ = agent_answer(server.agent_port)
        assert re.fullmatch(pattern, line), line

    def test_cooler_node_gets_more_weight(self):
        with ServerThread(node(gpu(0, pressure=0.1))) as server:
            cool, _ = agent_answer(server.agent_port)
            server.board.publish(node(gpu(0, ELEVATED, pressure=0.7)))
            warm, _ = agent_answer(server.agent_port)
        assert _weight(cool) > _weight(warm) >= 1

    def test_weight_drops_as_admissions_take_the_slots(self):
        with ServerThread(node(gpu(0, slots=Slots(8, 6, 4)), gpu(1, slots=Slots(8, 6, 4)))) as server:
            weights = [_weight(agent_answer(server.agent_port)[0])]
            for _ in range(3):
                assert get(server.http_port, "/v1/admit?class=default").status == 200
                weights.append(_weight(agent_answer(server.agent_port)[0]))
            dry = get(server.http_port, "/v1/admit?class=default&dry_run=1")
            assert dry.status == 200
            weights.append(_weight(agent_answer(server.agent_port)[0]))
        assert weights == [75, 69, 62, 56, 56]  # 12, 11, 10, 9 free of 16 for full weight; dry run takes none

    def test_agent_send_answers_for_that_gpu(self):
        with ServerThread(node(gpu(0, pressure=0.1), gpu(1, HOT, pressure=0.9))) as server:
            hot_gpu, hot_took = agent_answer(server.agent_port, b"gpu=1\n")
            cool_gpu, _ = agent_answer(server.agent_port, b"GPU-test-0000\n")
            unknown, _ = agent_answer(server.agent_port, b"gpu=7\n")
        assert hot_gpu == b"up drain\n"
        assert hot_took < AGENT_SEND_WAIT_S  # a whole line is answered without waiting out the bound
        assert _weight(cool_gpu) >= 80
        assert unknown.startswith(b"up ready")  # answered for the node: GPU 0 has default slots

    def test_a_client_that_sends_nothing_is_answered_within_the_bound(self):
        with ServerThread(node(gpu(0))) as server:
            line, took = agent_answer(server.agent_port)
        assert line.startswith(b"up ready")
        assert AGENT_SEND_WAIT_S * 0.8 <= took < AGENT_SEND_WAIT_S + 0.5

    def test_clients_that_never_read_do_not_hold_up_others(self):
        with ServerThread(node(gpu(0))) as server:
            silent = [socket.create_connection(("127.0.0.1", server.agent_port)) for _ in range(50)]
            try:
                started = time.monotonic()
                line, _ = agent_answer(server.agent_port)
                assert line.startswith(b"up ready")
                assert time.monotonic() - started < 1.0
            finally:
                for sock in silent:
                    sock.close()

    @pytest.mark.parametrize(
        "garbage",
        [
            b"\x00\xff\xfe" * 50 + b"\n",
            b"GET / HTTP/1.1\r\n\r\n",
            b"A" * 100_000,
            b"gpu=" + b"9" * 500 + b"\n",
        ],
    )
    def test_garbage_gets_the_node_line_and_the_port_keeps_serving(self, garbage):
        with ServerThread(node(gpu(0))) as server:
            with socket.create_connection(("127.0.0.1", server.agent_port), timeout=TIMEOUT_S) as sock:
                # Answered and closed before all of it was sent: fine.
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    sock.sendall(garbage)
                received = b""
                try:
                    while chunk := sock.recv(256):
                        received += chunk
                except ConnectionResetError:
                    pass
            assert received.startswith(b"up ready")
            line, _ = agent_answer(server.agent_port, b"gpu=0\n")
        assert line.startswith(b"up ready")

    def test_every_connection_is_closed_after_one_line(self):
        with (
            ServerThread(node(gpu(0))) as server,
            socket.create_connection(("127.0.0.1", server.agent_port), timeout=TIMEOUT_S) as sock,
        ):
            sock.sendall(b"gpu=0\n")
            received = b""
            while chunk := sock.recv(256):
                received += chunk
        assert received.count(b"\n") == 1
