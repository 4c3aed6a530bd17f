"""`gpuwatch admit -- COMMAND` as a real process against real daemons: environment, status, signals, waits."""

from __future__ import annotations

import json
import os
import pty
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from int_procs import free_port, wait_for
from int_stub import LEASE, admit_reply, held_back_reply, release_reply

from gpuwatch.exposure.leases import well_formed

GPUWATCH = [sys.executable, "-m", "gpuwatch"]
# Every run of `gpuwatch admit` here ends within this, or the test fails, s.
RUN_TIMEOUT_S = 30.0

# The job: records its environment, then exits with the status it is given, or ("wait") sleeps
# until a signal, which it records before exiting with status 3. With "count" it records how many
# SIGINTs came within a second of the first, then exits with status 3.
JOB = """
import json, os, signal, sys, time
record = sys.argv[1]
counted = []
def stop(signum, _frame):
    with open(record + ".signal", "w") as out:
        out.write(signal.Signals(signum).name)
    sys.exit(3)
def count(signum, _frame):
    counted.append(signum)
signal.signal(signal.SIGTERM, stop)
signal.signal(signal.SIGINT, count if sys.argv[2] == "count" else stop)
names = ("CUDA_VISIBLE_DEVICES", "GPUWATCH_GPU", "GPUWATCH_LEASE")
with open(record + ".tmp", "w") as out:
    json.dump({name: os.environ.get(name) for name in names}, out)
os.replace(record + ".tmp", record)
if sys.argv[2] == "wait":
    time.sleep(20)
    sys.exit(4)
if sys.argv[2] == "count":
    deadline = time.monotonic() + 20
    while not counted and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(1.0)
    with open(record + ".signal", "w") as out:
        out.write(str(len(counted)))
    sys.exit(3)
sys.exit(int(sys.argv[2]))
"""


class Job:
    """The job script in a scratch directory, and what one run of it recorded."""

    def __init__(self, directory: Path) -> None:
        self.script = directory / "job.py"
        self.script.write_text(JOB)
        self.record = directory / "job.json"

    def argv(self, how: str) -> list[str]:
        return [sys.executable, str(self.script), str(self.record), how]

    def environment(self) -> dict[str, str | None]:
        return json.loads(self.record.read_text())

    def signal_name(self) -> str:
        return (self.record.parent / "job.json.signal").read_text()


@pytest.fixture
def job(tmp_path) -> Job:
    return Job(tmp_path)


def admit(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*GPUWATCH, "admit", *args], capture_output=True, text=True, timeout=RUN_TIMEOUT_S, check=False
    )


