"""The nvml source: reads every GPU through NVML, read-only; faults are reported, never raised."""

from __future__ import annotations

import logging
import threading
from collections import Counter
from dataclasses import dataclass

from gpuwatch.sources.base import SourceReading
from gpuwatch.sources.clock import Clock, SystemClock
from gpuwatch.sources.model import GpuHealth, GpuIdentity, GpuSample, RecoveryAction, frozen_counts
from gpuwatch.sources.nvml import binding
from gpuwatch.sources.nvml.binding import NvmlError, as_text, function
from gpuwatch.sources.nvml.identity import read_limits
from gpuwatch.sources.nvml.reader import SOURCE_FAILURES, GpuReader
from gpuwatch.sources.nvml.xid import XidCounts, XidWatcher

log = logging.getLogger(__name__)

LIBRARY_MISSING = (
    "NVIDIA's NVML library libnvidia-ml.so.1 was not found: is the NVIDIA driver installed? "
    "For a demo without GPUs use --source sim:8xH100."
)
_SOURCE_SENTENCES = {
    binding.LIBRARY_NOT_FOUND: LIBRARY_MISSING,
    binding.DRIVER_NOT_LOADED: (
        "The NVIDIA kernel driver is not loaded (NVML DRIVER_NOT_LOADED): check `dmesg` and the "
        "nvidia modules; gpuwatch keeps retrying."
    ),
    binding.NO_PERMISSION: (
        "NVML refused access (NO_PERMISSION): the gpuwatch user needs read access to /dev/nvidia*."
    ),
    binding.LIB_RM_VERSION_MISMATCH: (
        "NVML and the loaded NVIDIA kernel driver are different versions (LIB_RM_VERSION_MISMATCH): "
        "reboot or reload the driver after the upgrade."
    ),
}
_HEALTH_BY_ERROR = {binding.GPU_IS_LOST: GpuHealth.LOST, binding.RESET_REQUIRED: GpuHealth.RESET_REQUIRED}


def source_sentence(name: str, *, every_call: bool = False) -> str:
    """One sentence for people on why the whole source is down, from an NVML error name."""
    if name in _SOURCE_SENTENCES:
        return _SOURCE_SENTENCES[name]
    if every_call:
        return f"Every NVML call failed this round ({name}): gpuwatch re-initialises NVML with backoff."
    return f"NVML failed with {name}: gpuwatch re-initialises it with backoff."


def gpu_sentence(identity: GpuIdentity, name: str) -> str:
    """One sentence for people on why one GPU has no reading, from an NVML error name."""
    who = f"GPU {identity.index}" + (f" ({identity.uuid})" if identity.uuid else "")
    if name == binding.GPU_IS_LOST:
        return (
            f"{who} has fallen off the bus (NVML GPU_IS_LOST): only a GPU reset or a reboot brings it back."
        )
    if name == binding.RESET_REQUIRED:
        return f"{who} needs a reset (NVML RESET_REQUIRED) before it can be used again."
    return f"{who} could not be read this round (NVML {name})."


class Backoff:
    """Exponential delay between re-initialisation attempts, measured on an injected clock."""

    def __init__(self, clock: Clock, initial_s: float, max_s: float) -> None:
        self._clock = clock
        self._initial_s = initial_s
        self._max_s = max_s
        self._delay_s = initial_s
        self._next_at: float | None = None

    def due(self) -> bool:
        """True when an attempt may be made now."""
        return self._next_at is None or self._clock.monotonic() >= self._next_at

    def failed(self) -> float:
        """Schedule the next attempt after the current delay, then double it; the delay in s."""
        delay = self._delay_s
        self._next_at = self._clock.monotonic() + delay
        self._delay_s = min(delay * 2, self._max_s)
        return delay

    def succeeded(self) -> None:
        """Back to the initial delay."""
        self._delay_s, self._next_at = self._initial_s, None


@dataclass
class _Gpu:
    """One GPU slot of an NVML session; `reader` is None until the GPU could be opened."""

    identity: GpuIdentity
    reader: GpuReader | None = None
    failure: str | None = None  # NVML error name that kept it from opening


