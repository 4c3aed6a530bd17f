"""`gpuwatch serve` flags: what it accepts, what it refuses at start, and how it shuts down."""

from __future__ import annotations

import re
import signal
import socket
import time

import pytest
from serve_helpers import TIMEOUT_S, ServeProcess, get, run_serve, split_responses

QUICK = ("--source=sim:1xH100", "--interval=0.1")
EPHEMERAL = ("--web.listen-address=127.0.0.1:0", "--agent.listen-address=127.0.0.1:0")


@pytest.fixture
def serve():
    started: list[ServeProcess] = []

    def start(*args: str, env: dict[str, str] | None = None) -> ServeProcess:
        process = ServeProcess(*args, env=env)
        started.append(process)
        return process

    yield start
    for process in started:
        process.kill()


class TestRefusedStarts:
    """Bad settings end the command at once with status 2 and one sentence naming the problem."""

    def test_bad_config_names_file_line_and_key(self, tmp_path):
        config = tmp_path / "gpuwatch.toml"
        config.write_text("[policy]\nstate_hold_s = 5\nstate_hold = 1\n")
        result = run_serve(*QUICK, *EPHEMERAL, f"--state-dir={tmp_path}", f"--config={config}")
        assert result.returncode == 2
        assert f"{config}:3: policy.state_hold: unknown key" in result.stderr

    @pytest.mark.parametrize(
        ("setting", "replaced_by"),
        [("hot_dwell_s = 30", "state_hold_s"), ("elevated_enter_margin_c = 15", "guard_c")],
    )
    def test_a_retired_setting_names_what_replaced_it(self, tmp_path, setting, replaced_by):
        config = tmp_path / "gpuwatch.toml"
        config.write_text(f"[policy]\nhorizon_s = 60\n{setting}\n")
        result = run_serve(*QUICK, *EPHEMERAL, f"--state-dir={tmp_path}", f"--config={config}")
        assert result.returncode == 2
        key = setting.split(" = ")[0]
        assert f"{config}:3: policy.{key}: retired: " in result.stderr
        assert replaced_by in result.stderr

    def test_a_retired_flag_is_refused_too(self, tmp_path):
        result = run_serve(*QUICK, *EPHEMERAL, f"--state-dir={tmp_path}", "--policy.set", "hot_dwell_s=30")
        assert result.returncode == 2
        assert "policy.hot_dwell_s: retired: " in result.stderr

    def test_state_dir_that_cannot_be_created(self, tmp_path):
        blocker = tmp_path / "not-a-dir"
        blocker.write_text("")
        result = run_serve(*QUICK, *EPHEMERAL, f"--state-dir={blocker}/gpuwatch")
        assert result.returncode == 2
        assert "cannot create the state directory" in result.stderr
        assert "--state-dir" in result.stderr

    def test_address_in_use(self):
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            port = taken.getsockname()[1]
            result = run_serve(*QUICK, f"--web.listen-address=127.0.0.1:{port}", "--agent.listen-address=")
        assert result.returncode == 2
        assert f"cannot listen on 127.0.0.1:{port}" in result.stderr

    @pytest.mark.parametrize("flag", ["--web.listen-address=9478", "--agent.listen-address=::1:9479"])
    def test_unreadable_listen_address(self, tmp_path, flag):
        result = run_serve(*QUICK, flag, f"--state-dir={tmp_path}")
        assert result.returncode == 2
        assert "HOST:PORT" in result.stderr or "brackets" in result.stderr

    def test_unknown_source(self, tmp_path):
        result = run_serve("--source=sim:3xB9000", *EPHEMERAL, f"--state-dir={tmp_path}")
        assert result.returncode == 2
        assert "B9000" in result.stderr


