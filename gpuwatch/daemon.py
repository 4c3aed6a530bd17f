"""The `gpuwatch serve` daemon: source -> sampler -> policy -> board -> HTTP API, metrics, agent, files."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from gpuwatch.config_file import ConfigFileError, load_config
from gpuwatch.exposure.board import Board
from gpuwatch.exposure.http.server import ExposureServer, WebOptions
from gpuwatch.exposure.listen import ListenAddress
from gpuwatch.exposure.metrics.dcgm import dcgm_hostname
from gpuwatch.exposure.metrics.exposition import MetricsExposition
from gpuwatch.exposure.publication import Publication
from gpuwatch.exposure.state_files import StateFiles
from gpuwatch.exposure.webconfig import WebConfig, WebConfigError
from gpuwatch.exposure.webwatch import WebSecurity
from gpuwatch.model import Snapshot
from gpuwatch.policy.config import PolicyConfig
from gpuwatch.policy.decision import NodeDecision
from gpuwatch.policy.engine import Policy, expire
from gpuwatch.sampler import Sampler
from gpuwatch.sources.base import Source

log = logging.getLogger(__name__)

# Far enough ahead that any decision has expired: what a reader should assume once we are gone, s.
_FOREVER_S = 1e9


@dataclass(frozen=True, slots=True)
class DaemonSettings:
    """What `gpuwatch serve` was asked for; empty address lists and a None state dir disable."""

    interval_s: float = 1.0
    http_addresses: Sequence[ListenAddress] = ()
    agent_addresses: Sequence[ListenAddress] = ()
    state_dir: str | None = None
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    config_path: str | None = None  # where `policy` came from; SIGHUP reads it again
    telemetry_path: str = "/metrics"
    max_requests: int = 40  # concurrent scrapes; 0: no limit
    web_config: WebConfig | None = None  # TLS and basic auth, read from `web_config_path`
    web_config_path: str | None = None  # re-read when it or a certificate changes
    dcgm_compat: bool = False  # also emit dcgm-exporter's default counters


class Daemon:
    """Wires one source to the exposure; `run()` serves until its stop event is set.

    The policy runs on the sampler thread (a listener), which renders and swaps the board's
    publication; the event loop only reads it. Raises StateDirError at construction when the
    state directory cannot be used, WebConfigError when the web config's files do not load.
    """

    def __init__(self, source: Source, settings: DaemonSettings) -> None:
        self.settings = settings
        self._source_spec = source.spec
        self._policy = Policy(settings.policy, settings.interval_s)
        self._policy_config = settings.policy
        self.board = Board(source.spec, self._expire)
        self.board.observe(log_changes)
        self._files = None if settings.state_dir is None else StateFiles(settings.state_dir)
        if self._files is not None:
            self._files.write(self.board.current)  # fails now, not silently later, if unwritable
            self.board.observe(lambda _previous, new: self._write_files(new))
        self.sampler = Sampler(source, interval_s=settings.interval_s)
        self.sampler.subscribe(self._on_snapshot)
        hostname = dcgm_hostname() if settings.dcgm_compat else None
        self.metrics = MetricsExposition(self.board, settings.interval_s, dcgm_hostname=hostname)
        web = WebOptions(
            telemetry_path=settings.telemetry_path,
            max_requests=settings.max_requests,
            security=_web_security(settings),
        )
        check_s = min(1.0, max(0.05, settings.interval_s / 2))
        self.server = ExposureServer(
            self.board,
            settings.http_addresses,
            settings.agent_addresses,
            expiry_check_s=check_s,
            metrics=self.metrics,
            web=web,
        )

    async def run(self, stop: asyncio.Event, *, started: Callable[[], None] | None = None) -> None:
        """Listen (OSError if an address cannot be bound), sample, serve until `stop`, shut down."""
        await self.server.start()
        try:
            self.sampler.start()
            if started is not None:
                started()
            await stop.wait()
            log.info("stopping: no new connections; finishing requests in flight")
            await self.server.stop()
        finally:
            self.sampler.stop()
            self._write_final_files()
        log.info("stopped")

    def _on_snapshot(self, snapshot: Snapshot) -> None:
        decision = self._policy.update(snapshot)
        self.metrics.prepare(snapshot, decision)  # on this thread: scrapes find it ready
        self.board.publish(decision)

    def reload(self) -> None:
        """SIGHUP: read --config again; a bad file is logged and the running settings kept."""
        path = self.settings.config_path
        if path is None:
            log.info("SIGHUP: no --config file to reload")
            return
        try:
            config = load_config(path)
        except ConfigFileError as exc:
            log.warning("SIGHUP: keeping the running settings: %s", exc)
            return
        self._policy.reconfigure(config)
        self._policy_config = config
        log.info("SIGHUP: reloaded %s", path)

    def _expire(self, decision: NodeDecision, now_monotonic: float) -> NodeDecision:
        return expire(decision, now_monotonic, self._policy_config, self.settings.interval_s)

    def _write_files(self, publication: Publication) -> None:
        if self._files is not None:
            self._files.write_logged(publication)

    def _write_final_files(self) -> None:
        """Leave files that say nothing is known, so no reader trusts a stopped daemon's last word."""
        if self._files is not None:
            final = self._expire(self.board.current.decision, time.monotonic() + _FOREVER_S)
            self._files.write_logged(Publication(final, self._source_spec))


def _web_security(settings: DaemonSettings) -> WebSecurity:
    """The web config in force; WebConfigError if its certificates stopped loading since it was read."""
    try:
        return WebSecurity(settings.web_config_path, settings.web_config)
    except OSError as exc:  # ssl.SSLError included
        raise WebConfigError(f"{settings.web_config_path}: tls_server_config: {exc}") from exc


def log_changes(previous: Publication, new: Publication) -> None:
    """One log line per change of the node's state and of each GPU's."""
    before, after = previous.decision, new.decision
    if before.state is not after.state:
        log.info("node %s -> %s [%s] %s", before.state, after.state, ",".join(after.reasons), after.sentence)
    old_states = {gpu.index: gpu.state.value for gpu in before.gpus}
    for gpu in after.gpus:
        old = old_states.get(gpu.index, "new")
        if old != gpu.state.value:
            log.info(
                "gpu %d %s -> %s [%s] %s", gpu.index, old, gpu.state, ",".join(gpu.reasons), gpu.sentence
            )


def new_event_loop() -> asyncio.AbstractEventLoop:
    """The uvloop event loop where installed (libuv: much faster under many connections), else asyncio's."""
    try:
        import uvloop  # noqa: PLC0415 - optional at run time
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def serve(daemon: Daemon) -> None:
    """Run `daemon` on a new event loop until SIGTERM or SIGINT; OSError if it cannot listen."""
    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        stop = asyncio.Event()
        loop = runner.get_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        loop.add_signal_handler(signal.SIGHUP, daemon.reload)
        try:
            runner.run(daemon.run(stop))
        finally:
            for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                with contextlib.suppress(ValueError, RuntimeError):
                    loop.remove_signal_handler(signum)