class _Session:
    """One successful nvmlInit: the driver version, a reader per GPU, and the XID watcher."""

    def __init__(self, clock: Clock, xid_counts: XidCounts, errors: Counter[str]) -> None:
        self._clock = clock
        function("nvmlInit")()
        try:
            self.driver_version = self._driver_version()
            count = function("nvmlDeviceGetCount")()
            self.gpus = [_Gpu(GpuIdentity(index=index, uuid="", name="")) for index in range(count)]
            for gpu in self.gpus:
                self._open(gpu, errors)
        except NvmlError:
            self._shutdown()
            raise
        handles = {gpu.identity.uuid: gpu.reader.handle for gpu in self.gpus if gpu.reader}
        self._watcher = XidWatcher(handles, xid_counts)
        self._watcher.start()

    @staticmethod
    def _driver_version() -> str | None:
        try:
            return as_text(function("nvmlSystemGetDriverVersion")())
        except NvmlError as error:
            if error.name in SOURCE_FAILURES:
                raise
            return None

    def _open(self, gpu: _Gpu, errors: Counter[str]) -> None:
        index = gpu.identity.index
        try:
            handle = function("nvmlDeviceGetHandleByIndex")(index)
            limits = read_limits(index, handle, self.driver_version)
        except NvmlError as error:
            if error.name in SOURCE_FAILURES:
                raise
            errors[error.name] += 1
            gpu.failure = error.name
            return
        gpu.identity, gpu.failure = limits.identity, None
        gpu.reader = GpuReader(handle, limits, self._clock)

    def sample(self, gpu: _Gpu, errors: Counter[str], dropped: Counter[str], xids: XidCounts) -> GpuSample:
        """One GPU's sample; raises NvmlError only when NVML as a whole has failed."""
        if gpu.reader is None and gpu.failure != binding.GPU_IS_LOST:
            self._open(gpu, errors)
        if gpu.reader is None:
            name = gpu.failure or "UNKNOWN"
            health = _HEALTH_BY_ERROR.get(name, GpuHealth.UNAVAILABLE)
            return GpuSample(gpu.identity, None, health, gpu_sentence(gpu.identity, name))
        xid_errors, last_xid = xids.of(gpu.identity.uuid)
        try:
            reading, dropped_names = gpu.reader.read(errors)
        except NvmlError as error:
            if error.name in SOURCE_FAILURES:
                raise
            health = _HEALTH_BY_ERROR.get(error.name, GpuHealth.UNAVAILABLE)
            sentence = gpu_sentence(gpu.identity, error.name)
            return GpuSample(gpu.identity, None, health, sentence, xid_errors, last_xid)
        dropped.update(dropped_names)
        action = reading.recovery_action
        if action is None or action is RecoveryAction.NONE:
            return GpuSample(gpu.identity, reading, GpuHealth.OK, None, xid_errors, last_xid)
        wanted = (
            "a recovery action newer than gpuwatch knows"
            if action is RecoveryAction.UNKNOWN
            else (f"recovery action {action.name.lower()}")
        )
        sentence = f"GPU {gpu.identity.index} ({gpu.identity.uuid}) asks for {wanted}."
        return GpuSample(gpu.identity, reading, GpuHealth.RESET_REQUIRED, sentence, xid_errors, last_xid)

    def stop_events(self) -> None:
        """Stop the XID thread (safe while a read is still inside NVML)."""
        self._watcher.close()

    def close(self) -> None:
        """Stop the XID thread and release NVML."""
        self.stop_events()
        self._shutdown()

    @staticmethod
    def _shutdown() -> None:
        try:
            function("nvmlShutdown")()
        except NvmlError as error:
            log.debug("nvmlShutdown failed with %s", error.name)


