"""A scripted stand-in for gpuwatch's HTTP API, for the answers a real daemon cannot be made to give."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler

from int_procs import QuietServer


@dataclass
class Reply:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b"{}"
    delay_s: float = 0.0  # seconds before answering: a hung daemon


def admit_reply(gpu: int = 0, state: str = "ok", pressure: float = 0.1) -> Reply:
    """A 200 from /v1/admit shaped as DESIGN §3 says."""
    body = {"admitted": True, "class": "default", "gpu": {"index": gpu}, "state": state}
    headers = {"X-GPUWatch-State": state, "X-GPUWatch-Pressure": str(pressure), "X-GPUWatch-Reason": "ok"}
    return Reply(200, headers, json.dumps(body).encode())


def held_back_reply(retry_after: str = "3", state: str = "hot", reason: str = "margin_below_hot") -> Reply:
    """A 503 from /v1/admit with Retry-After and the X-GPUWatch-* headers."""
    headers = {
        "Retry-After": retry_after,
        "X-GPUWatch-State": state,
        "X-GPUWatch-Pressure": "0.9",
        "X-GPUWatch-Reason": reason,
    }
    return Reply(503, headers, b'{"admitted": false}')


class StubGpuwatch:
    """Answers each route with the Reply set for it, and counts the requests per route."""

    def __init__(self) -> None:
        self.replies: dict[str, Reply] = {}
        self.hits: Counter[str] = Counter()
        self.queries: list[str] = []
        self._lock = threading.Lock()
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                route = self.path.split("?", 1)[0]
                with stub._lock:
                    stub.hits[route] += 1
                    stub.queries.append(self.path)
                reply = stub.replies.get(route, Reply(404, {}, b'{"error": "not_found"}'))
                time.sleep(reply.delay_s)
                self.send_response(reply.status)
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(reply.body)))
                self.end_headers()
                self.wfile.write(reply.body)

            def log_message(self, *_args: object) -> None:
                pass

        self.server = QuietServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, args=(0.02,), daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
