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


# A lease id as gpuwatch makes them: 22 URL-safe base64 characters.
LEASE = "AbCdEfGhIjKlMnOpQrSt_-"


def admit_reply(gpu: int = 0, state: str = "ok", pressure: float = 0.1, lease: str | None = LEASE) -> Reply:
    """A 200 from /v1/admit shaped as DESIGN §3 says, with the lease it took (None: a dry run's)."""
    body = {
        "admitted": True,
        "class": "default",
        "gpu": {"index": gpu, "uuid": f"GPU-stub-{gpu}", "name": "NVIDIA H100 80GB HBM3"},
        "state": state,
        "lease": lease,
        "expected_s": 8.0 if lease else None,
        "expected_basis": "configured" if lease else None,
    }
    headers = {"X-GPUWatch-State": state, "X-GPUWatch-Pressure": str(pressure), "X-GPUWatch-Reason": "ok"}
    if lease:
        headers["X-GPUWatch-Lease"] = lease
    return Reply(200, headers, json.dumps(body).encode())


def release_reply(lease: str = LEASE, held_s: float = 1.5) -> Reply:
    """A 200 from /v1/release, shaped as the real one."""
    body = {"released": True, "lease": lease, "class": "default", "gpu": {"index": 0}, "held_s": held_s}
    return Reply(200, {}, json.dumps(body).encode())


def not_open_reply() -> Reply:
    """gpuwatch's 404 for a lease that is unknown or has ended."""
    return Reply(404, {}, b'{"error": "unknown_lease", "message": "no such lease is open"}')


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
    """Answers each route with the Reply set for it, and counts the requests per route.

    A list of Replies answers in turn, its last one from then on.
    """

    def __init__(self) -> None:
        self.replies: dict[str, Reply | list[Reply]] = {}
        self.hits: Counter[str] = Counter()
        self.queries: list[str] = []
        self.methods: list[str] = []
        self._lock = threading.Lock()
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                route = self.path.split("?", 1)[0]
                with stub._lock:
                    stub.hits[route] += 1
                    stub.queries.append(self.path)
                    stub.methods.append(self.command)
                    reply = stub.replies.get(route, Reply(404, {}, b'{"error": "not_found"}'))
                    if isinstance(reply, list):
                        reply = reply.pop(0) if len(reply) > 1 else reply[0]
                time.sleep(reply.delay_s)
                self.send_response(reply.status)
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(reply.body)))
                self.end_headers()
                self.wfile.write(reply.body)

            def do_POST(self) -> None:
                self.do_GET()

            def do_DELETE(self) -> None:
                self.do_GET()

            def log_message(self, *_args: object) -> None:
                pass

        self.server = QuietServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, args=(0.02,), daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
