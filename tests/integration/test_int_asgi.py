"""gpuwatch.asgi.GpuwatchAdmission under uvicorn on loopback, in front of a real `gpuwatch serve`."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

import pytest
from int_procs import free_port, http_get

from gpuwatch.asgi import GpuwatchAdmission
from gpuwatch.client import GpuwatchClient


class Uvicorn:
    """uvicorn serving int_asgi_app.py, asking gpuwatch at `gpuwatch_url`."""

    def __init__(self, spawner, gpuwatch_url: str, *, fail_open: bool = False) -> None:
        self.port = free_port()
        env = {**os.environ, "GPUWATCH_URL": gpuwatch_url, "GPUWATCH_FAIL_OPEN": "1" if fail_open else "0"}
        argv = [sys.executable, "-m", "uvicorn", "int_asgi_app:app", "--app-dir", str(Path(__file__).parent)]
        argv += ["--host", "127.0.0.1", "--port", str(self.port), "--lifespan", "on", "--no-access-log"]
        ready = lambda: self.get("/health").status == 200  # noqa: E731
        spawner.start(argv, name="uvicorn", ready=ready, env=env)

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
            assert json.loads(answer.body) == {"gpu": None, "fallback": True}


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