def start_admit(*args: str) -> subprocess.Popen[str]:
    """`gpuwatch admit` in its own session, so the signals the test sends reach it alone."""
    return subprocess.Popen(
        [*GPUWATCH, "admit", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def _reaped(pid: int) -> int | None:
    """The wait status of child `pid` once it has exited (reaping it), else None."""
    try:
        done, status = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return None
    return status if done == pid else None


def admitted_total(daemon) -> int:
    """Admissions the daemon answered 200, of every class (gpuwatch_admissions_total)."""
    text = daemon.get("/metrics").body.decode()
    found = re.findall(r'^gpuwatch_admissions_total\{[^}]*decision="admit"[^}]*\} (\S+)$', text, re.MULTILINE)
    return sum(int(float(value)) for value in found)


class TestCommandUnderLease:
    """The command runs on the admitted GPU, under a lease that ends when it does."""

    def test_command_sees_the_gpu_and_lease_and_its_status_is_the_exit_status(self, lease_node, job):
        result = admit("--url", lease_node.url, "--expected-s", "5", "--", *job.argv("7"))
        assert result.returncode == 7, result.stderr
        seen = job.environment()
        uuids = {str(gpu["index"]): gpu["uuid"] for gpu in lease_node.state()["gpus"]}
        assert seen["CUDA_VISIBLE_DEVICES"] == uuids[seen["GPUWATCH_GPU"]]
        assert well_formed(seen["GPUWATCH_LEASE"])
        assert lease_node.release(seen["GPUWATCH_LEASE"]).status == 404  # released when the command exited
        assert lease_node.wait_open_leases(0) == 0

    def test_success_is_exit_0_and_options_before_the_command_are_gpuwatchs(self, lease_node, job):
        result = admit("--url", lease_node.url, "--class", "critical", "--gpu", "1", *job.argv("0"))
        assert result.returncode == 0, result.stderr
        assert job.environment()["GPUWATCH_GPU"] == "1"
        assert lease_node.wait_open_leases(0) == 0

    def test_a_command_killed_by_a_signal_exits_128_plus_it_as_shells_do(self, lease_node):
        before = admitted_total(lease_node)
        result = admit("--url", lease_node.url, "--", "sh", "-c", "kill -KILL $$")
        assert result.returncode == 128 + signal.SIGKILL
        assert admitted_total(lease_node) == before + 1
        assert lease_node.wait_open_leases(0) == 0

    @pytest.mark.parametrize(("command", "status"), [("no-such-command-here", 127), ("/etc/hostname", 126)])
    def test_a_command_that_cannot_run_exits_as_shells_do_and_its_lease_ends(
        self, lease_node, command, status
    ):
        before = admitted_total(lease_node)
        result = admit("--url", lease_node.url, "--", command)
        assert result.returncode == status
        assert f"gpuwatch: cannot run {command!r}" in result.stderr
        assert admitted_total(lease_node) == before + 1
        assert lease_node.wait_open_leases(0) == 0

    @pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
    def test_a_signal_to_gpuwatch_admit_reaches_the_command_and_the_lease_ends(self, lease_node, job, signum):
        process = start_admit("--url", lease_node.url, "--", *job.argv("wait"))
        try:
            lease = wait_for(
                lambda: job.record.exists() and job.environment()["GPUWATCH_LEASE"], what="job running"
            )
            lease_node.wait_open_leases(1)
            os.kill(process.pid, signum)
            _, stderr = process.communicate(timeout=RUN_TIMEOUT_S)
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=5)
        assert process.returncode == 3, stderr  # the job's own status after its handler ran
        assert job.signal_name() == signal.Signals(signum).name
        assert lease_node.release(lease).status == 404
        assert lease_node.wait_open_leases(0) == 0

    def test_ctrl_c_on_a_terminal_reaches_the_command_and_the_lease_ends(self, lease_node, job):
        # The terminal sends SIGINT to its whole foreground group, the command included; gpuwatch
        # admit does not pass on a second one. Two SIGINTs that close together merge into one, so
        # this checks that the command got it and that gpuwatch admit outlived it, not the count.
        pid, terminal = pty.fork()
        if pid == 0:  # the child: session leader on the new terminal, in its foreground group
            argv = [*GPUWATCH, "admit", "--url", lease_node.url, "--", *job.argv("count")]
            os.execv(sys.executable, argv)  # noqa: S606 - our own CLI, no shell
        statuses: list[int] = []
        try:
            wait_for(lambda: job.record.exists() or None, what="job running")
            os.write(terminal, b"\x03")  # Ctrl-C, as typed
            statuses.append(
                wait_for(lambda: _reaped(pid), what="gpuwatch admit exited", timeout_s=RUN_TIMEOUT_S)
            )
        finally:
            if not statuses:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
            os.close(terminal)
        [status] = statuses
        assert os.waitstatus_to_exitcode(status) == 3
        assert int(job.signal_name()) >= 1  # SIGINTs the job counted
        assert lease_node.wait_open_leases(0) == 0

    def test_the_command_killed_by_the_forwarded_sigterm_exits_143(self, lease_node):
        process = start_admit("--url", lease_node.url, "--", "sleep", "20")
        try:
            lease_node.wait_open_leases(1)
            os.kill(process.pid, signal.SIGTERM)
            process.communicate(timeout=RUN_TIMEOUT_S)
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=5)
        assert process.returncode == 128 + signal.SIGTERM
        assert lease_node.wait_open_leases(0) == 0


