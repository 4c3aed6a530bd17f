"""sd_notify over a real NOTIFY_SOCKET: READY after the first decision, STATUS, WATCHDOG, STOPPING."""

from __future__ import annotations

import itertools
import os
import time

import pytest
from service_helpers import EPHEMERAL, QUICK, NotifySocket, Serve, state

from gpuwatch.exposure.board import Board
from gpuwatch.policy.config import PolicyConfig
from gpuwatch.policy.engine import Policy
from gpuwatch.sampler.loop import TIMEOUT
from gpuwatch.service.notify import Notifier
from gpuwatch.service.watchdog import ServiceReporter, SourceLiveness
from gpuwatch.sources.model import SampleHealth, Snapshot

# systemd's watchdog for the child, µs: pings are due every 0.3 s.
WATCHDOG_USEC = 600_000
INTERVAL_S = 0.1


@pytest.fixture
def notify_socket(tmp_path):
    listener = NotifySocket(tmp_path / "notify.sock")
    yield listener
    listener.close()


class TestNotifier:
    """The datagrams themselves, to a path socket and to an abstract one."""

    def test_ready_and_status_in_one_datagram_to_a_path_socket(self, notify_socket):
        notifier = Notifier({"NOTIFY_SOCKET": notify_socket.address})
        assert notifier.enabled
        notifier.ready("node ok: fine")
        _, message = notify_socket.wait_for("READY", "1")
        assert message == {"READY": "1", "STATUS": "node ok: fine"}
        notifier.close()

    def test_abstract_socket_named_with_an_at_sign(self):
        name = f"gpuwatch-test-{os.getpid()}-{time.monotonic_ns()}"
        listener = NotifySocket(abstract_name=name)
        try:
            notifier = Notifier({"NOTIFY_SOCKET": "@" + name})
            notifier.stopping()
            _, message = listener.wait_for("STOPPING", "1")
            assert message["STATUS"].startswith("stopping")
            notifier.close()
        finally:
            listener.close()

    def test_without_notify_socket_nothing_is_sent_and_nothing_fails(self):
        notifier = Notifier({})
        assert not notifier.enabled
        assert notifier.send(READY="1") is False
        assert notifier.watchdog_s is None

    def test_watchdog_period_is_for_this_process_only(self, notify_socket):
        ours = {"NOTIFY_SOCKET": notify_socket.address, "WATCHDOG_USEC": "2000000"}
        assert Notifier(ours).watchdog_s == 2.0
        assert Notifier({**ours, "WATCHDOG_PID": str(os.getpid())}).watchdog_s == 2.0
        assert Notifier({**ours, "WATCHDOG_PID": str(os.getpid() + 1)}).watchdog_s is None
        assert Notifier({**ours, "WATCHDOG_USEC": "0"}).watchdog_s is None

    def test_a_vanished_socket_is_logged_not_raised(self, tmp_path, caplog):
        notifier = Notifier({"NOTIFY_SOCKET": str(tmp_path / "gone.sock")})
        assert notifier.send(READY="1") is False
        assert notifier.send(READY="1") is False
        notifier.close()
        assert sum("cannot notify systemd" in r.message for r in caplog.records) == 1


def _snapshot(sequence: int, monotonic: float, timeouts: int) -> Snapshot:
    failures = {TIMEOUT: timeouts} if timeouts else {}
    health = SampleHealth(attempts=sequence, failures=failures, last_success_monotonic=monotonic)
    return Snapshot(sequence, time.time(), monotonic, "sim:test", (), health)


class TestReporter:
    """READY waits for a decision; WATCHDOG stops when the source stops answering."""

    def test_ready_only_after_the_first_decision(self, notify_socket):
        notifier = Notifier({"NOTIFY_SOCKET": notify_socket.address})
        policy = Policy(PolicyConfig(), INTERVAL_S)
        board = Board("sim:test", lambda d, _now: d)
        reporter = ServiceReporter(notifier, board, SourceLiveness(0.0), lambda: 1.0, lambda: False)
        reporter.update(time.monotonic())
        time.sleep(0.2)
        assert not reporter.ready
        assert notify_socket.messages == []
        decision = policy.update(_snapshot(1, time.monotonic(), 0))
        board.publish(decision)
        reporter.update(time.monotonic())
        notifier.close()
        _, message = notify_socket.wait_for("READY", "1")
        assert message["STATUS"] == f"node {decision.state}: {decision.sentence}"

    def test_liveness_ignores_snapshots_of_reads_that_timed_out(self):
        liveness = SourceLiveness(0.0)
        liveness.observe(_snapshot(1, 10.0, 0))
        assert liveness.age_s(10.5) == 0.5
        liveness.observe(_snapshot(2, 11.0, 1))  # the read hung: TIMEOUT counted
        liveness.observe(_snapshot(3, 12.0, 2))
        assert liveness.age_s(12.0) == 2.0
        liveness.observe(_snapshot(4, 13.0, 2))  # answered again
        assert liveness.age_s(13.0) == 0.0


