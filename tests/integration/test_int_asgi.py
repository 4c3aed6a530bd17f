"""gpuwatch.asgi.GpuwatchAdmission under uvicorn on loopback, in front of a real `gpuwatch serve`."""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import socket
import sys
import threading
from pathlib import Path

import pytest
from int_procs import free_port, http_get, wait_for

from gpuwatch.asgi import GpuwatchAdmission
from gpuwatch.client import GpuwatchClient


class Uvicorn:
    """uvicorn serving int_asgi_app.py, asking gpuwatch at `gpuwatch_url`."""

    def __init__(self, spawner, gpuwatch_url: str, *, fail_open: bool = False) -> None:
        self.port = free_port()
        self.lease_log = spawner.log_dir / f"leases-{self.port}.txt"
        env = {
            **os.environ,
            "GPUWATCH_URL": gpuwatch_url,
            "GPUWATCH_FAIL_OPEN": "1" if fail_open else "0",
            "LEASE_LOG": str(self.lease_log),
        }
        argv = [sys.executable, "-m", "uvicorn", "int_asgi_app:app", "--app-dir", str(Path(__file__).parent)]
        argv += ["--host", "127.0.0.1", "--port", str(self.port), "--lifespan", "on", "--no-access-log"]
        # /hang goes on after its client left; stopping the server need not wait for it.
        argv += ["--timeout-graceful-shutdown", "1"]
        ready = lambda: self.get("/health").status == 200  # noqa: E731
        self.child = spawner.start(argv, name="uvicorn", ready=ready, env=env)

    def leases(self) -> list[str]:
        """The leases the app was handed, in order."""
        return self.lease_log.read_text().split() if self.lease_log.exists() else []

    def get(self, path: str, priority: str | None = None):
        headers = {} if priority is None else {"X-Priority-Class": priority}
        return http_get("127.0.0.1", self.port, path, headers)


class TestMiddlewareInFrontOfGpuwatch:
    """Requests that need a GPU pass while their class is admitted, else get 503 + Retry-After."""

    def test_cool_node_passes_requests_with_the_chosen_gpu(self, spawner, cool_node):
        server = Uvicorn(spawner, cool_node.url)
        answer = server.get("/generate")
        assert answer.status == 200
        body = json.loads(answer.body)
        assert body["gpu"] in {0, 1}
        assert body["fallback"] is False

    def test_hot_node_answers_503_with_retry_after_and_gpuwatch_headers(self, spawner, hot_node):
        server = Uvicorn(spawner, hot_node.url)
        answer = server.get("/generate")
        assert answer.status == 503
        assert int(answer.headers["retry-after"]) >= 1
        assert answer.headers["x-gpuwatch-state"] == "hot"
        assert answer.headers["x-gpuwatch-reason"]
        assert 0 < float(answer.headers["x-gpuwatch-pressure"]) <= 1
        body = json.loads(answer.body)
        assert (body["error"], body["class"], body["state"]) == ("gpu_busy", "default", "hot")

    def test_hot_node_still_admits_the_critical_class(self, spawner, hot_node):
        server = Uvicorn(spawner, hot_node.url)
        assert server.get("/generate", "sheddable").status == 503
        answer = server.get("/generate", "critical")
        assert answer.status == 200
        assert json.loads(answer.body)["gpu"] == 0

    def test_routes_that_need_no_gpu_and_lifespan_pass_through(self, spawner, hot_node):
        server = Uvicorn(spawner, hot_node.url)
        assert server.get("/health").status == 200
        assert json.loads(server.get("/lifespan").body) == {"started": True}

    def test_unknown_class_header_is_refused_with_400(self, spawner, cool_node):
        server = Uvicorn(spawner, cool_node.url)
        answer = server.get("/generate", "platinum")
        assert answer.status == 400
        assert "critical, default, sheddable" in json.loads(answer.body)["error"]

    @pytest.mark.parametrize(("fail_open", "status"), [(False, 503), (True, 200)])
    def test_unreachable_gpuwatch_follows_fail_open(self, spawner, fail_open, status):
        server = Uvicorn(spawner, f"http://127.0.0.1:{free_port()}", fail_open=fail_open)
        answer = server.get("/generate")
        assert answer.status == status
        if status == 503:
            assert json.loads(answer.body)["error"] == "gpuwatch_unreachable"
            assert "x-gpuwatch-state" not in answer.headers
            assert int(answer.headers["retry-after"]) >= 1
        else:
            assert json.loads(answer.body) == {"gpu": None, "fallback": True, "lease": None}


def assert_ended(daemon, lease: str) -> None:
    """Nothing is open on the test's node once the release (after the response) is in; `lease` is 404."""
    assert daemon.wait_open_leases(0) == 0
    assert daemon.release(lease).status == 404


