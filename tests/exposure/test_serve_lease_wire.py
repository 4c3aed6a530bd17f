"""The release routes on the wire, in-process: pipelining, proxies' absolute targets, escaped ids, HEAD."""

from __future__ import annotations

import json
from urllib.parse import quote

import pytest
from serve_helpers import ServerThread, get, gpu, node, raw_exchange, split_responses

from gpuwatch.policy.decision import PriorityClass, ThermalState


@pytest.fixture
def server():
    with ServerThread(node(gpu(0), gpu(1))) as running:
        yield running


def _lease(port: int, query: str = "class=default&expected_s=10") -> str:
    answer = get(port, f"/v1/admit?{query}")
    assert answer.status == 200, answer.body
    return answer.json()["lease"]


def test_admit_and_release_pipelined_on_one_connection(server):
    # The admission's id is not known when the release is sent, so release one taken before.
    first = _lease(server.http_port)
    request = (
        b"GET /v1/admit?class=critical&expected_s=4 HTTP/1.1\r\nHost: t\r\n\r\n"
        b"POST /v1/release?lease=" + first.encode() + b" HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n"
        b"DELETE /v1/leases/" + first.encode() + b" HTTP/1.1\r\nHost: t\r\n\r\n"
    )
    answers = split_responses(raw_exchange(server.http_port, request, expect_responses=3))
    assert [status.split()[1] for status, _, _ in answers] == [b"200", b"200", b"404"]
    admitted = json.loads(answers[0][2])
    assert answers[0][1][b"x-gpuwatch-lease"].decode() == admitted["lease"]
    assert json.loads(answers[1][2])["lease"] == first
    assert server.book.open == 1  # the pipelined admission's, still held
    counts = server.book.ended_counts()
    assert sum(counts.values()) == 1
    assert counts[PriorityClass.DEFAULT, "released"] == 1


def test_an_absolute_target_from_a_proxy_releases(server):
    lease = _lease(server.http_port)
    request = f"POST http://gpuwatch.local/v1/release?lease={lease} HTTP/1.1\r\nHost: gpuwatch.local\r\n\r\n"
    status, _, body = split_responses(raw_exchange(server.http_port, request.encode()))[0]
    assert status.split()[1] == b"200", body
    assert json.loads(body)["lease"] == lease


def test_escaped_ids_name_the_same_lease(server):
    post, delete = _lease(server.http_port), _lease(server.http_port)
    escaped = "".join(f"%{ord(c):02X}" for c in post)  # every character escaped, as some clients do
    assert get(server.http_port, f"/v1/release?lease={escaped}", method="POST").status == 200
    escaped = "".join(f"%{ord(c):02x}" for c in delete)
    assert get(server.http_port, f"/v1/leases/{escaped}", method="DELETE").status == 200
    slash = get(server.http_port, f"/v1/leases/{quote(delete + '/', safe='')}", method="DELETE")
    assert (slash.status, slash.json()["error"]) == (400, "bad_lease")
    assert server.book.open == 0


def test_head_on_the_release_routes_is_405_without_a_body_and_takes_nothing(server):
    lease = _lease(server.http_port)
    for path, allow in ((f"/v1/release?lease={lease}", "POST"), (f"/v1/leases/{lease}", "DELETE")):
        answer = get(server.http_port, path, method="HEAD")
        assert (answer.status, answer.headers["allow"], answer.body) == (405, allow, b"")
        assert int(answer.headers["content-length"]) > 0  # the GET's headers, as HEAD promises
    assert server.book.open == 1


def test_a_lease_ended_with_its_gpu_is_404(server):
    lease = _lease(server.http_port, "class=default&gpu=1&expected_s=10")
    server.board.publish(node(gpu(0), gpu(1, ThermalState.FAILED), sequence=2))
    answer = get(server.http_port, f"/v1/release?lease={lease}", method="POST")
    assert (answer.status, answer.json()["error"]) == (404, "unknown_lease")
    assert server.book.ended_counts()[PriorityClass.DEFAULT, "gpu_out"] == 1
