"""Counts XID critical-error events per GPU on a daemon thread that waits on an NVML event set."""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from types import MappingProxyType

from gpuwatch.sources.model import frozen_counts
from gpuwatch.sources.nvml import binding
from gpuwatch.sources.nvml.binding import NvmlError, function, handle_address

log = logging.getLogger(__name__)

POLL_MS = 200  # how long one wait may block: bounds how late close() is honoured
# NVIDIA's XID catalogue runs from 1 to under 200: every code up to this one is counted on its own,
# so a critical XID is seen however many other codes came first (at most this many keys).
MAX_CATALOGUE_XID = 255
# Codes outside the catalogue (garbage from a broken driver): a storm of them must not grow memory
# without bound, so only this many distinct ones per GPU get their own count.
MAX_DISTINCT_XIDS = 64
OTHER_XIDS = "other"  # where uncatalogued codes beyond MAX_DISTINCT_XIDS are counted


class XidCounts:
    """Per-GPU counts by XID code and the last XID seen, shared between the watcher and readers."""

    def __init__(self, max_distinct: int = MAX_DISTINCT_XIDS) -> None:
        self._lock = threading.Lock()
        self._counts: dict[str, dict[str, int]] = {}
        self._last: dict[str, int] = {}
        self._max_distinct = max_distinct

    def record(self, gpu: str, xid: int) -> None:
        """Count one event of code `xid` on the GPU keyed `gpu` (its UUID)."""
        with self._lock:
            counts = self._counts.setdefault(gpu, {})
            key = str(xid)
            if key not in counts and not 1 <= xid <= MAX_CATALOGUE_XID:
                uncatalogued = sum(1 for code in counts if not _catalogued(code))
                if uncatalogued >= self._max_distinct:
                    key = OTHER_XIDS
            counts[key] = counts.get(key, 0) + 1
            self._last[gpu] = xid

    def of(self, gpu: str) -> tuple[Mapping[str, int], int | None]:
        """A read-only copy of one GPU's counts by code, and its last XID."""
        with self._lock:
            return frozen_counts(self._counts.get(gpu)), self._last.get(gpu)


def _catalogued(key: str) -> bool:
    """Whether a count's key is a catalogue code (not garbage, not OTHER_XIDS)."""
    return key.isdigit() and 1 <= int(key) <= MAX_CATALOGUE_XID


class XidWatcher:
    """Waits for XID events on every GPU that supports them and records them in an XidCounts.

    `handles` maps each GPU's key (UUID) to its NVML handle. GPUs that cannot register are skipped:
    they report no XIDs rather than failing the source.
    """

    def __init__(self, handles: Mapping[str, object], counts: XidCounts) -> None:
        self._keys = MappingProxyType({handle_address(handle): key for key, handle in handles.items()})
        self._handles = handles
        self._counts = counts
        self._stop = threading.Event()
        self._event_set: object | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> bool:
        """Register for XIDs and start the thread; False if no GPU (or NVML) supports them."""
        try:
            self._event_set = function("nvmlEventSetCreate")()
        except NvmlError as error:
            log.warning("XID events unavailable: nvmlEventSetCreate failed with %s", error.name)
            return False
        registered = [key for key, handle in self._handles.items() if self._register(key, handle)]
        if not registered:
            self._free()
            return False
        self._thread = threading.Thread(target=self._run, name="gpuwatch-xid", daemon=True)
        self._thread.start()
        return True

    def _register(self, key: str, handle: object) -> bool:
        try:
            function("nvmlDeviceRegisterEvents")(handle, binding.EVENT_XID_CRITICAL, self._event_set)
        except NvmlError as error:
            log.info("GPU %s gives no XID events (%s)", key, error.name)
            return False
        return True

    def _run(self) -> None:
        wait = function("nvmlEventSetWait_v2")
        while not self._stop.is_set():
            try:
                data = wait(self._event_set, POLL_MS)
            except NvmlError as error:
                if error.name != binding.TIMEOUT:
                    # The driver is failing (the source will re-initialise): do not spin on it.
                    self._stop.wait(POLL_MS / 1000)
                continue
            if data.eventType & binding.EVENT_XID_CRITICAL:
                key = self._keys.get(handle_address(data.device))
                if key is not None:
                    self._counts.record(key, int(data.eventData))

    def close(self, timeout_s: float = 2.0) -> None:
        """Stop the thread (within ~POLL_MS) and free the event set."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            if self._thread.is_alive():
                # Stuck inside NVML: freeing the set under it could crash the process.
                log.warning("XID thread did not stop within %.1f s; leaving its event set", timeout_s)
                return
        self._free()

    def _free(self) -> None:
        if self._event_set is None:
            return
        try:
            function("nvmlEventSetFree")(self._event_set)
        except NvmlError as error:
            log.debug("nvmlEventSetFree failed with %s", error.name)
        self._event_set = None