class TestLeasesReleased:
    """Each admitted request's lease ends when its response is sent, its client leaves or the app fails."""

    def test_released_once_the_response_is_sent(self, spawner, lease_node):
        server = Uvicorn(spawner, lease_node.url)
        answers = [server.get("/generate") for _ in range(3)]
        assert [answer.status for answer in answers] == [200] * 3
        leases = [json.loads(answer.body)["lease"] for answer in answers]
        assert server.leases() == leases
        assert len(set(leases)) == 3  # one lease per request
        for lease in leases:
            assert_ended(lease_node, lease)

    def test_a_streamed_response_holds_its_lease_until_the_last_part(self, spawner, lease_node):
        server = Uvicorn(spawner, lease_node.url)
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        try:
            connection.request("GET", "/stream?pause=3")
            response = connection.getresponse()
            lease = response.readline().decode().strip()
            assert server.leases() == [lease]
            assert lease_node.wait_open_leases(1, timeout_s=2.5) == 1  # the job is still running
            assert response.read() == b"done\n"
        finally:
            connection.close()
        assert_ended(lease_node, lease)

    def test_released_when_the_client_leaves_before_the_app_answers(self, spawner, lease_node):
        server = Uvicorn(spawner, lease_node.url)
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as client:
            client.sendall(b"GET /hang HTTP/1.1\r\nHost: test\r\n\r\n")
            lease = wait_for(lambda: (server.leases() or [None])[0], what="the app got a lease")
            lease_node.wait_open_leases(1)
        # The app goes on for HANG_AFTER_DISCONNECT_S (8 s); the release comes from the disconnect.
        assert lease_node.wait_open_leases(0, timeout_s=4.0) == 0
        assert lease_node.release(lease).status == 404

    def test_released_when_the_request_is_cancelled_while_gpuwatch_is_asked(self, lease_node):
        asked, answer = threading.Event(), threading.Event()
        taken: list[str] = []

        class SlowClient(GpuwatchClient):
            def admit(self, *args, **kwargs):
                asked.set()
                answer.wait(5.0)
                result = super().admit(*args, **kwargs)
                taken.append(result.lease)
                return result

        async def app(_scope, _receive, _send):
            pytest.fail("a cancelled request reached the app")

        middleware = GpuwatchAdmission(app, client=SlowClient(lease_node.url, fail_open=False))

        async def request_then_cancel() -> None:
            scope = {"type": "http", "path": "/generate", "headers": [], "method": "POST"}
            asking = asyncio.ensure_future(middleware(scope, _never_receives, _drops))
            await asyncio.to_thread(asked.wait, 5.0)
            asking.cancel()
            answer.set()
            with pytest.raises(asyncio.CancelledError):
                await asking
            await asyncio.to_thread(wait_for, lambda: taken, what="the admission came back")
            await asyncio.sleep(0.5)  # the release runs on a worker thread

        asyncio.run(request_then_cancel())
        [lease] = taken
        assert lease_node.release(lease).status == 404  # released already, not held to its deadline
        assert lease_node.wait_open_leases(0) == 0

    def test_released_when_the_app_raises(self, spawner, lease_node):
        server = Uvicorn(spawner, lease_node.url)
        assert server.get("/boom").status == 500
        [lease] = server.leases()
        assert_ended(lease_node, lease)


class TestScopesAndOptions:
    """Scopes other than HTTP are never gated; the constructor refuses ambiguous options."""

    def test_websocket_scope_passes_through_without_asking(self):
        reached = []

        async def app(scope, _receive, _send):
            reached.append(scope["type"])

        # Nothing listens there: asking gpuwatch would hold the connection back as a fallback.
        middleware = GpuwatchAdmission(app, url=f"http://127.0.0.1:{free_port()}", fail_open=False)
        asyncio.run(middleware({"type": "websocket", "path": "/generate", "headers": []}, None, None))
        assert reached == ["websocket"]

    @pytest.mark.parametrize(
        ("options", "message"),
        [
            ({"url": "http://127.0.0.1:9478"}, "fail_open"),
            ({}, "either client= or url="),
            ({"client": GpuwatchClient(fail_open=False), "url": "http://127.0.0.1:9478"}, "either"),
            ({"client": GpuwatchClient(fail_open=False), "paths": ["/a"], "needs_gpu": bool}, "not both"),
            ({"client": GpuwatchClient(fail_open=False), "default_class": "gold"}, "default_class"),
        ],
    )
    def test_ambiguous_options_are_refused(self, options, message):
        with pytest.raises(ValueError, match=message):
            GpuwatchAdmission(lambda *_: None, **options)


async def _never_receives() -> dict[str, object]:
    await asyncio.sleep(3600)
    return {"type": "http.disconnect"}


async def _drops(_message: dict[str, object]) -> None:
    """Sends nowhere."""
