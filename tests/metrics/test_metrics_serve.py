"""/metrics as served: route, content type, gzip, HEAD, --web.telemetry-path, --web.max-requests, flags."""

from __future__ import annotations

import gzip
import socket
import threading
import time

import pytest
from metrics_helpers import samples
from serve_helpers import TIMEOUT_S, ServeProcess, ServerThread, get, gpu, node, run_serve, split_responses

from gpuwatch.exposure.http.server import WebOptions
from gpuwatch.policy.decision import ThermalState

QUICK = ("--source=sim:2xH100", "--interval=0.1", "--agent.listen-address=")
LOCAL = "--web.listen-address=127.0.0.1:0"


class BlockedExposition:
    """An exposition whose scrapes wait until released: scrapes in flight, on demand."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.waiting = threading.Semaphore(0)

    def ready_body(self, *, gzipped: bool = False) -> bytes | None:  # noqa: ARG002 - Exposition's signature
        return None  # as just after the board expired a decision: the text is being rendered

    def body(self, *, gzipped: bool = False) -> bytes:  # noqa: ARG002 - the scrapes here send no Accept-Encoding
        self.waiting.release()
        assert self.release.wait(TIMEOUT_S)
        return b"# HELP x y\n# TYPE x gauge\nx 1.0\n"


def start_scrape(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT_S)
    sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
    return sock


def sampled_metrics(port: int, path: str = "/metrics") -> bytes:
    """The exposition once the daemon has sampled (it listens before its first sample)."""
    deadline = time.monotonic() + TIMEOUT_S
    while b"gpuwatch_gpu_up{" not in (body := get(port, path).body):
        assert time.monotonic() < deadline, "no sample within the timeout"
        time.sleep(0.05)
    return body


def read_answer(sock: socket.socket) -> tuple[bytes, bytes]:
    received = b""
    while not split_responses(received):
        chunk = sock.recv(65536)
        assert chunk, "closed before answering"
        received += chunk
    status, _headers, body = split_responses(received)[0]
    return status, body


@pytest.fixture(scope="module")
def server():
    with ServerThread(node(gpu(0), gpu(1, ThermalState.HOT, pressure=0.9))) as running:
        yield running


class TestRoute:
    """GET and HEAD /metrics answer the Prometheus text format; other methods are refused."""

    def test_text_format(self, server):
        answer = get(server.http_port, "/metrics")
        assert answer.status == 200
        assert answer.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
        assert answer.headers["cache-control"] == "no-store"
        states = samples(answer.body, "gpuwatch_gpu_state")
        assert states[(("gpu", "1"), ("state", "hot"), ("uuid", "GPU-test-0001"))] == 1.0

    def test_gzip_when_accepted(self, server):
        plain = get(server.http_port, "/metrics").body
        zipped = get(server.http_port, "/metrics", {"Accept-Encoding": "gzip, deflate"})
        assert zipped.headers["content-encoding"] == "gzip"
        assert zipped.headers["vary"] == "Accept-Encoding"
        assert (
            gzip.decompress(zipped.body).split(b"gpuwatch_admissions")[0]
            == plain.split(b"gpuwatch_admissions")[0]
        )
        assert len(zipped.body) < len(plain) / 3
        refused = get(server.http_port, "/metrics", {"Accept-Encoding": "gzip;q=0, identity"})
        assert "content-encoding" not in refused.headers

    def test_head_has_no_body(self, server):
        answer = get(server.http_port, "/metrics", method="HEAD")
        assert answer.status == 200
        assert answer.body == b""
        assert int(answer.headers["content-length"]) > 1000

    def test_post_is_not_allowed(self, server):
        assert get(server.http_port, "/metrics", method="POST", body=b"x").status == 405

    def test_admissions_are_counted(self, server):
        before = samples(get(server.http_port, "/metrics").body, "gpuwatch_admissions_total")
        answers = [get(server.http_port, "/v1/admit?class=sheddable").status for _ in range(3)]
        get(server.http_port, "/v1/admit?class=sheddable&dry_run=1")  # asks, takes nothing, is not counted
        after = samples(get(server.http_port, "/metrics").body, "gpuwatch_admissions_total")
        counted = {
            decision: after[(("class", "sheddable"), ("decision", decision))]
            - before[(("class", "sheddable"), ("decision", decision))]
            for decision in ("admit", "deny")
        }
        assert counted == {"admit": answers.count(200), "deny": answers.count(503)}

    def test_landing_page_and_openapi_name_it(self, server):
        assert b'href="/metrics"' in get(server.http_port, "/").body
        assert "/metrics" in get(server.http_port, "/openapi.json").json()["paths"]

    def test_metrics_follow_an_expired_decision(self):
        stale = node(gpu(0), gpu(1))

        def expiry(decision, _now):
            gpus = tuple(g if g.index == 0 else gpu(1, ThermalState.UNKNOWN) for g in decision.gpus)
            return (
                node(*gpus, sequence=decision.sequence)
                if decision.gpus[1].state is not ThermalState.UNKNOWN
                else decision
            )

        with ServerThread(stale, expiry=expiry) as server:
            deadline = time.monotonic() + TIMEOUT_S
            key = (("gpu", "1"), ("state", "unknown"), ("uuid", "GPU-test-0001"))
            while samples(get(server.http_port, "/metrics").body, "gpuwatch_gpu_state")[key] != 1.0:
                assert time.monotonic() < deadline, "the expired decision never reached /metrics"
                time.sleep(0.05)


class TestTelemetryPath:
    """--web.telemetry-path moves the metrics; the landing page and OpenAPI follow."""

    def test_custom_path(self):
        with ServerThread(node(gpu(0)), web=WebOptions(telemetry_path="/gpu/metrics")) as server:
            assert get(server.http_port, "/gpu/metrics").status == 200
            assert get(server.http_port, "/metrics").status == 404
            assert b'href="/gpu/metrics"' in get(server.http_port, "/").body
            assert "/gpu/metrics" in get(server.http_port, "/openapi.json").json()["paths"]


class TestMaxRequests:
    """--web.max-requests: scrapes past the limit are answered 503 at once; 0 means no limit."""

    def test_past_the_limit(self):
        exposition = BlockedExposition()
        with ServerThread(node(gpu(0)), metrics=exposition, web=WebOptions(max_requests=2)) as server:
            first, second = start_scrape(server.http_port), start_scrape(server.http_port)
            try:
                for _ in range(2):
                    assert exposition.waiting.acquire(timeout=TIMEOUT_S)
                refused = get(server.http_port, "/metrics")
                assert refused.status == 503
                assert refused.body == b"Limit of concurrent requests reached (2), try again later.\n"
                assert (
                    get(server.http_port, "/v1/admit?class=default").status == 200
                )  # the API is not held up
                exposition.release.set()
                assert [read_answer(sock)[0].split()[1] for sock in (first, second)] == [b"200", b"200"]
                assert get(server.http_port, "/metrics").status == 200
            finally:
                exposition.release.set()
                first.close()
                second.close()

    def test_zero_means_no_limit(self):
        exposition = BlockedExposition()
        with ServerThread(node(gpu(0)), metrics=exposition, web=WebOptions(max_requests=0)) as server:
            scrapes = [start_scrape(server.http_port) for _ in range(6)]
            try:
                for _ in range(2):  # two worker threads; the other four queue behind them
                    assert exposition.waiting.acquire(timeout=TIMEOUT_S)
                time.sleep(0.1)
                exposition.release.set()
                assert {read_answer(sock)[0].split()[1] for sock in scrapes} == {b"200"}
            finally:
                exposition.release.set()
                for sock in scrapes:
                    sock.close()


class TestServeFlags:
    """`gpuwatch serve` takes the web flags and their GPUWATCH_* variables."""

    @pytest.fixture
    def serve(self):
        started: list[ServeProcess] = []

        def start(*args: str, env: dict[str, str] | None = None) -> ServeProcess:
            process = ServeProcess(*args, env=env)
            started.append(process)
            return process

        yield start
        for process in started:
            process.kill()

    def test_flags(self, serve, tmp_path):
        daemon = serve(*QUICK, LOCAL, f"--state-dir={tmp_path}", "--web.telemetry-path=/x/metrics",
                       "--web.max-requests=3", "--metrics.dcgm-compat")  # fmt: skip
        port = daemon.port("HTTP")
        body = sampled_metrics(port, "/x/metrics")
        assert b"gpuwatch_gpu_temperature_celsius{" in body
        assert b"DCGM_FI_DEV_GPU_TEMP{" in body
        assert b"gpuwatch_sample_interval_seconds 0.1" in body
        assert get(port, "/metrics").status == 404

    def test_environment(self, serve, tmp_path):
        env = {
            "GPUWATCH_WEB_TELEMETRY_PATH": "/m",
            "GPUWATCH_METRICS_DCGM_COMPAT": "1",
            "GPUWATCH_WEB_MAX_REQUESTS": "0",
        }
        daemon = serve(*QUICK, LOCAL, f"--state-dir={tmp_path}", env=env)
        assert b"DCGM_FI_DEV_GPU_TEMP{" in sampled_metrics(daemon.port("HTTP"), "/m")

    def test_no_dcgm_families_by_default(self, serve, tmp_path):
        daemon = serve(*QUICK, LOCAL, f"--state-dir={tmp_path}")
        body = sampled_metrics(daemon.port("HTTP"))
        assert b"gpuwatch_gpu_temperature_celsius{" in body
        assert b"DCGM" not in body

    @pytest.mark.parametrize(
        ("flag", "message"),
        [
            ("--web.telemetry-path=metrics", "expected an absolute path"),
            ("--web.telemetry-path=/v1/state", "is a route of the signal API"),
            ("--web.max-requests=-1", "--web.max-requests"),
        ],
    )
    def test_refused(self, tmp_path, flag, message):
        result = run_serve(*QUICK, LOCAL, f"--state-dir={tmp_path}", flag)
        assert result.returncode == 2
        assert message in result.stderr