class NvmlSource:
    """Telemetry of the NVIDIA GPUs on this node, through NVML; never changes anything on them.

    NVML is initialised on the first `read` and re-initialised with exponential backoff (on
    `clock`) whenever it is missing or failing; meanwhile `read` returns at once with `error` set
    and every known GPU UNAVAILABLE. `read` is not re-entrant; `close` may come from any thread.
    """

    def __init__(
        self, clock: Clock | None = None, *, backoff_initial_s: float = 1.0, backoff_max_s: float = 60.0
    ) -> None:
        self._clock = clock or SystemClock()
        self._backoff = Backoff(self._clock, backoff_initial_s, backoff_max_s)
        self._xids = XidCounts()
        self._lock = threading.Lock()  # guards _session, _closed and _reading against close()
        self._session: _Session | None = None
        self._closed = False
        self._reading = False
        self._known: tuple[GpuIdentity, ...] = ()
        self._error: str | None = None
        self._driver_version: str | None = None

    @property
    def spec(self) -> str:
        """Always "nvml"."""
        return "nvml"

    def read(self) -> SourceReading:
        """Read every GPU once; see the class docstring for what happens when NVML fails."""
        with self._lock:
            if self._closed:
                return SourceReading(gpus=(), error="The NVML source is closed.")
            self._reading = True
        try:
            return self._read()
        finally:
            self._finish_read()

    def _finish_read(self) -> None:
        with self._lock:
            self._reading = False
            session = self._session if self._closed else None
            if session is not None:
                self._session = None
        if session is not None:
            session.close()  # close() came while this read was inside NVML

    def _sample_all(
        self, session: _Session, errors: Counter[str], dropped: Counter[str]
    ) -> tuple[GpuSample, ...]:
        samples = tuple(session.sample(gpu, errors, dropped, self._xids) for gpu in session.gpus)
        if samples and all(sample.health is GpuHealth.UNAVAILABLE for sample in samples):
            raise NvmlError(errors.most_common(1)[0][0] if errors else "UNKNOWN", "every GPU")
        return samples

    def _read(self) -> SourceReading:
        errors: Counter[str] = Counter()
        session = self._session or self._open(errors)
        if session is None:
            return self._unavailable(errors)
        dropped: Counter[str] = Counter()
        try:
            samples = self._sample_all(session, errors, dropped)
        except NvmlError as error:
            self._lose(session, source_sentence(error.name, every_call=error.function == "every GPU"))
            return self._unavailable(errors)
        return SourceReading(
            gpus=samples,
            driver_version=session.driver_version,
            errors=frozen_counts(errors),
            dropped=frozen_counts(dropped),
            error=None if samples else "NVML reports no GPUs on this node.",
        )

    def _open(self, errors: Counter[str]) -> _Session | None:
        if not self._backoff.due():
            return None
        try:
            session = _Session(self._clock, self._xids, errors)
        except NvmlError as error:
            errors[error.name] += 1
            delay = self._backoff.failed()
            self._set_error(source_sentence(error.name), f"retrying in {delay:g} s")
            return None
        with self._lock:
            if self._closed:
                session.close()
                return None
            self._session = session
        self._backoff.succeeded()
        self._known = tuple(gpu.identity for gpu in session.gpus)
        self._driver_version = session.driver_version
        if self._error is not None:
            log.warning("NVML is back: %d GPU(s), driver %s", len(session.gpus), session.driver_version)
        self._error = None
        return session

    def _lose(self, session: _Session, sentence: str) -> None:
        with self._lock:
            self._session = None
        session.close()
        delay = self._backoff.failed()
        self._set_error(sentence, f"re-initialising in {delay:g} s")

    def _set_error(self, sentence: str, retry: str) -> None:
        if sentence != self._error:
            log.warning("%s (%s)", sentence, retry)
        self._error = sentence

    def _unavailable(self, errors: Counter[str]) -> SourceReading:
        samples = tuple(
            GpuSample(identity, None, GpuHealth.UNAVAILABLE, self._error) for identity in self._known
        )
        return SourceReading(
            gpus=samples, driver_version=self._driver_version, errors=frozen_counts(errors), error=self._error
        )

    def close(self) -> None:
        """Stop the XID thread and release NVML; a read still inside NVML releases it when it returns."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            session, busy = self._session, self._reading
            if not busy:
                self._session = None
        if session is None:
            return
        if busy:
            session.stop_events()
        else:
            session.close()
