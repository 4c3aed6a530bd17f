"""The `gpuwatch serve` daemon: source -> sampler -> policy -> board -> HTTP API, metrics, agent, files."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from gpuwatch.exposure.board import Board
from gpuwatch.exposure.drain_store import DrainStore
from gpuwatch.exposure.http.server import ExposureServer, WebOptions
from gpuwatch.exposure.leases import LeaseBook
from gpuwatch.exposure.listen import ListenAddress
from gpuwatch.exposure.metrics.dcgm import dcgm_hostname
from gpuwatch.exposure.metrics.exposition import MetricsExposition
from gpuwatch.exposure.publication import Publication
from gpuwatch.exposure.state_files import StateFiles
from gpuwatch.exposure.webconfig import WebConfig, WebConfigError
from gpuwatch.exposure.webwatch import WebSecurity
from gpuwatch.policy.classes import ClassNames
from gpuwatch.policy.config import PolicyConfig
from gpuwatch.policy.decision import NodeDecision
from gpuwatch.policy.drain import DrainEntry, Drains, drained
from gpuwatch.policy.engine import Policy, expire
from gpuwatch.sampler.loop import Sampler
from gpuwatch.service.logs import fields, setup_logging
from gpuwatch.service.notify import Notifier
from gpuwatch.service.reload import Reloader
from gpuwatch.service.settings import ServeConfig
from gpuwatch.service.watchdog import ServiceReporter, SourceLiveness
from gpuwatch.sources.base import Source
from gpuwatch.sources.model import Snapshot

# Named as before the move into service/, so journal filters on logger=gpuwatch.daemon keep matching.
log = logging.getLogger("gpuwatch.daemon")

# Far enough ahead that any decision has expired: what a reader should assume once we are gone, s.
_FOREVER_S = 1e9
# SIGTERM: requests in flight get this long to finish, s. Answers are pre-rendered, so only a
# client slow to send its request needs it; with the sampler's 1 s, the exit comes within 5 s.
SHUTDOWN_GRACE_S = 3.0
_SAMPLER_STOP_S = 1.0


@dataclass(frozen=True, slots=True)
class DaemonSettings:
    """What `gpuwatch serve` was asked for; empty address lists and a None state dir disable."""

    interval_s: float = 1.0
    http_addresses: Sequence[ListenAddress] = ()
    agent_addresses: Sequence[ListenAddress] = ()
    state_dir: str | None = None
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    config_path: str | None = None  # the --config file; SIGHUP reads it again
    # Everything `gpuwatch serve` resolved, and how to resolve it again on SIGHUP (file + flags).
    config: ServeConfig | None = None
    load_config: Callable[[], ServeConfig] | None = None
    telemetry_path: str = "/metrics"
    max_requests: int = 40  # concurrent scrapes; 0: no limit
    max_connections: int = 4096  # HTTP connections at once; 0: no cap
    web_config: WebConfig | None = None  # TLS and basic auth, read from `web_config_path`
    web_config_path: str | None = None  # re-read when it or a certificate changes
    dcgm_compat: bool = False  # also emit dcgm-exporter's default counters
    admin_api: bool = False  # POST and DELETE /v1/drain (needs basic_auth_users in the web config)
    classes: ClassNames = field(default_factory=ClassNames)  # class names requests may use


class Daemon:
    """Wires one source to the exposure; `run()` serves until its stop event is set.

    The policy runs on the sampler thread (a listener), which renders and swaps the board's
    publication; the event loop only reads it. Raises StateDirError at construction when the
    state directory cannot be used, WebConfigError when the web config's files do not load.
    """

    def __init__(self, source: Source, settings: DaemonSettings, notifier: Notifier | None = None) -> None:
        self.settings = settings
        self._source_spec = source.spec
        self._policy = Policy(settings.policy, settings.interval_s)
        self._policy_config = settings.policy
        self._reloader = self._make_reloader(settings)
        # Admissions take their leases here; the policy reads it with each snapshot.
        self.book = LeaseBook(settings.policy)
        self.board = Board(source.spec, self._expire, book=self.book)
        self.board.observe(log_changes)
        self._frozen = False
        self.board.observe(self._freeze_after_first_decision)
        # The sampler thread publishes each decision and the event loop each drain change; one lock
        # keeps the latest undrained decision and the drains laid over it in step.
        self._publishing = threading.Lock()
        self._undrained = self.board.current.decision
        self._drain_store = DrainStore(settings.state_dir)
        self._drains = self._drain_store.load()
        if not self._drains.empty:
            log.warning(
                "drains from before the restart are in force: %s",
                self._drains.document(),
                extra=fields("drain_restored"),
            )
        self.notifier = notifier or Notifier()
        self._liveness = SourceLiveness(time.monotonic())
        self._files = None if settings.state_dir is None else StateFiles(settings.state_dir)
        if self._files is not None:
            self._files.write(self.board.current)  # fails now, not silently later, if unwritable
            self.board.observe(lambda _previous, new: self._write_files(new))
        self.sampler = Sampler(source, interval_s=settings.interval_s)
        self.sampler.subscribe(self._on_snapshot)
        self.reporter = ServiceReporter(
            self.notifier,
            self.board,
            self._liveness,
            fresh_s=lambda: self._policy_config.stale_after_s(settings.interval_s),
            finished=lambda: self.sampler.exhausted,
        )
        hostname = dcgm_hostname() if settings.dcgm_compat else None
        self.metrics = MetricsExposition(self.board, settings.interval_s, dcgm_hostname=hostname)
        web = WebOptions(
            telemetry_path=settings.telemetry_path,
            max_requests=settings.max_requests,
            max_connections=settings.max_connections,
            security=_web_security(settings),
            drains=self,
            admin_api=settings.admin_api,
            classes=settings.classes,
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
        """Listen (OSError if an address cannot be bound), sample, serve until `stop`, shut down.

        systemd hears READY=1 once the first decision is published, and STOPPING=1 at `stop`.
        """
        await self.server.start()
        reporting = asyncio.get_running_loop().create_task(self.reporter.run())
        try:
            self.sampler.start()
            if started is not None:
                started()
            await stop.wait()
            self.notifier.stopping()
            log.info(
                "stopping: no new connections; finishing requests in flight",
                extra=fields("stopping", grace_s=SHUTDOWN_GRACE_S),
            )
            await self.server.stop(grace_s=SHUTDOWN_GRACE_S)
        finally:
            reporting.cancel()
            self.sampler.stop(timeout_s=_SAMPLER_STOP_S)
            self._write_final_files()
            self.notifier.close()
        log.info("stopped", extra=fields("stopped"))

    def _freeze_after_first_decision(self, _previous: Publication, new: Publication) -> None:
        """Move what start-up made, caches of the first render included, out of the collector's way.

        A full collection walks every object; with the long-lived ones frozen it walks only the
        new ones, so it no longer holds the sampler thread (and a decision's publication) for
        10-15 ms now and then. Measured at --interval 0.1: p99 from snapshot to publication
        18 ms before, 5 ms after.
        """
        if new.decision.sequence >= 1 and not self._frozen:
            self._frozen = True
            gc.freeze()

    def _on_snapshot(self, snapshot: Snapshot) -> None:
        decision = self._policy.update(snapshot, self.book.leases())
        with self._publishing:
            self._undrained = decision
            shown = drained(decision, self._drains)
            # Admission clients first; the metrics render follows (scrapes meanwhile: see expect).
            self.metrics.expect(shown)
            self.board.publish(shown)
        self.metrics.prepare(snapshot, shown)
        self._liveness.observe(snapshot)  # after the publication: a failing policy is not alive

    def drains(self) -> Drains:
        """The maintenance drains in force."""
        return self._drains

    def drain(self, gpu: int | None, reason: str) -> Drains:
        """Hold the node (None) or GPU `gpu` back on purpose, at once and until undrained."""
        entry = DrainEntry(reason, time.time())
        return self._change_drains(lambda d: d.with_node(entry) if gpu is None else d.with_gpu(gpu, entry))

    def undrain(self, gpu: int | None) -> Drains:
        """End every drain (None) or GPU `gpu`'s."""
        return self._change_drains(lambda d: Drains() if gpu is None else d.with_gpu(gpu, None))

    def _change_drains(self, change: Callable[[Drains], Drains]) -> Drains:
        with self._publishing:
            self._drains = change(self._drains)
            self.board.publish(drained(self._undrained, self._drains))
            drains = self._drains
        log.warning("drains now: %s", drains.document(), extra=fields("drain", drained=not drains.empty))
        try:
            self._drain_store.save(drains)
        except OSError as exc:
            log.warning("cannot keep the drains for a restart: %s", exc, extra=fields("drain_not_saved"))
        return drains

    def reload(self) -> None:
        """SIGHUP: read the settings again; a bad file is logged and the running settings kept.

        Applied at once: [policy] (every GPU's fitted thermal model and state are kept) and [log].
        Connections stay open. Other changed settings are named in a warning: they need a restart.
        """
        log.info("SIGHUP: reloading the settings", extra=fields("signal", signal="SIGHUP"))
        if self._reloader is None:
            log.info("SIGHUP: no config to reload", extra=fields("reload_skipped"))
            return
        if self.reporter.ready:  # before READY=1 systemd is still starting us: no reload to announce
            self.notifier.reloading()
        try:
            self._reloader.reload()
        finally:
            self.reporter.resend_ready()

    def _make_reloader(self, settings: DaemonSettings) -> Reloader | None:
        if settings.config is None or settings.load_config is None:
            return None
        return Reloader(
            settings.config,
            settings.load_config,
            apply_policy=self._apply_policy,
            apply_logging=setup_logging,
            path=settings.config_path or "(no config file)",
        )

    def _apply_policy(self, config: PolicyConfig) -> None:
        self._policy.reconfigure(config)
        self.book.reconfigure(config)
        self._policy_config = config

    def _expire(self, decision: NodeDecision, now_monotonic: float) -> NodeDecision:
        """`decision` while nothing in it is stale, else the undrained one expired, drains laid over."""
        with self._publishing:
            expired = expire(self._undrained, now_monotonic, self._policy_config, self.settings.interval_s)
            if expired is self._undrained:
                return decision
            self._undrained = expired
            return drained(expired, self._drains)

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
    """One structured log line per change of the node's state and of each GPU's, with the reasons."""
    before, after = previous.decision, new.decision
    if before.state is not after.state:
        log.info(
            "node %s -> %s",
            before.state,
            after.state,
            extra=fields(
                "state_change",
                scope="node",
                sequence=after.sequence,
                **{"from": before.state.value, "to": after.state.value},
                reasons=after.reasons or None,
                sentence=after.sentence,
            ),
        )
    old_states = {gpu.index: gpu.state.value for gpu in before.gpus}
    for gpu in after.gpus:
        old = old_states.get(gpu.index, "new")
        if old != gpu.state.value:
            log.info(
                "gpu %d %s -> %s",
                gpu.index,
                old,
                gpu.state,
                extra=fields(
                    "state_change",
                    scope="gpu",
                    gpu=gpu.index,
                    uuid=gpu.uuid,
                    sequence=after.sequence,
                    **{"from": old, "to": gpu.state.value},
                    reasons=gpu.reasons or None,
                    sentence=gpu.sentence,
                ),
            )


def new_event_loop() -> asyncio.AbstractEventLoop:
    """The uvloop event loop where installed (libuv: much faster under many connections), else asyncio's."""
    try:
        import uvloop  # noqa: PLC0415 - optional at run time
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def _stop_on_signal(signum: int, stop: asyncio.Event) -> None:
    name = signal.Signals(signum).name
    log.info("%s: shutting down", name, extra=fields("signal", signal=name))
    stop.set()


def serve(daemon: Daemon) -> None:
    """Run `daemon` on a new event loop until SIGTERM or SIGINT; OSError if it cannot listen."""
    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        stop = asyncio.Event()
        loop = runner.get_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, _stop_on_signal, signum, stop)
        loop.add_signal_handler(signal.SIGHUP, daemon.reload)
        try:
            runner.run(daemon.run(stop))
        finally:
            for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                with contextlib.suppress(ValueError, RuntimeError):
                    loop.remove_signal_handler(signum)
