"""`gpuwatch status` asks a real `gpuwatch serve` and shows its decision: slots, leases, job plans, why."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time

import pytest
from serve_helpers import ServeProcess, get
from sim_nodes import COOL_NODE, HOT_GUARDS, HOT_NODE

from gpuwatch.cli.daemon_view import render_daemon_state

# Long enough that the decision `status` shows is the one a direct GET gets just after.
INTERVAL_S = 30.0
TIMEOUT_S = 10.0
ANSI = re.compile(r"\x1b\[[0-9;]*m")
# The busy node's gateways say how long their default jobs run; the other classes' are unknown.
JOB_SECONDS = "[policy.job_seconds]\ndefault = 12\n"
NO_LEASES = {"critical": 0, "default": 0, "sheddable": 0}
UNKNOWN_PLANS = "jobs planned critical ? (unknown), default ? (unknown), sheddable ? (unknown)"


def status(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environment = {key: value for key, value in os.environ.items() if not key.startswith("GPUWATCH_")}
    return subprocess.run(
        [sys.executable, "-m", "gpuwatch", "status", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**environment, **(env or {})},
        check=False,
    )


@pytest.fixture(scope="module")
def hot_daemon(tmp_path_factory):
    folder = tmp_path_factory.mktemp("status")
    yield from _serving(folder, HOT_NODE, HOT_GUARDS, INTERVAL_S)


@pytest.fixture(scope="module")
def busy_daemon(tmp_path_factory):
    """A cool node sampled every 0.2 s, so that leases show in its decision at once."""
    folder = tmp_path_factory.mktemp("busy")
    yield from _serving(folder, COOL_NODE, JOB_SECONDS, 0.2)


def _serving(folder, node: str, config: str, interval_s: float):
    """`gpuwatch serve` on the sim node `node` with the [policy] `config`; yields its HTTP port."""
    (folder / "node.toml").write_text(node)
    (folder / "gpuwatch.toml").write_text(config)
    daemon = ServeProcess(
        f"--source=sim:{folder / 'node.toml'}",
        f"--interval={interval_s}",
        "--web.listen-address=127.0.0.1:0",
        "--agent.listen-address=",
        "--state-dir=",
        f"--config={folder / 'gpuwatch.toml'}",
    )
    try:
        yield daemon.port("HTTP")
    finally:
        daemon.kill()


def _leases_become(port: int, expected: list[dict[str, int]]) -> dict:
    """/v1/state once its GPUs' open leases are `expected` (GPU by GPU); fails after TIMEOUT_S."""
    deadline = time.monotonic() + TIMEOUT_S
    while (state := get(port, "/v1/state").json())["gpus"] and [
        gpu["leases"] for gpu in state["gpus"]
    ] != expected:
        assert time.monotonic() < deadline, [gpu["leases"] for gpu in state["gpus"]]
        time.sleep(0.05)
    return state


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class TestStatusAsksTheDaemon:
    def test_the_screen_shows_the_held_back_gpu_its_slots_and_why(self, hot_daemon):
        result = status("--url", f"http://127.0.0.1:{hot_daemon}")
        state = get(hot_daemon, "/v1/state").json()
        print(result.stdout)  # noqa: T201 - the screen is this test's report
        assert result.returncode == 1, result.stderr  # HOT: a problem, as `gpuwatch check` says
        lines = result.stdout.splitlines()
        assert lines[0].startswith("node hot | pressure ")
        critical = state["slots"]["critical"]
        assert critical > 0
        assert f"free slots critical {critical}, default 0, sheddable 0" in lines[0]
        assert lines[1] == UNKNOWN_PLANS  # no gateway has said or shown how long its jobs run
        assert lines[2].split() == [
            "GPU",
            "NAME",
            "STATE",
            "SLOTS",
            "C/D/S",
            "LEASES",
            "C/D/S",
            "MARGIN",
            "PREDICTED",
            "TO",
            "SLOWDOWN",
            "POWER",
            "/",
            "LIMIT",
            "UTIL",
            "MEMORY",
        ]
        gpu = state["gpus"][0]
        row = re.split(r"\s{2,}", lines[3])
        assert row[:6] == ["0", gpu["name"], "hot", f"{critical}/0/0", "0/0/0", f"{gpu['margin_c']:.1f}C"]
        assert row[8] == f"{gpu['power_w']:.0f} / {gpu['power_limit_w']:.0f} W"
        assert row[9] == f"{gpu['utilization_ratio']:.0%}"
        assert lines[4] == f"GPU 0: {gpu['sentence']}"
        assert "\x1b[" not in result.stdout  # piped: no colours

    def test_open_leases_and_planned_durations_follow_admissions_and_releases(self, busy_daemon):
        url = f"http://127.0.0.1:{busy_daemon}"
        taken = {}
        for priority, count in (("critical", 1), ("default", 2), ("sheddable", 3)):
            for number in range(count):
                answer = get(busy_daemon, f"/v1/admit?class={priority}&gpu=0").json()
                assert answer["admitted"], answer
                taken[priority, number] = answer["lease"]
        state = _leases_become(busy_daemon, [{"critical": 1, "default": 2, "sheddable": 3}, NO_LEASES])
        result = status("--url", url)
        print(result.stdout)  # noqa: T201 - the screen is this test's report
        assert result.returncode == 0, result.stderr
        lines = result.stdout.splitlines()
        # The default class's jobs are planned with the configured 12 s; nothing says the others'.
        assert (
            lines[1] == "jobs planned critical ? (unknown), default 12 s (configured), sheddable ? (unknown)"
        )
        assert state["expected_job_s"]["default"] == {"seconds": 12.0, "basis": "configured"}
        leases_column = lines[2].index("LEASES C/D/S")
        assert lines[3][leases_column:].split()[0] == "1/2/3"
        # A release shows at the next decision (0.2 s later), and so in the next status.
        assert get(busy_daemon, f"/v1/release?lease={taken['default', 0]}", method="POST").status == 200
        _leases_become(busy_daemon, [{"critical": 1, "default": 1, "sheddable": 3}, NO_LEASES])
        lines = status("--url", url).stdout.splitlines()
        assert lines[3][leases_column:].split()[0] == "1/1/3"
        # --json: the daemon's own answer, open leases per GPU and the plans included.
        document = json.loads(status("--url", url, "--json").stdout)
        assert document["gpus"][0]["leases"] == {"critical": 1, "default": 1, "sheddable": 3}
        assert document["expected_job_s"] == state["expected_job_s"]
        for lease in taken.values():
            get(busy_daemon, f"/v1/release?lease={lease}", method="POST")

    def test_json_is_the_daemons_state_answer_byte_for_byte(self, hot_daemon):
        result = status("--url", f"http://127.0.0.1:{hot_daemon}", "--json")
        answer = get(hot_daemon, "/v1/state")
        assert result.returncode == 1
        assert result.stdout.encode() == answer.body
        assert json.loads(result.stdout)["gpus"][0]["memory_total_bytes"] > 0

    def test_watch_asks_again_each_time(self, hot_daemon):
        result = status("--url", f"http://127.0.0.1:{hot_daemon}", "--watch", "0.1", "--count", "3")
        assert result.returncode == 1
        assert sum(line.startswith("node hot |") for line in result.stdout.splitlines()) == 3

    def test_colours_mark_state_and_margin_without_moving_the_columns(self, hot_daemon):
        document = get(hot_daemon, "/v1/state").json()
        coloured = render_daemon_state(document, colour=True)
        plain = render_daemon_state(document, colour=False)
        assert "\x1b[31m" in coloured  # hot in red, and a 3 °C margin in yellow
        assert "\x1b[33m" in coloured
        assert ANSI.sub("", coloured) == plain


