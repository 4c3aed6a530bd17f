"""Leases against a real `gpuwatch serve`: release, twice, expired, a flood, a killed client, races, bad ids.

Each test runs its own daemon on a cool simulated node (two H100s at a steady load, capped at
MAX_SLOTS slots per class each, so the idle slots are certain) with short lease graces, and ends
by checking the books: no lease open in /v1/state or gpuwatch_gpu_leases, the idle slots back,
and every lease it took counted once in gpuwatch_leases_ended_total by how it ended.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from urllib.parse import quote

import pytest
from lease_helpers import (
    Books,
    ended,
    keep_alive_release,
    lease_of,
    new_connection,
    open_gauge,
    release,
    take,
    wait_for,
)
from serve_helpers import ServeProcess, get
from sim_nodes import COOL_NODE

from gpuwatch.exposure.leases import ID_LENGTH

INTERVAL_S = 0.2
MAX_SLOTS = 4  # per class and GPU: a cool H100 that even its power limit keeps safe gets the cap
GPUS = 2
IDLE_SLOTS = dict.fromkeys(("critical", "default", "sheddable"), GPUS * MAX_SLOTS)
# A lease not released ends at its expected end plus max(GRACE_MIN_S, GRACE_RATIO x expected):
# for the durations below, at twice its expected duration.
GRACE_MIN_S = 0.2
GRACE_RATIO = 1.0
CONFIG = f"""
[policy]
max_slots = {MAX_SLOTS}
lease_grace_min_s = {GRACE_MIN_S}
lease_grace_ratio = {GRACE_RATIO}
"""
START_TIMEOUT_S = 15.0

# The flood: this many clients, each on its own keep-alive connection, admitting without end
# until it has sent FLOOD_REQUESTS or FLOOD_S has passed; none releases.
FLOOD_CLIENTS = 8
FLOOD_REQUESTS = 25
FLOOD_S = 5.0
FLOOD_EXPECTED_S = 2.0  # so each lease ends 4 s after it was taken

RACERS = 16  # concurrent releases of one id, each on its own connection
RACED_LEASES = 5

# A gateway that admits, says so on stdout, and then hangs mid-job until killed.
CLIENT = """
import http.client, json, sys, time
connection = http.client.HTTPConnection("127.0.0.1", int(sys.argv[1]), timeout=5)
connection.request("GET", "/v1/admit?class=sheddable&expected_s=0.3")
print(json.loads(connection.getresponse().read())["lease"], flush=True)
time.sleep(60)
"""


@pytest.fixture
def daemon(tmp_path):
    (tmp_path / "node.toml").write_text(COOL_NODE)
    (tmp_path / "gpuwatch.toml").write_text(CONFIG)
    process = ServeProcess(
        f"--source=sim:{tmp_path / 'node.toml'}",
        f"--interval={INTERVAL_S}",
        f"--config={tmp_path / 'gpuwatch.toml'}",
        "--web.listen-address=127.0.0.1:0",
        "--agent.listen-address=",
        "--state-dir=",
    )
    try:
        yield process
    finally:
        process.stop()
        process.kill()
        troubles = [line for line in process.lines if "Traceback" in line or "level=error" in line]
        assert not troubles, "\n".join(troubles)


@pytest.fixture
def port(daemon) -> int:
    port = daemon.http_port()
    wait_for(
        lambda: get(port, "/v1/state").json()["slots"] == IDLE_SLOTS,
        START_TIMEOUT_S,
        f"the idle slots {IDLE_SLOTS}",
    )
    return port


@pytest.fixture
def books(port) -> Books:
    return Books.open(port, IDLE_SLOTS)


def test_release_answers_the_gpu_and_the_time_held_and_a_second_release_is_404(port, books, daemon):
    started = time.monotonic()
    admitted = take(port, "class=critical&expected_s=5")
    lease = lease_of(admitted)
    time.sleep(0.3)
    answer = release(port, lease)
    took_s = time.monotonic() - started

    assert answer.status == 200, answer.body
    document = answer.json()
    assert document["released"] is True
    assert document["lease"] == lease
    assert document["class"] == "critical"
    assert document["gpu"] == {k: admitted.json()["gpu"][k] for k in ("index", "uuid")}
    assert str(document["gpu"]["index"]) == admitted.headers["x-gpuwatch-gpu"]
    assert 0.3 <= document["held_s"] <= took_s
    assert document["expected_s"] == admitted.json()["expected_s"] == 5.0
    assert admitted.json()["expected_basis"] == "request"

    for form in ("post", "delete"):
        again = release(port, lease, form=form)
        assert (again.status, again.json()["error"]) == (404, "unknown_lease")

    # The same through DELETE /v1/leases/{lease}, and a duration given as the proxy header.
    second = take(port, "class=default", {"X-GPUWatch-Expected-Seconds": "7.5"})
    assert second.json()["expected_s"] == 7.5
    deleted = release(port, lease_of(second), form="delete")
    assert deleted.status == 200, deleted.body
    assert deleted.json()["class"] == "default"
    assert release(port, lease_of(second)).status == 404

    books.assert_balanced(released=2, expired=0)
    log = "\n".join(daemon.lines)
    assert lease not in log
    assert lease_of(second) not in log


def test_a_lease_ends_at_its_deadline_not_its_expected_end(port, books):
    overdue = lease_of(take(port, "expected_s=1"))  # ends at 2 s unless released
    expiring = lease_of(take(port, "expected_s=0.3"))  # ends at 0.6 s
    taken_at = time.monotonic()

    time.sleep(1.3)  # past both expected ends; past only the short lease's deadline
    assert time.monotonic() - taken_at < 2 * 1.0, "too slow to test inside the long lease's grace"
    late = release(port, overdue)
    gone = release(port, expiring)

    assert late.status == 200, late.body  # overdue, but within its grace: still open
    assert late.json()["held_s"] >= 1.0
    assert (gone.status, gone.json()["error"]) == (404, "unknown_lease")
    books.assert_balanced(released=1, expired=1)


def test_a_flood_never_released_ends_at_the_deadlines_and_the_slots_come_back(port, books):
    leases: list[str] = []
    held_back = [0]
    lock = threading.Lock()
    start = threading.Barrier(FLOOD_CLIENTS)

    def client() -> None:
        connection = new_connection(port)
        start.wait()
        stop_at = time.monotonic() + FLOOD_S
        try:
            for _ in range(FLOOD_REQUESTS):
                if time.monotonic() > stop_at:
                    break
                connection.request("GET", f"/v1/admit?class=default&expected_s={FLOOD_EXPECTED_S}")
                response = connection.getresponse()
                lease = response.getheader("X-GPUWatch-Lease")
                response.read()
                with lock:
                    if response.status == 200:
                        leases.append(lease)
                    else:
                        held_back[0] += 1
        finally:
            connection.close()

    threads = [threading.Thread(target=client) for _ in range(FLOOD_CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(FLOOD_S + 10)
    flood_ended = time.monotonic()
    open_now = open_gauge(port)

    assert len(leases) == len(set(leases)) >= GPUS * MAX_SLOTS  # the idle slots, at least
    assert held_back[0] > 0  # the slots ran out: the leases held them
    assert len(leases) + held_back[0] <= FLOOD_CLIENTS * FLOOD_REQUESTS
    if open_now is not None and time.monotonic() - flood_ended < FLOOD_EXPECTED_S:
        assert open_now > 0  # the last leases are nowhere near their deadlines yet

    books.assert_balanced(released=0, expired=len(leases), timeout_s=2 * FLOOD_EXPECTED_S + 10)
    # Ended for good: releasing any of them now is a 404, and counts nothing more.
    connection = new_connection(port)
    try:
        assert {keep_alive_release(connection, lease) for lease in leases} == {404}
    finally:
        connection.close()
    books.assert_balanced(released=0, expired=len(leases))


def test_a_client_killed_mid_job_leaves_a_lease_that_expires(port, books):
    client = subprocess.Popen(
        [sys.executable, "-c", CLIENT, str(port)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert client.stdout is not None
        lease = client.stdout.readline().strip()
        assert len(lease) == ID_LENGTH, (lease, client.stderr.read() if client.poll() is not None else "")
        client.kill()
    finally:
        client.kill()
        client.wait(5)
        for stream in (client.stdout, client.stderr):
            if stream is not None:
                stream.close()

    books.assert_balanced(released=0, expired=1)
    assert release(port, lease).status == 404


def _race(port: int, lease: str) -> list[int]:
    """RACERS releases of `lease` at once, each on its own open connection, POST and DELETE mixed."""
    start = threading.Barrier(RACERS)
    statuses: list[int] = []
    lock = threading.Lock()

    def racer(i: int) -> None:
        connection = new_connection(port)
        try:
            connection.connect()
            start.wait()
            status = keep_alive_release(connection, lease, "post" if i % 2 else "delete")
        finally:
            connection.close()
        with lock:
            statuses.append(status)

    threads = [threading.Thread(target=racer, args=(i,)) for i in range(RACERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    return statuses


def test_concurrent_releases_of_one_lease_give_exactly_one_200(port, books):
    for round_ in range(RACED_LEASES):
        statuses = _race(port, lease_of(take(port, "class=default&expected_s=30")))
        assert sorted(statuses) == [200] + [404] * (RACERS - 1), (round_, statuses)
    books.assert_balanced(released=RACED_LEASES, expired=0)


MALFORMED = [
    "",
    "x",
    "A" * (ID_LENGTH - 1),
    "A" * (ID_LENGTH + 1),
    "A" * (ID_LENGTH - 1) + "=",
    "A" * (ID_LENGTH - 1) + "+",
    "A" * (ID_LENGTH - 1) + "/",
    "A" * (ID_LENGTH - 1) + "\x00",
    "A" * (ID_LENGTH - 1) + "é",
    " " + "A" * (ID_LENGTH - 1),
    "A" * (ID_LENGTH - 1) + "\n",
    "../../../../etc/passwd",
    "%" * ID_LENGTH,
    "A" * 4000,
]


@pytest.mark.parametrize("form", ["post", "delete"])
def test_malformed_ids_are_400_naming_the_problem_and_unknown_ones_404(port, books, form):
    for text in MALFORMED:
        answer = release(port, text, form=form)
        assert answer.status == 400, (text, answer.status, answer.body)
        document = answer.json()
        assert document["error"] == "bad_lease", (text, document)
        assert f"{ID_LENGTH} characters" in document["message"]
        assert len(document["message"]) < 300  # a long id is cut, not echoed whole

    unknown = release(port, "A" * ID_LENGTH, form=form)
    assert (unknown.status, unknown.json()["error"]) == (404, "unknown_lease")
    books.assert_balanced(released=0, expired=0)


def test_the_release_routes_refuse_what_is_not_a_release(port, books):
    lease = lease_of(take(port, "expected_s=30"))
    quoted = quote(lease)
    for method in ("GET", "HEAD", "PUT"):
        answer = get(port, f"/v1/release?lease={quoted}", method=method)
        assert (answer.status, answer.headers["allow"]) == (405, "POST"), method
    for method in ("GET", "HEAD", "POST"):
        answer = get(port, f"/v1/leases/{quoted}", method=method)
        assert (answer.status, answer.headers["allow"]) == (405, "DELETE"), method
    missing = get(port, "/v1/release", method="POST")
    assert (missing.status, missing.json()["error"]) == (400, "missing_lease")
    in_the_body = get(port, "/v1/release", method="POST", body=f"lease={lease}".encode())
    assert (in_the_body.status, in_the_body.json()["error"]) == (400, "missing_lease")
    twice = get(port, f"/v1/release?lease={quoted}&lease={quoted}", method="POST")
    assert (twice.status, twice.json()["error"]) == (400, "repeated_parameter")
    for extra in ("/", "/more", "//"):
        answer = get(port, f"/v1/leases/{quoted}{extra}", method="DELETE")
        assert (answer.status, answer.json()["error"]) == (400, "bad_lease"), extra
        assert "one path segment" in answer.json()["message"]
    assert get(port, f"/v1/leases//{quoted}", method="DELETE").status == 400
    # Still open after all that; a body and a query string do not stand in the way of the release.
    assert get(port, f"/v1/leases/{quoted}?why=done", method="DELETE").status == 200
    second = lease_of(take(port, "expected_s=30"))
    with_body = get(port, f"/v1/release?lease={second}", method="POST", body=b'{"job": "done"}')
    assert with_body.status == 200, with_body.body
    books.assert_balanced(released=2, expired=0)


def test_dry_runs_and_held_back_answers_take_no_lease(port, books):
    dry = take(port, "dry_run=1&expected_s=10")
    assert dry.status == 200
    assert (dry.json()["lease"], dry.json()["expected_s"]) == (None, None)
    assert "x-gpuwatch-lease" not in dry.headers
    before = ended(port)
    taken = [lease_of(take(port, "gpu=0&expected_s=30")) for _ in range(MAX_SLOTS)]
    held = take(port, "gpu=0&expected_s=30")
    assert held.status == 503
    assert held.json()["lease"] is None
    assert "x-gpuwatch-lease" not in held.headers
    assert ended(port) == before
    assert {release(port, lease).status for lease in taken} == {200}
    books.assert_balanced(released=MAX_SLOTS, expired=0)
