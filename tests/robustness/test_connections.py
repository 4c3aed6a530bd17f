"""Connection limits: a clear 503 past the cap, trickled requests dropped, /v1/admit served through both."""

from __future__ import annotations

import json
import socket
import time

from exposure.serve_helpers import TIMEOUT_S, ServerThread, get, gpu, node

from gpuwatch.exposure.http.server import ConnectionLimits, WebOptions

CAP = 20


def read_all(sock: socket.socket) -> bytes:
    received = b""
    try:
        while chunk := sock.recv(65536):
            received += chunk
    except (ConnectionResetError, TimeoutError):
        pass
    return received


class TestConnectionCap:
    """Past --web.max-connections a connection is answered 503 with Retry-After, then closed."""

    def test_past_the_cap_a_clear_refusal_and_service_resumes_below_it(self):
        with ServerThread(node(gpu(0)), web=WebOptions(max_connections=CAP)) as server:
            held = [socket.create_connection(("127.0.0.1", server.http_port)) for _ in range(CAP)]
            try:
                for sock in held:  # each is served, so each is counted before the next arrives
                    sock.sendall(b"GET /healthz HTTP/1.1\r\n\r\n")
                    assert sock.recv(65536).startswith(b"HTTP/1.1 200")
                with socket.create_connection(("127.0.0.1", server.http_port), timeout=TIMEOUT_S) as extra:
                    extra.sendall(b"GET /v1/admit HTTP/1.1\r\n\r\n")
                    refused = read_all(extra)
            finally:
                for sock in held:
                    sock.close()
            head, _, body = refused.partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 503")
            assert b"Retry-After: 1" in head
            assert b"Connection: close" in head
            assert json.loads(body)["error"] == "too_many_connections"
            assert str(CAP).encode() in body
            deadline = time.monotonic() + 5
            while get(server.http_port, "/v1/admit").status != 200:
                assert time.monotonic() < deadline, "never served again after the held connections closed"
                time.sleep(0.05)

    def test_a_client_that_connects_and_says_nothing_is_refused_within_a_second_or_so(self):
        with (
            ServerThread(node(gpu(0)), web=WebOptions(max_connections=1)) as server,
            socket.create_connection(("127.0.0.1", server.http_port)) as first,
        ):
            first.sendall(b"GET /healthz HTTP/1.1\r\n\r\n")
            assert first.recv(65536).startswith(b"HTTP/1.1 200")
            with socket.create_connection(("127.0.0.1", server.http_port), timeout=TIMEOUT_S) as quiet:
                started = time.monotonic()
                refused = read_all(quiet)
                took = time.monotonic() - started
        assert refused.startswith(b"HTTP/1.1 503")
        assert took < 3.0


class TestSlowClients:
    """Idle and byte-at-a-time clients do not stop /v1/admit; a request trickled forever is dropped."""

    def test_a_trickled_request_is_dropped_after_the_request_timeout(self):
        limits = ConnectionLimits(keepalive_idle_s=30, request_timeout_s=1)
        with (
            ServerThread(node(gpu(0)), limits=limits) as server,
            socket.create_connection(("127.0.0.1", server.http_port), timeout=TIMEOUT_S) as sock,
        ):
            started = time.monotonic()
            dropped_after = None
            for byte in b"GET /healthz HTTP/1.1\r\nX-Slow: " + b"a" * 200:
                try:
                    sock.sendall(bytes([byte]))
                except (BrokenPipeError, ConnectionResetError):
                    dropped_after = time.monotonic() - started
                    break
                time.sleep(0.1)  # active every 100 ms: an idle timeout alone would never fire
                if time.monotonic() - started > 8:
                    break
        assert dropped_after is not None, "a request trickled for 8 s was still open"
        assert dropped_after < 4.0

    def test_admit_answers_while_hundreds_of_clients_idle_or_trickle(self):
        with ServerThread(node(gpu(0), gpu(1))) as server:
            idle = [socket.create_connection(("127.0.0.1", server.http_port)) for _ in range(200)]
            trickling = [socket.create_connection(("127.0.0.1", server.http_port)) for _ in range(100)]
            try:
                for step in range(5):
                    for sock in trickling:
                        sock.sendall(b"GET /v1/admit HTTP/1.1\r\nX-Slow: "[step : step + 1])
                    answer = get(server.http_port, "/v1/admit?class=default")
                    assert answer.status == 200
                    assert answer.json()["gpu"]["index"] in {0, 1}
            finally:
                for sock in idle + trickling:
                    sock.close()