class TestServing:
    """Flags and environment variables that shape a running daemon."""

    def test_environment_variables_stand_in_for_flags(self, serve, tmp_path):
        daemon = serve(
            env={
                "GPUWATCH_SOURCE": "sim:2xA100",
                "GPUWATCH_INTERVAL": "0.1",
                "GPUWATCH_WEB_LISTEN_ADDRESS": "127.0.0.1:0",
                "GPUWATCH_AGENT_LISTEN_ADDRESS": "",
                "GPUWATCH_STATE_DIR": str(tmp_path / "state"),
            }
        )
        port = daemon.port("HTTP")
        deadline = time.monotonic() + TIMEOUT_S
        while get(port, "/v1/state").json()["sequence"] == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        state = get(port, "/v1/state").json()
        assert state["source"] == "sim:2xA100"
        assert [g["name"] for g in state["gpus"]] == ["NVIDIA A100-SXM4-80GB"] * 2
        assert (tmp_path / "state" / "state.json").exists()
        assert not any("HAProxy agent" in line for line in daemon.lines)

    def test_several_web_addresses_including_ipv6(self, serve, tmp_path):
        if not socket.has_ipv6:
            pytest.fail("the test machine needs IPv6 on loopback")
        daemon = serve(
            *QUICK,
            "--web.listen-address=127.0.0.1:0",
            "--web.listen-address=[::1]:0",
            "--agent.listen-address=",
            f"--state-dir={tmp_path}",
        )
        v4 = daemon.port("HTTP")
        v6 = int(daemon.wait_for_log(r"serving HTTP on \[::1\]:(\d+)").group(1))
        with socket.create_connection(("::1", v6), timeout=TIMEOUT_S) as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nConnection: close\r\n\r\n")
            assert sock.recv(100).startswith(b"HTTP/1.1 200")
        assert get(v4, "/healthz").status == 200

    def test_sigterm_finishes_a_request_in_flight_then_exits_0(self, serve, tmp_path):
        daemon = serve(*QUICK, *EPHEMERAL, f"--state-dir={tmp_path}")
        port = daemon.port("HTTP")
        with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT_S) as sock:
            sock.sendall(b"GET /v1/state HTTP/1.1\r\nHost: t\r\n")
            time.sleep(0.2)
            daemon.process.terminate()
            daemon.wait_for_log("stopping")
            sock.sendall(b"\r\n")
            received = b""
            while chunk := sock.recv(65536):
                received += chunk
        (status, headers, body) = split_responses(received)[0]
        assert status.startswith(b"HTTP/1.1 200")
        assert headers[b"connection"] == b"close"
        assert b'"gpus"' in body
        assert daemon.process.wait(TIMEOUT_S) == 0
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=1).close()

    def test_sighup_rereads_the_config_and_keeps_running_on_a_bad_one(self, serve, tmp_path):
        config = tmp_path / "gpuwatch.toml"
        config.write_text("[policy]\nstate_hold_s = 5\n")
        daemon = serve(*QUICK, *EPHEMERAL, f"--state-dir={tmp_path}", f"--config={config}")
        port = daemon.port("HTTP")
        config.write_text("[policy]\n\nstate_hold_s = -1\n")
        daemon.process.send_signal(signal.SIGHUP)
        daemon.wait_for_log(
            rf"keeping the running settings: {re.escape(str(config))}:3: policy\.state_hold_s"
        )
        config.write_text("[policy]\nstate_hold_s = 1\nhot_dwell_s = 30\n")  # a setting the slots retired
        daemon.process.send_signal(signal.SIGHUP)
        daemon.wait_for_log(
            rf"keeping the running settings: {re.escape(str(config))}:3: "
            r"policy\.hot_dwell_s: retired: .*state_hold_s"
        )
        config.write_text("[policy]\nstate_hold_s = 1\n")
        daemon.process.send_signal(signal.SIGHUP)
        daemon.wait_for_log("SIGHUP: reloaded")
        assert get(port, "/healthz").status == 200
        assert daemon.stop()[0] == 0

    def test_files_say_unknown_after_exit(self, serve, tmp_path):
        daemon = serve(*QUICK, *EPHEMERAL, f"--state-dir={tmp_path}")
        daemon.wait_for_log("node unknown -> ")
        code, _ = daemon.stop()
        assert code == 0
        assert '"state":"unknown"' in (tmp_path / "state.json").read_text()