class TestHeldBackAndWait:
    """Held back, nothing runs: exit 75 at once, or after --wait SECONDS of honouring Retry-After."""

    def test_held_back_runs_nothing_and_exits_75(self, hot_node, job):
        result = admit("--url", hot_node.url, "--", *job.argv("0"))
        assert result.returncode == 75
        assert "held back: class default is not admitted, node hot" in result.stderr
        assert not job.record.exists()

    def test_wait_gives_up_at_its_timeout_with_75(self, hot_node, job):
        started = time.monotonic()
        result = admit("--url", hot_node.url, "--wait", "1.5", "--", *job.argv("0"))
        waited_s = time.monotonic() - started
        assert result.returncode == 75
        assert "(waited 1.5 s)" in result.stderr
        assert waited_s >= 1.5
        assert not job.record.exists()

    def test_wait_asks_again_after_retry_after_and_then_runs(self, stub, job):
        stub.replies["/v1/admit"] = [held_back_reply(retry_after="1"), admit_reply(gpu=3)]
        stub.replies["/v1/release"] = release_reply()
        started = time.monotonic()
        result = admit("--url", stub.url, "--wait", "10", "--", *job.argv("0"))
        assert result.returncode == 0, result.stderr
        assert time.monotonic() - started >= 1.0  # it waited out Retry-After before asking again
        assert job.environment() == {
            "CUDA_VISIBLE_DEVICES": "GPU-stub-3",
            "GPUWATCH_GPU": "3",
            "GPUWATCH_LEASE": LEASE,
        }
        assert [q.split("?")[0] for q in stub.queries] == ["/v1/admit", "/v1/admit", "/v1/release"]
        assert stub.queries[-1] == f"/v1/release?lease={LEASE}"

    def test_a_signal_while_waiting_ends_the_wait_with_128_plus_it(self, hot_node, job):
        process = start_admit("--url", hot_node.url, "--wait", "25", "--", *job.argv("0"))
        try:
            time.sleep(0.5)  # it is waiting now, or still asking; either way it must end promptly
            os.kill(process.pid, signal.SIGTERM)
            process.communicate(timeout=5)
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=5)
        assert process.returncode == 128 + signal.SIGTERM
        assert not job.record.exists()

    def test_unreachable_gpuwatch_is_an_error_and_runs_nothing(self, job):
        result = admit("--url", f"http://127.0.0.1:{free_port()}", "--wait", "5", "--", *job.argv("0"))
        assert result.returncode == 2
        assert "cannot reach gpuwatch" in result.stderr
        assert not job.record.exists()


class TestWithoutCommand:
    """A bare admission holds its lease past the command's exit and says so; a dry run takes none."""

    def test_bare_admission_prints_the_gpu_and_names_the_lease_it_holds(self, lease_node):
        result = admit("--url", lease_node.url, "--expected-s", "30")
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() in {"0", "1"}
        found = re.search(
            r"lease (\S+) on GPU (\d) \(planned 30 s\): release it when the job ends", result.stderr
        )
        assert found, result.stderr
        assert found.group(2) == result.stdout.strip()
        lease_node.wait_open_leases(1)
        assert lease_node.release(found.group(1)).status == 200  # still open: the caller ends it
        assert lease_node.wait_open_leases(0) == 0

    def test_dry_run_takes_no_slot(self, lease_node):
        before = admitted_total(lease_node)
        result = admit("--url", lease_node.url, "--dry-run")
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() in {"0", "1"}
        assert "no slot taken and no lease" in result.stderr
        assert admitted_total(lease_node) == before
        assert lease_node.open_leases() == 0

    @pytest.mark.parametrize("extra", [["--", "true"], ["--wait", "3"]])
    def test_dry_run_neither_waits_nor_runs_a_command(self, extra):
        result = admit("--dry-run", *extra)
        assert result.returncode == 2
        assert "--dry-run takes no slot" in result.stderr
