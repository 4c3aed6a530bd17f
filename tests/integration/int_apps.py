"""Tiny HTTP upstreams that answer with their name, standing in for the GPU servers behind a proxy."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler

from int_procs import QuietServer


class NamedApp:
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
        self.server = QuietServer(("127.0.0.1", 0), Handler)
        self.port = int(self.server.server_address[1])
        threading.Thread(target=self.server.serve_forever, args=(0.02,), daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