class TestStatusWithoutADaemon:
    def test_says_so_and_reads_the_source_directly(self, fake_nvml):
        from fake_nvml.profiles import H100_SXM  # noqa: PLC0415 - test-only package

        fake_nvml.install([H100_SXM] * 2)
        url = f"http://127.0.0.1:{_free_port()}"
        result = status("--url", url, env=fake_nvml.env("full"))
        assert result.returncode == 0, result.stderr
        assert result.stderr.startswith(f"gpuwatch: no daemon answered (cannot reach gpuwatch at {url}")
        assert "reading --source nvml directly" in result.stderr
        lines = result.stdout.splitlines()
        assert lines[0] == f"no policy ran: raw readings from nvml, no gpuwatch daemon at {url}"
        assert [line.split()[0] for line in lines[1:4]] == ["GPU", "0", "1"]

    def test_an_explicit_source_is_read_without_asking(self):
        result = status("--source", "sim:1xH100", "--url", f"http://127.0.0.1:{_free_port()}")
        assert result.returncode == 0, result.stderr
        assert result.stderr == ""
        assert "no policy ran" not in result.stdout
        assert result.stdout.splitlines()[0].split()[:3] == ["GPU", "NAME", "TEMP"]


TMUX = shutil.which("tmux")


class Tmux:
    """A shell in a detached tmux session on its own server: a real terminal the test can read."""

    def __init__(self, name: str, width: int, height: int) -> None:
        self.base = [TMUX or "tmux", "-L", name]
        self.run(
            "new-session", "-d", "-s", "t", "-x", str(width), "-y", str(height), "bash --norc --noprofile"
        )
        self.run("set-option", "-t", "t", "status", "off")

    def run(self, *args: str) -> str:
        return subprocess.run(
            [*self.base, *args], capture_output=True, text=True, check=True, timeout=10
        ).stdout

    def type(self, *keys: str) -> None:
        self.run("send-keys", "-t", "t", *keys)

    def screen(self) -> list[str]:
        return self.run("capture-pane", "-p", "-t", "t").rstrip("\n").split("\n")

    def wait_for(self, predicate, what: str, timeout_s: float = 15.0) -> list[str]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            lines = self.screen()
            if predicate(lines):
                return lines
            time.sleep(0.1)
        raise AssertionError(f"tmux never showed {what}:\n" + "\n".join(self.screen()))

    def close(self) -> None:
        subprocess.run([*self.base, "kill-server"], capture_output=True, check=False, timeout=10)