class TestServeTellsSystemd:
    """A real `gpuwatch serve` talks to a real datagram socket, as under systemd."""

    def test_ready_status_watchdog_and_stopping(self, notify_socket):
        env = {"NOTIFY_SOCKET": notify_socket.address, "WATCHDOG_USEC": str(WATCHDOG_USEC)}
        daemon = Serve(*QUICK, *EPHEMERAL, env=env)
        try:
            port = daemon.http_port()
            ready_at, ready = notify_socket.wait_for("READY", "1")
            assert ready["STATUS"].startswith("node ok: ")
            assert state(port)["sequence"] >= 1  # READY came after a decision was being served
            time.sleep(1.5)
            pings = notify_socket.times("WATCHDOG", ready_at, time.monotonic())
            # Every 0.3 s (half of WatchdogSec) for 1.5 s: about five; never a gap near the timeout.
            assert len(pings) >= 3, notify_socket.messages
            assert max(b - a for a, b in itertools.pairwise(pings)) < WATCHDOG_USEC / 1e6
            stop_sent = time.monotonic()
            code, _ = daemon.stop()
            _, stopping = notify_socket.wait_for("STOPPING", "1", after=stop_sent)
            assert code == 0
            assert stopping["STATUS"].startswith("stopping")
        finally:
            daemon.kill()

    def test_other_pid_watchdog_means_no_pings(self, notify_socket):
        env = {
            "NOTIFY_SOCKET": notify_socket.address,
            "WATCHDOG_USEC": str(WATCHDOG_USEC),
            "WATCHDOG_PID": "1",  # meant for another process
        }
        daemon = Serve(*QUICK, *EPHEMERAL, env=env)
        try:
            _ready_at, _ = notify_socket.wait_for("READY", "1")
            time.sleep(1.0)
            assert notify_socket.times("WATCHDOG", 0, time.monotonic()) == []
            assert daemon.stop()[0] == 0
        finally:
            daemon.kill()

    def test_a_hung_nvml_call_stops_the_watchdog_pings_until_it_returns(self, fake_nvml, notify_socket):
        from fake_nvml.profiles import H100_SXM  # noqa: PLC0415 - test-only package

        fake_nvml.install([H100_SXM] * 2)
        env = {
            **fake_nvml.env("full"),
            "NOTIFY_SOCKET": notify_socket.address,
            "WATCHDOG_USEC": str(WATCHDOG_USEC),
        }
        daemon = Serve("--source=nvml", f"--interval={INTERVAL_S}", *EPHEMERAL, env=env)
        try:
            notify_socket.wait_for("READY", "1")
            notify_socket.wait_for("WATCHDOG", "1", after=time.monotonic())
            fake_nvml.block(1, "nvmlDeviceGetPowerUsage")
            blocked_at = time.monotonic()
            daemon.wait_for_log(r"event=watchdog_withheld")
            time.sleep(1.5)
            # Stale after 3 intervals (0.3 s) plus at most one ping period (0.3 s) and scheduling slack.
            late = notify_socket.times("WATCHDOG", blocked_at + 0.9, time.monotonic())
            assert late == [], "pings went on while NVML hung"
            assert fake_nvml.calls(1, "nvmlDeviceGetPowerUsage") >= 1
            fake_nvml.release(1, "nvmlDeviceGetPowerUsage")
            released_at = time.monotonic()
            notify_socket.wait_for("WATCHDOG", "1", after=released_at, timeout_s=3.0)
            daemon.wait_for_log(r"event=watchdog_resumed")
            assert daemon.stop()[0] == 0
        finally:
            fake_nvml.release_all()
            daemon.kill()

    def test_only_assignments_systemd_knows_are_sent(self, notify_socket):
        daemon = Serve(*QUICK, *EPHEMERAL, env={"NOTIFY_SOCKET": notify_socket.address})
        try:
            notify_socket.wait_for("READY", "1")
            assert daemon.stop()[0] == 0
            notify_socket.wait_for("STOPPING", "1")
        finally:
            daemon.kill()
        known = {"READY", "STATUS", "WATCHDOG", "STOPPING", "RELOADING", "MONOTONIC_USEC"}
        assert {key for _, pairs in notify_socket.messages for key in pairs} <= known
