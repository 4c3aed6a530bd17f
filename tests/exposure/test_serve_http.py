"""The HTTP/1.1 side: keep-alive, pipelining, HEAD, Connection: close, limits and errors."""

from __future__ import annotations

import http.client
import socket
import time

import pytest
from serve_helpers import TIMEOUT_S, ServerThread, get, gpu, node, raw_exchange, split_responses

from gpuwatch.exposure.http.protocol import MAX_HEADER_BYTES, MAX_TARGET_BYTES
from gpuwatch.exposure.http.server import ConnectionLimits


@pytest.fixture(scope="module")
def server():
    with ServerThread(node(gpu(0), gpu(1, pressure=0.3))) as running:
        yield running


class TestKeepAlive:
    """Connections stay open between requests unless the client or an error closes them."""

    def test_many_requests_share_one_connection(self, server):
        connection = http.client.HTTPConnection("127.0.0.1", server.http_port, timeout=TIMEOUT_S)
        connection.request("GET", "/healthz")
        connection.getresponse().read()
        first_socket = connection.sock
        for path in ("/v1/state", "/v1/admit", "/readyz", "/nope"):
            connection.request("GET", path)
            connection.getresponse().read()
        assert connection.sock is first_socket
        connection.close()

    def test_pipelined_requests_are_answered_in_order(self, server):
        request = b"GET %s HTTP/1.1\r\nHost: t\r\n\r\n"
        paths = (b"/healthz", b"/nope", b"/v1/state", b"/v1/admit?class=critical", b"/readyz")
        data = raw_exchange(server.http_port, b"".join(request % p for p in paths), expect_responses=5)
        answers = split_responses(data)
        assert [status.split()[1] for status, _, _ in answers] == [b"200", b"404", b"200", b"200", b"200"]
        assert b'"alive"' in answers[0][2]
        assert b'"gpus"' in answers[2][2]
        assert b'"admitted":true' in answers[3][2]

    def test_a_request_split_across_packets_is_answered_once(self, server):
        with socket.create_connection(("127.0.0.1", server.http_port), timeout=TIMEOUT_S) as sock:
            for piece in (b"GET /v1/", b"state HTT", b"P/1.1\r\nHo", b"st: t\r\n", b"\r\n"):
                sock.sendall(piece)
            received = b""
            while not split_responses(received):
                received += sock.recv(65536)
        assert split_responses(received)[0][0].startswith(b"HTTP/1.1 200")

    def test_connection_close_is_honoured_and_later_pipelined_requests_ignored(self, server):
        request = b"GET /healthz HTTP/1.1\r\nConnection: close\r\n\r\nGET /healthz HTTP/1.1\r\n\r\n"
        data = raw_exchange(server.http_port, request, expect_responses=2)
        answers = split_responses(data)
        assert len(answers) == 1
        assert answers[0][1][b"connection"] == b"close"

    def test_http_1_0_closes_unless_keep_alive_is_asked(self, server):
        closing = split_responses(raw_exchange(server.http_port, b"GET /healthz HTTP/1.0\r\n\r\n"))
        assert closing[0][1][b"connection"] == b"close"
        request = b"GET /healthz HTTP/1.0\r\nConnection: keep-alive\r\n\r\n" * 2
        kept = split_responses(raw_exchange(server.http_port, request, expect_responses=2))
        assert [headers[b"connection"] for _, headers, _ in kept] == [b"keep-alive", b"keep-alive"]


class TestHead:
    """HEAD answers with GET's status and headers and no body."""

    @pytest.mark.parametrize("path", ["/v1/state", "/v1/admit?class=default", "/", "/openapi.json", "/nope"])
    def test_head_matches_get_without_body(self, server, path):
        got = get(server.http_port, path)
        head = raw_exchange(server.http_port, f"HEAD {path} HTTP/1.1\r\nConnection: close\r\n\r\n".encode())
        status, headers = head.split(b"\r\n\r\n", 1)[0].split(b"\r\n", 1)
        assert int(status.split()[1]) == got.status
        assert f"content-length: {len(got.body)}".encode() in headers.lower()
        assert head.endswith(b"\r\n\r\n")


