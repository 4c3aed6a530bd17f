"""`gpuwatch admit` and `gpuwatch check`: exit statuses and their one line, against real daemons."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from click.testing import CliRunner
from int_procs import free_port
from int_stub import Reply

from gpuwatch.cli import main
from gpuwatch.cli.check import MAX_LINE_CHARS


def gpuwatch(*args: str, env: dict[str, str] | None = None):
    return CliRunner().invoke(main, list(args), env=env)


def state_document(state: str, gpus: list[tuple[int, str]], reasons: list[str] | None = None) -> bytes:
    """A /v1/state body with the fields `check` reads (DESIGN §3)."""
    return json.dumps(
        {
            "schema_version": 1,
            "state": state,
            "pressure": 0.5,
            "reasons": reasons or [],
            "sample_age_s": 0.2,
            "gpus": [{"index": index, "state": gpu_state} for index, gpu_state in gpus],
        }
    ).encode()


class TestAdmitCommand:
    """exit 0 prints the GPU; 75 (EX_TEMPFAIL) says why and when to retry; 2 is one error sentence."""

    def test_cool_node_admits_and_prints_the_gpu_index(self, cool_node):
        result = gpuwatch("admit", "--url", cool_node.url)
        assert result.exit_code == 0, result.output
        assert result.stdout.strip() in {"0", "1"}

    def test_pinned_gpu_is_the_one_printed(self, cool_node):
        result = gpuwatch("admit", "--gpu", "1", "--url", cool_node.url)
        assert (result.exit_code, result.stdout) == (0, "1\n")

    def test_hot_node_holds_default_back_with_exit_75(self, hot_node):
        result = gpuwatch("admit", "--class", "default", "--url", hot_node.url)
        assert result.exit_code == 75
        assert result.stdout == ""
        assert "held back: class default is not admitted, node hot" in result.stderr
        assert "retry after" in result.stderr

    def test_hot_node_admits_critical(self, hot_node):
        result = gpuwatch("admit", "--class", "critical", "--url", hot_node.url)
        assert (result.exit_code, result.stdout) == (0, "0\n")

    def test_url_from_the_environment(self, hot_node):
        result = gpuwatch("admit", env={"GPUWATCH_URL": hot_node.url})
        assert result.exit_code == 75

    def test_installed_command_exits_75_as_a_process(self, hot_node):
        process = subprocess.run(
            [sys.executable, "-m", "gpuwatch", "admit", "--url", hot_node.url],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert process.returncode == 75, process.stderr

    @pytest.mark.parametrize(
        ("args", "message"),
        [
            (
                ["--class", "gold"],
                "unknown priority class 'gold'; valid classes: critical, default, sheddable.",
            ),
            (["--url", "127.0.0.1:9478"], "gpuwatch URL must look like http://HOST:PORT"),
        ],
    )
    def test_bad_arguments_exit_2_with_one_sentence(self, args, message):
        result = gpuwatch("admit", *args)
        assert result.exit_code == 2
        assert message in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1

    def test_unknown_gpu_is_gpuwatchs_refusal_exit_2(self, cool_node):
        result = gpuwatch("admit", "--gpu", "7", "--url", cool_node.url)
        assert result.exit_code == 2
        assert "gpuwatch: this node has no GPU '7'" in result.stderr

    def test_unreachable_gpuwatch_exits_2(self):
        result = gpuwatch("admit", "--url", f"http://127.0.0.1:{free_port()}", "--timeout", "0.5")
        assert result.exit_code == 2
        assert "cannot reach gpuwatch" in result.stderr
        assert result.stdout == ""

    def test_answer_that_is_not_gpuwatchs_exits_2(self, stub):
        stub.replies["/v1/admit"] = Reply(502, {}, b"<html>Bad Gateway</html>")
        result = gpuwatch("admit", "--url", stub.url)
        assert result.exit_code == 2
        assert "HTTP 502 from /v1/admit is not a gpuwatch answer" in result.stderr


class TestCheckCommand:
    """node-problem-detector's contract: exactly one line of at most 80 characters; exit 0, 1 or 2."""

    def assert_one_line(self, result) -> str:
        assert result.stdout.endswith("\n")
        lines = result.stdout.splitlines()
        assert len(lines) == 1
        assert len(lines[0]) <= MAX_LINE_CHARS
        return lines[0]

    def test_cool_node_is_ok(self, cool_node):
        result = gpuwatch("check", "--url", cool_node.url)
        assert result.exit_code == 0
        assert self.assert_one_line(result).startswith("OK: node ok, 2 GPUs, pressure 0.")

    def test_hot_node_is_a_problem_naming_the_gpu(self, hot_node):
        result = gpuwatch("check", "--url", hot_node.url)
        assert result.exit_code == 1
        assert self.assert_one_line(result).startswith("HOT: GPU 0 hot")

    def test_unreachable_gpuwatch_is_unknown(self):
        result = gpuwatch("check", "--url", f"http://127.0.0.1:{free_port()}")
        assert result.exit_code == 2
        assert self.assert_one_line(result).startswith("UNKNOWN: cannot reach gpuwatch")

    @pytest.mark.parametrize(
        ("document", "status", "line"),
        [
            (
                state_document("elevated", [(0, "elevated"), (1, "ok")]),
                0,
                "OK: node elevated, 2 GPUs, pressure 0.50",
            ),
            (
                state_document("critical", [(0, "ok"), (1, "critical")], ["hw_slowdown"]),
                1,
                "CRITICAL: GPU 1 critical",
            ),
            (state_document("hot", [(0, "failed"), (1, "hot")]), 1, "FAILED: GPU 0 failed, GPU 1 hot"),
            (state_document("ok", [(0, "ok"), (3, "failed")]), 1, "FAILED: GPU 3 failed"),
            (
                state_document("unknown", [(0, "unknown")]),
                1,
                "STALE: no fresh GPU sample (last sample 0.2 s old)",
            ),
            (
                b'{"state": "toasty", "gpus": [], "pressure": 0}',
                2,
                "UNKNOWN: gpuwatch's state answer is not readable",
            ),
        ],
        ids=[
            "elevated-is-ok",
            "critical",
            "failed-gpu-named-first",
            "failed-gpu-in-ok-node",
            "stale",
            "bad-state",
        ],
    )
    def test_states_map_to_exit_statuses(self, stub, document, status, line):
        stub.replies["/v1/state"] = Reply(200, {}, document)
        result = gpuwatch("check", "--url", stub.url)
        assert result.exit_code == status
        assert self.assert_one_line(result).startswith(line)

    def test_long_reasons_are_cut_to_80_characters(self, stub):
        reasons = [f"reason_number_{i}" for i in range(20)]
        stub.replies["/v1/state"] = Reply(200, {}, state_document("hot", [(0, "hot")], reasons))
        result = gpuwatch("check", "--url", stub.url)
        line = self.assert_one_line(result)
        assert len(line) == MAX_LINE_CHARS
        assert line.endswith("...")
