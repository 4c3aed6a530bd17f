"""Tiny HTTP upstreams standing in for the GPU servers behind a proxy; one of them releases leases."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler

from int_procs import QuietServer

from gpuwatch.client import GpuwatchClient


class LoopbackApp:
    """An HTTP server on loopback, serving on a thread of its own until closed."""

    def serve(self, handler: type[BaseHTTPRequestHandler]) -> None:
        self.server = QuietServer(("127.0.0.1", 0), handler)
        self.port = int(self.server.server_address[1])
        threading.Thread(target=self.server.serve_forever, args=(0.02,), daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class NamedApp(LoopbackApp):
    """An HTTP server on loopback that answers every GET with 200 and its name."""

    def __init__(self, name: str) -> None:
        body = name.encode()

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_args: object) -> None:
                pass

        self.name = name
        self.serve(Handler)


class LeaseReleasingApp(LoopbackApp):
    """The application behind nginx: reads X-GPUWatch-Lease, "runs the job", releases the lease.

    It releases with gpuwatch.client as README's snippet does, and answers with JSON: the lease it
    was passed and what came of releasing it. Every request it saw is kept in `seen`.
    """

    def __init__(self, gpuwatch_url: str) -> None:
        client = GpuwatchClient(gpuwatch_url, fail_open=True)
        app = self
        self.seen: list[dict[str, object]] = []

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                lease = self.headers.get("X-GPUWatch-Lease")
                # The job would run here, on the GPU gpuwatch named; then its lease ends.
                released = client.release(lease) if lease else None
                answer = {
                    "lease": lease,
                    "release": None if released is None else released.outcome,
                    "held_s": None if released is None else released.held_s,
                }
                app.seen.append(answer)
                body = json.dumps(answer).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_args: object) -> None:
                pass

        self.serve(Handler)