@pytest.mark.skipif(TMUX is None, reason="tmux is not installed (tests/run installs it)")
class TestWatchInATerminal:
    def test_redraws_in_place_follows_a_resize_and_gives_the_shell_back(self, hot_daemon):
        terminal = Tmux(f"gpuwatch-status-{os.getpid()}", 160, 20)
        try:
            terminal.type("PS1='ready$ '; export NO_COLOR=1; clear", "Enter")
            terminal.wait_for(lambda lines: lines[0].startswith("ready$"), "the shell")
            command = f"{sys.executable} -m gpuwatch status --url http://127.0.0.1:{hot_daemon} --watch 0.2"
            terminal.type(command, "Enter")
            first = terminal.wait_for(lambda lines: lines[0].startswith("node hot |"), "the status screen")
            print("\n".join(first))  # noqa: T201 - the captured screen is this test's report
            # In place: after a dozen refreshes the screen holds one frame, at the top, no scrolling.
            time.sleep(2.5)
            later = terminal.screen()
            assert later[0].startswith("node hot |")
            assert sum(line.startswith("node hot |") for line in later) == 1
            assert later[1] == UNKNOWN_PLANS
            assert later[3].split()[:3] == ["0", "NVIDIA", "H100"]
            # A narrower window: redrawn at once, long lines cut rather than wrapped onto new rows.
            terminal.run("resize-window", "-t", "t", "-x", "60", "-y", "20")
            narrow = terminal.wait_for(
                lambda lines: len(lines[0]) <= 60 and lines[2].startswith("GPU"), "a redraw"
            )
            # The plans line cut at the window's edge (the last column may stay blank), not wrapped.
            assert UNKNOWN_PLANS.startswith(narrow[1])
            assert 59 <= len(narrow[1]) <= 60
            assert narrow[0].startswith("node hot |")
            assert sum(line.startswith("node hot") for line in narrow) == 1
            # Ctrl-C: the watch ends, the normal screen (and its prompt) comes back, the shell works.
            terminal.type("C-c")
            terminal.wait_for(
                lambda lines: not any(line.startswith("node hot") for line in lines), "the shell again"
            )
            terminal.type("echo usable-$((6*7))", "Enter")
            terminal.wait_for(lambda lines: "usable-42" in lines, "the shell answering")
        finally:
            terminal.close()
