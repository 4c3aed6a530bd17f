"""Schemathesis against a running `gpuwatch serve`: thousands of requests, no 5xx, no schema violation.

The admit answers link to the release routes (OpenAPI links), so the stateful phase takes real
leases and ends them; the recorded exchanges (HAR) show that the release routes were answered
every way the document says, and that no lease id reached the daemon's log.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import pytest
from exposure.serve_helpers import ServeProcess

# Examples per operation: with 20 operations (the Envoy check under every method) and both
# positive and negative generation this yields well over the 2,000 cases the issue asks for.
MAX_EXAMPLES = 170
MIN_CASES = 2_000
SEED = 20261122  # fixed: a failure found here is found again by the same command
RUN_LIMIT_S = 300
# The release routes, as the exchanges are tallied by route.
RELEASE = "POST /v1/release"
END_LEASE = "DELETE /v1/leases/{lease}"
_LEASE_PATH = re.compile(r"^/v1/leases/[^?]*")
# Real releases (200) the stateful phase must reach through the links; a run with the seed above
# makes well over a hundred.
MIN_RELEASES = 10


class Fuzzed(NamedTuple):
    """One schemathesis run: its process, and every exchange it recorded."""

    run: subprocess.CompletedProcess[str]
    entries: list[dict]


@pytest.fixture(scope="module")
def daemon() -> Iterator[ServeProcess]:
    serve = ServeProcess(
        "--source", "sim:8xH100", "--interval", "0.5", "--web.listen-address", "127.0.0.1:0"
    )  # fmt: skip
    try:
        yield serve
    finally:
        serve.stop()
        serve.kill()


@pytest.fixture(scope="module")
def fuzzed(daemon: ServeProcess, tmp_path_factory: pytest.TempPathFactory) -> Fuzzed:
    """One schemathesis run with every check but ST101, against the daemon's own /openapi.json.

    ST101 flags any 5xx, but a held-back admission is a 503 by contract (DESIGN §3), as is
    /readyz when class default is held back. The document declares those 503s with their body
    schema, so `status_code_conformance` still fails any other 5xx (a 500 from a crash
    included) and `response_schema_conformance` checks every 503 is the declared answer.
    """
    schemathesis = shutil.which("schemathesis", path=str(Path(sys.executable).parent))
    assert schemathesis is not None, "schemathesis is a test dependency: pip install -e '.[test]'"
    command = [
        schemathesis, "run", f"http://127.0.0.1:{daemon.port('HTTP')}/openapi.json",
        "--checks", "all",
        "--exclude-checks", "not_a_server_error",
        "--max-examples", str(MAX_EXAMPLES),
        "--seed", str(SEED),
        "--continue-on-failure",
        "--workers", "1",
        "--no-color",
        "--report", "har",
        "--report-dir", "report",
    ]  # fmt: skip
    # Run where schemathesis's own files (.schemathesis/, its example database) can be left.
    scratch = tmp_path_factory.mktemp("schemathesis")
    run = subprocess.run(
        command, capture_output=True, text=True, timeout=RUN_LIMIT_S, check=False, cwd=scratch
    )
    entries = [
        entry
        for har in sorted((scratch / "report").glob("*.json"))
        for entry in json.loads(har.read_bytes())["log"]["entries"]
    ]
    return Fuzzed(run, entries)


@pytest.fixture(scope="module")
def fuzz_run(fuzzed: Fuzzed) -> subprocess.CompletedProcess[str]:
    return fuzzed.run


def test_every_generated_request_gets_a_conforming_answer(fuzz_run):
    assert fuzz_run.returncode == 0, fuzz_run.stdout[-6000:] + fuzz_run.stderr[-2000:]
    assert "✅ Coverage" in fuzz_run.stdout
    assert "✅ Fuzzing" in fuzz_run.stdout
    assert "✅ Stateful" in fuzz_run.stdout


def test_at_least_two_thousand_cases_were_generated(fuzz_run):
    generated = _generated(fuzz_run.stdout)
    assert generated >= MIN_CASES, fuzz_run.stdout[-3000:]


def test_the_daemon_logged_no_error_while_fuzzed(fuzz_run, daemon):
    assert fuzz_run.stdout  # the run happened before the log is read
    troubles = [line for line in daemon.lines if "Traceback" in line or "level=error" in line.lower()]
    assert not troubles, "\n".join(daemon.lines[-40:])


def test_the_release_routes_were_answered_every_documented_way(fuzzed):
    statuses = Counter((_route(entry), entry["response"]["status"]) for entry in fuzzed.entries)
    for route in (RELEASE, END_LEASE):
        # 200: a lease the admit answer linked to; 404: one already ended, or never handed out;
        # 400: a malformed id, or none.
        assert {status for (r, status) in statuses if r == route} >= {200, 400, 404}, statuses
    releases = statuses[RELEASE, 200] + statuses[END_LEASE, 200]
    assert releases >= MIN_RELEASES, statuses
    # Any other method on either path: 405 (schemathesis tries the ones the document leaves out).
    for path in ("/v1/release", "/v1/leases/{lease}"):
        others = {s for (r, s) in statuses if r.endswith(" " + path) and r not in (RELEASE, END_LEASE)}
        assert others == {405}, statuses


def test_no_lease_id_reached_the_log(fuzzed, daemon):
    leases = {
        body["lease"]
        for entry in fuzzed.entries
        if entry["response"]["status"] == 200
        and (body := _json(entry)) is not None
        and isinstance(body.get("lease"), str)
    }
    assert leases, "the run took no lease"
    log = "\n".join(daemon.lines)
    assert not [lease for lease in leases if lease in log]


def _route(entry: dict) -> str:
    """`METHOD /path` of a recorded exchange, a lease id in a path as `{lease}`."""
    path = "/" + entry["request"]["url"].split("/", 3)[3].split("?", 1)[0]
    return f"{entry['request']['method']} {_LEASE_PATH.sub('/v1/leases/{lease}', path)}"


def _json(entry: dict) -> dict | None:
    text = entry["response"].get("content", {}).get("text")
    try:
        document = json.loads(text) if text else None
    except json.JSONDecodeError:
        return None
    return document if isinstance(document, dict) else None


def _generated(output: str) -> int:
    """The count in schemathesis's summary line `N generated, ...`."""
    for line in output.splitlines():
        words = line.split()
        if len(words) >= 2 and words[1].rstrip(",") == "generated":
            return int(words[0])
    raise AssertionError("schemathesis printed no count of generated cases:\n" + output[-3000:])