class TestRefusals:
    """Unusable requests get a clear status and the connection is closed."""

    def test_malformed_request_gets_400_and_close(self, server):
        answers = split_responses(raw_exchange(server.http_port, b"GARBAGE\x00 nonsense\r\n\r\n"))
        assert answers[0][0].startswith(b"HTTP/1.1 400")
        assert answers[0][1][b"connection"] == b"close"

    def test_target_over_8_kib_gets_414(self, server):
        target = b"/v1/admit?pad=" + b"x" * MAX_TARGET_BYTES
        answers = split_responses(raw_exchange(server.http_port, b"GET " + target + b" HTTP/1.1\r\n\r\n"))
        assert answers[0][0].startswith(b"HTTP/1.1 414")

    def test_target_just_under_the_limit_is_served(self, server):
        target = b"/v1/admit?pad=" + b"x" * (MAX_TARGET_BYTES - 100)
        answers = split_responses(raw_exchange(server.http_port, b"GET " + target + b" HTTP/1.1\r\n\r\n"))
        assert answers[0][0].startswith(b"HTTP/1.1 200")

    def test_header_fields_over_16_kib_get_431(self, server):
        fields = b"".join(b"X-Pad-%d: %s\r\n" % (i, b"y" * 1000) for i in range(MAX_HEADER_BYTES // 1000 + 1))
        answers = split_responses(raw_exchange(server.http_port, b"GET / HTTP/1.1\r\n" + fields + b"\r\n"))
        assert answers[0][0].startswith(b"HTTP/1.1 431")

    def test_a_header_that_never_ends_gets_431_without_waiting_for_it(self, server):
        with socket.create_connection(("127.0.0.1", server.http_port), timeout=TIMEOUT_S) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nX-Endless: ")
            received = b""
            try:
                for _ in range(64):
                    sock.sendall(b"z" * 4096)
            except (BrokenPipeError, ConnectionResetError):
                pass
            try:
                while chunk := sock.recv(65536):
                    received += chunk
            except ConnectionResetError:
                pass
        assert received.startswith(b"HTTP/1.1 431")

    def test_unknown_path_gets_404_json(self, server):
        answer = get(server.http_port, "/v2/nothing")
        assert answer.status == 404
        assert answer.json()["error"] == "not_found"

    @pytest.mark.parametrize("method", ["POST", "PUT", "DELETE"])
    def test_other_methods_get_405_with_allow(self, server, method):
        answer = get(server.http_port, "/v1/admit", method=method)
        assert answer.status == 405
        assert answer.headers["allow"] == "GET, HEAD"

    def test_upgrade_is_ignored_answered_as_plain_http_and_closed(self, server):
        request = b"GET /healthz HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\nNOT HTTP"
        answers = split_responses(raw_exchange(server.http_port, request, expect_responses=2))
        assert [status for status, _, _ in answers] == [b"HTTP/1.1 200 OK"]
        assert answers[0][1][b"connection"] == b"close"

    def test_request_bodies_are_read_and_ignored(self, server):
        chunked = b"GET /healthz HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
        sized = b"GET /readyz HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello"
        answers = split_responses(raw_exchange(server.http_port, chunked + sized, expect_responses=2))
        assert [status for status, _, _ in answers] == [b"HTTP/1.1 200 OK"] * 2
        assert b'"ready"' in answers[1][2]

    def test_absolute_form_target_is_routed_by_its_path(self, server):
        request = b"GET http://node:9478/v1/admit?class=critical HTTP/1.1\r\nConnection: close\r\n\r\n"
        answers = split_responses(raw_exchange(server.http_port, request))
        assert answers[0][0].startswith(b"HTTP/1.1 200")
        assert b'"class":"critical"' in answers[0][2]

    def test_every_answer_has_date_and_length(self, server):
        answer = get(server.http_port, "/v1/state")
        assert answer.headers["date"].endswith("GMT")
        assert int(answer.headers["content-length"]) == len(answer.body)


class TestIdleConnections:
    """Connections that idle or stall are closed by the once-a-second sweep."""

    @staticmethod
    def _closed_within(sock: socket.socket, seconds: float) -> float | None:
        """Seconds until the server closed `sock`, or None if it did not within `seconds`."""
        started = time.monotonic()
        sock.settimeout(seconds)
        try:
            while sock.recv(65536):
                pass
        except TimeoutError:
            return None
        except ConnectionResetError:
            pass
        return time.monotonic() - started

    def test_idle_keep_alive_connection_is_closed(self):
        limits = ConnectionLimits(keepalive_idle_s=1, request_timeout_s=30)
        with (
            ServerThread(node(gpu(0)), limits=limits) as server,
            socket.create_connection(("127.0.0.1", server.http_port), timeout=TIMEOUT_S) as sock,
        ):
            sock.sendall(b"GET /healthz HTTP/1.1\r\n\r\n")
            assert sock.recv(65536).startswith(b"HTTP/1.1 200")
            took = self._closed_within(sock, 4.0)
        assert took is not None
        assert took >= 0.9

    def test_stalled_request_is_dropped(self):
        limits = ConnectionLimits(keepalive_idle_s=30, request_timeout_s=1)
        with (
            ServerThread(node(gpu(0)), limits=limits) as server,
            socket.create_connection(("127.0.0.1", server.http_port), timeout=TIMEOUT_S) as sock,
        ):
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: slow")
            assert self._closed_within(sock, 4.0) is not None

    def test_an_active_connection_is_kept(self):
        limits = ConnectionLimits(keepalive_idle_s=1, request_timeout_s=1)
        with ServerThread(node(gpu(0)), limits=limits) as server:
            connection = http.client.HTTPConnection("127.0.0.1", server.http_port, timeout=TIMEOUT_S)
            connection.request("GET", "/healthz")
            connection.getresponse().read()
            first = connection.sock
            deadline = time.monotonic() + 2.5
            while time.monotonic() < deadline:
                time.sleep(0.3)
                connection.request("GET", "/healthz")
                response = connection.getresponse()
                response.read()
                assert response.status == 200
            assert connection.sock is first
            connection.close()
