"""The exposure servers on one event loop: HTTP listeners, agent listeners and their timers."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from gpuwatch.exposure.agent import AgentProtocol
from gpuwatch.exposure.board import Board
from gpuwatch.exposure.http.auth import BasicAuth
from gpuwatch.exposure.http.drain_route import DrainControl
from gpuwatch.exposure.http.protocol import HttpProtocol
from gpuwatch.exposure.http.refusal import RefusingProtocol
from gpuwatch.exposure.http.responses import Response, build_response, date_line, json_bytes
from gpuwatch.exposure.http.routes import HEALTHY, Routes
from gpuwatch.exposure.http.scrape import Scrapes
from gpuwatch.exposure.landing import landing_page
from gpuwatch.exposure.listen import ListenAddress, bound_addresses, listen
from gpuwatch.exposure.metrics.exposition import CONTENT_TYPE, MetricsExposition
from gpuwatch.exposure.openapi import openapi_document
from gpuwatch.exposure.webwatch import WebSecurity
from gpuwatch.policy.classes import ClassNames

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    """How long connections may idle, in whole seconds (they are swept once a second)."""

    keepalive_idle_s: int = 75  # no request on a keep-alive connection: closed (nginx's default)
    request_timeout_s: int = 10  # a request still incomplete after this: dropped (slowloris)


@dataclass(frozen=True, slots=True)
class WebOptions:
    """The exporter-style web flags: telemetry path, scrapes at once (0: no limit), web config, admin API."""

    telemetry_path: str = "/metrics"
    max_requests: int = 40
    security: WebSecurity = field(default_factory=WebSecurity)
    max_connections: int = 4096  # HTTP connections at once; past it a 503 and close (0: no cap)
    drains: DrainControl | None = None  # what /v1/drain reads and changes
    admin_api: bool = False  # --web.enable-admin-api: POST and DELETE /v1/drain
    classes: ClassNames = field(default_factory=ClassNames)  # class names requests may use


# How long shutdown waits for requests in flight before dropping their connections, s.
SHUTDOWN_GRACE_S = 5.0
# Worker threads: a scrape needs one only when the decision it describes was not rendered by the
# sampler (the board expired a stale one), and a bcrypt check only for a header not verified yet;
# two of each keep such work off the event loop without competing for the CPU.
_SCRAPE_THREADS = 2
_AUTH_THREADS = 2


def static_routes(
    telemetry_path: str = "/metrics", classes: ClassNames | None = None
) -> dict[bytes, Response]:
    """Responses that never change: health, landing page, OpenAPI document."""
    page = landing_page(telemetry_path).encode()
    document = json_bytes(openapi_document(telemetry_path, classes or ClassNames()))
    return {
        b"/healthz": HEALTHY,
        b"/": build_response(200, "text/html; charset=utf-8", page),
        b"/openapi.json": build_response(200, "application/json", document),
    }


class DateLine:
    """The `Date:` header line, refreshed each second by the loop rather than per response."""

    def __init__(self) -> None:
        self.line = date_line(time.time())

    async def run(self) -> None:
        """Refresh just after each second starts, until cancelled."""
        while True:
            now = time.time()
            self.line = date_line(now)
            await asyncio.sleep(1.0 - now % 1.0 + 0.001)


class ExposureServer:
    """Serves the board over HTTP (TLS and basic auth per `web`) and the HAProxy agent protocol.

    `metrics` is served at the telemetry path; without one, an exposition of the board alone.
    """

    def __init__(  # noqa: PLR0913 - keyword-only past the addresses; each is one concern
        self,
        board: Board,
        http_addresses: Sequence[ListenAddress],
        agent_addresses: Sequence[ListenAddress],
        *,
        expiry_check_s: float,
        limits: ConnectionLimits | None = None,
        metrics: MetricsExposition | None = None,
        web: WebOptions | None = None,
    ) -> None:
        self._board = board
        self._http_addresses = http_addresses
        self._agent_addresses = agent_addresses
        self._expiry_check_s = expiry_check_s
        self._limits = limits or ConnectionLimits()
        self._web = web or WebOptions()
        self._date = DateLine()
        self._scrape_threads = ThreadPoolExecutor(_SCRAPE_THREADS, thread_name_prefix="gpuwatch-scrape")
        self._auth_threads = ThreadPoolExecutor(_AUTH_THREADS, thread_name_prefix="gpuwatch-auth")
        exposition = metrics or MetricsExposition(board, interval_s=None)
        self.scrapes = Scrapes(exposition, CONTENT_TYPE, self._web.max_requests, self._scrape_threads)
        self._routes = Routes(
            board,
            static_routes(self._web.telemetry_path, self._web.classes),
            telemetry_path=self._web.telemetry_path.encode(),
            scrapes=self.scrapes,
            auth=BasicAuth(self._web.security, self._auth_threads),
            drains=self._web.drains,
            admin=self._web.admin_api,
            classes=self._web.classes,
        )
        self._connections: set[HttpProtocol] = set()
        self._refusing: set[RefusingProtocol] = set()
        self._servers: list[asyncio.Server] = []
        self._tasks: list[asyncio.Task[None]] = []
        self.http_bound: list[str] = []
        self.agent_bound: list[str] = []

    async def start(self) -> None:
        """Bind every listener (OSError if one cannot be bound) and start the timers."""
        tls = self._web.security.listener_context()
        timeout_s = self._limits.request_timeout_s
        for address in self._http_addresses:
            server = await listen(address, self._http_connection, tls=tls, tls_handshake_timeout_s=timeout_s)
            self._servers.append(server)
            self.http_bound.extend(bound_addresses(server))
        for address in self._agent_addresses:
            server = await listen(address, self._agent_connection, backlog=128)
            self._servers.append(server)
            self.agent_bound.extend(bound_addresses(server))
        self._tasks.append(asyncio.get_running_loop().create_task(self._date.run()))
        self._every(1.0, self._sweep_idle)
        self._every(1.0, self._refresh_web_config)
        self._every(self._expiry_check_s, self._check_expiry)
        scheme = "HTTPS" if self._web.security.tls else "HTTP"
        for bound in self.http_bound:
            log.info("serving %s on %s", scheme, bound)
        for bound in self.agent_bound:
            log.info("serving the HAProxy agent on %s", bound)

    async def stop(self, grace_s: float = SHUTDOWN_GRACE_S) -> None:
        """Stop accepting, let requests in flight finish (at most `grace_s`), close the rest."""
        for server in self._servers:
            server.close()
        for task in self._tasks:
            task.cancel()
        for connection in list(self._connections):
            connection.close_when_idle()
        deadline = time.monotonic() + grace_s
        # A 10 ms poll, only while shutting down; connections leave the set from their own callbacks.
        while self._connections and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
        for connection in list(self._connections):
            connection.abort()
        for server in self._servers:
            await server.wait_closed()
        self._scrape_threads.shutdown(wait=False, cancel_futures=True)
        self._auth_threads.shutdown(wait=False, cancel_futures=True)

    def _http_connection(self) -> HttpProtocol | RefusingProtocol:
        cap = self._web.max_connections
        if cap and len(self._connections) >= cap:
            if not self._refusing:
                log.warning(
                    "refusing connections: %d open, --web.max-connections is %d", len(self._connections), cap
                )
            return RefusingProtocol(cap, self._date, self._refusing)
        return HttpProtocol(self._routes, self._date, self._connections)

    def _agent_connection(self) -> AgentProtocol:
        return AgentProtocol(self._agent_answers)

    def _agent_answers(self) -> tuple[bytes, Mapping[str, bytes]]:
        return self._board.current.agent_answers()

    def _every(self, period_s: float, action: Callable[[], None]) -> None:
        self._tasks.append(asyncio.get_running_loop().create_task(_repeat(period_s, action)))

    def _refresh_web_config(self) -> None:
        self._web.security.refresh()

    def _check_expiry(self) -> None:
        self._board.check_expiry(time.monotonic())

    def _sweep_idle(self) -> None:
        """Close connections idle past their limit; runs once a second."""
        for connection in list(self._connections):
            if connection.in_message and not connection.waiting:
                connection.message_sweeps += 1
                if connection.message_sweeps > self._limits.request_timeout_s:
                    # Slowloris: a byte now and then keeps a connection active, never done.
                    log.info(
                        "dropping a connection whose request took over %d s", self._limits.request_timeout_s
                    )
                    connection.abort()
                    continue
            if connection.activity != connection.swept_activity or connection.waiting:
                connection.swept_activity, connection.idle_sweeps = connection.activity, 0
                continue
            connection.idle_sweeps += 1
            if connection.in_message and connection.idle_sweeps >= self._limits.request_timeout_s:
                log.info(
                    "dropping a connection whose request stalled for %d s", self._limits.request_timeout_s
                )
                connection.abort()
            elif not connection.in_message and connection.idle_sweeps >= self._limits.keepalive_idle_s:
                connection.close_when_idle()


async def _repeat(period_s: float, action: Callable[[], None]) -> None:
    """Run `action` every `period_s` seconds until cancelled; a failure is logged, not fatal."""
    while True:
        await asyncio.sleep(period_s)
        try:
            action()
        except Exception:
            log.exception("periodic %r failed", action)
