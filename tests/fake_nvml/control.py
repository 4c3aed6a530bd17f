"""A typed wrapper over the fake NVML library's `fake_*` control functions, called through ctypes."""

from __future__ import annotations

import ctypes
import os
import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import MappingProxyType

from fake_nvml.profiles import MIB, SkuProfile

# nvmlReturn_t values from nvml.h, by the names gpuwatch reports them under.
RETURN_CODES: Mapping[str, int] = MappingProxyType(
    {
        "SUCCESS": 0,
        "UNINITIALIZED": 1,
        "INVALID_ARGUMENT": 2,
        "NOT_SUPPORTED": 3,
        "NO_PERMISSION": 4,
        "DRIVER_NOT_LOADED": 9,
        "TIMEOUT": 10,
        "GPU_IS_LOST": 15,
        "RESET_REQUIRED": 16,
        "LIB_RM_VERSION_MISMATCH": 18,
        "DEPRECATED": 26,
        "UNKNOWN": 999,
    }
)

# nvmlValueType_t
DOUBLE, UNSIGNED_INT, UNSIGNED_LONG, UNSIGNED_LONG_LONG, SIGNED_LONG_LONG, SIGNED_INT = range(6)

# nvmlTemperatureThresholds_t
THRESHOLDS: Mapping[str, int] = MappingProxyType(
    {"shutdown": 0, "slowdown": 1, "memory_max": 2, "gpu_max": 3}
)

# NVML_FI_DEV_* ids, and the value type a real driver answers each with.
FIELD_ECC_CORRECTED_VOLATILE = 3
FIELD_ECC_UNCORRECTED_VOLATILE = 4
FIELD_SW_POWER_CAP_NS = 74
FIELD_SYNC_BOOST_NS = 76
FIELD_MEMORY_TEMP = 82
FIELD_PCIE_REPLAY_COUNTER = 94
FIELD_TLIMIT_SHUTDOWN = 193
FIELD_TLIMIT_SLOWDOWN = 194
FIELD_TLIMIT_MEMORY_MAX = 195
FIELD_TLIMIT_GPU_MAX = 196
FIELD_RECOVERY_ACTION = 230
FIELD_SW_THERMAL_SLOWDOWN_NS = 269
FIELD_HW_THERMAL_SLOWDOWN_NS = 270
FIELD_HW_POWER_BRAKE_NS = 271
FIELD_VALUE_TYPES: Mapping[int, int] = MappingProxyType(
    {
        FIELD_MEMORY_TEMP: UNSIGNED_INT,
        FIELD_PCIE_REPLAY_COUNTER: UNSIGNED_INT,
        FIELD_RECOVERY_ACTION: UNSIGNED_INT,
        FIELD_TLIMIT_SHUTDOWN: SIGNED_INT,
        FIELD_TLIMIT_SLOWDOWN: SIGNED_INT,
        FIELD_TLIMIT_MEMORY_MAX: SIGNED_INT,
        FIELD_TLIMIT_GPU_MAX: SIGNED_INT,
    }
)

_c_int, _c_uint, _c_ll, _c_ull, _c_str = (
    ctypes.c_int,
    ctypes.c_uint,
    ctypes.c_longlong,
    ctypes.c_ulonglong,
    ctypes.c_char_p,
)
_SIGNATURES: Mapping[str, tuple[object, list[object]]] = MappingProxyType(
    {
        "fake_attach": (_c_int, [_c_str]),
        "fake_reset": (None, []),
        "fake_set_device_count": (_c_int, [_c_uint]),
        "fake_set_driver_version": (_c_int, [_c_str]),
        "fake_set_identity": (_c_int, [_c_int, _c_str, _c_str, _c_str]),
        "fake_set_value": (_c_int, [_c_int, _c_str, _c_ll]),
        "fake_set_threshold": (_c_int, [_c_int, _c_int, _c_uint, _c_int]),
        "fake_set_field": (_c_int, [_c_int, _c_uint, _c_int, _c_ll, ctypes.c_double]),
        "fake_set_field_return": (_c_int, [_c_int, _c_uint, _c_int]),
        "fake_field_requests": (_c_ll, [_c_int, _c_uint]),
        "fake_set_return": (_c_int, [_c_int, _c_str, _c_int]),
        "fake_set_device_return": (_c_int, [_c_int, _c_int]),
        "fake_set_global_return": (None, [_c_int]),
        "fake_set_init_return": (None, [_c_int]),
        "fake_block": (_c_int, [_c_int, _c_str, _c_int]),
        "fake_release_all": (None, []),
        "fake_calls": (_c_ll, [_c_int, _c_str]),
        "fake_inject_xid": (_c_int, [_c_int, _c_ull, _c_uint]),
        "fake_xid_capacity": (_c_ull, []),
        "fake_is_old_driver": (_c_int, []),
    }
)

_loaded: dict[Path, ctypes.CDLL] = {}


class FakeNvmlError(RuntimeError):
    """A control call was refused (unknown function, key or GPU index)."""


def load_library(path: Path) -> ctypes.CDLL:
    """Load the fake once per process by absolute path, so pynvml's later dlopen reuses it by SONAME."""
    path = path.resolve()
    if path not in _loaded:
        library = ctypes.CDLL(str(path))
        for name, (restype, argtypes) in _SIGNATURES.items():
            function = getattr(library, name)
            function.restype = restype
            function.argtypes = argtypes
        _loaded[path] = library
    return _loaded[path]


def _code(code: str | int) -> int:
    if isinstance(code, int):
        return code
    if code not in RETURN_CODES:
        raise FakeNvmlError(f"unknown NVML return code name {code!r}")
    return RETURN_CODES[code]


def fake_uuid(index: int, profile: SkuProfile) -> str:
    """A stable, well-formed UUID per GPU slot and model."""
    return f"GPU-fa4e{index:04x}-0000-4000-8000-{zlib.crc32(profile.name.encode()):012x}"


def fake_pci_bus_id(index: int) -> str:
    """A PCI bus id per slot, spaced like an 8-GPU HGX board's."""
    return f"00000000:{0x18 + 0x11 * index:02X}:00.0"


class FakeNvml:
    """Steers the fake library: the state of every GPU, injected failures, blocks and XID events.

    `library` is the build loaded into this process; `libraries` maps each variant to its path, so
    `env()` can point a subprocess at any of them while this process controls the same state file.
    """

    def __init__(self, library: Path, libraries: Mapping[str, Path], state_path: Path) -> None:
        self._lib = load_library(library)
        self.libraries = dict(libraries)
        self.state_path = state_path
        self._check(self._lib.fake_attach(str(state_path).encode()), f"attach to {state_path}")

    def env(self, variant: str = "full", base: Mapping[str, str] | None = None) -> dict[str, str]:
        """Environment for a subprocess that should load `variant` and share this state."""
        env = dict(os.environ if base is None else base)
        env["LD_LIBRARY_PATH"] = str(self.libraries[variant].parent)
        env["FAKE_NVML_STATE"] = str(self.state_path)
        return env

    @staticmethod
    def _check(result: int, what: str) -> None:
        if result < 0:
            raise FakeNvmlError(f"fake NVML refused to {what} (result {result})")

    @staticmethod
    def _row(gpu: int | None) -> int:
        return -1 if gpu is None else gpu

    def reset(self) -> None:
        """Back to no GPUs, nothing injected, counters at zero."""
        self._lib.fake_reset()

    def set_gpu_count(self, count: int) -> None:
        """How many GPUs nvmlDeviceGetCount_v2 reports."""
        self._check(self._lib.fake_set_device_count(count), f"set {count} GPUs")

    def set_driver_version(self, version: str) -> None:
        """What nvmlSystemGetDriverVersion answers."""
        self._check(self._lib.fake_set_driver_version(version.encode()), f"set driver {version}")

    def set_identity(self, gpu: int, name: str, uuid: str, pci_bus_id: str) -> None:
        """Name, UUID and PCI bus id of one GPU."""
        result = self._lib.fake_set_identity(gpu, name.encode(), uuid.encode(), pci_bus_id.encode())
        self._check(result, f"set the identity of GPU {gpu}")

    def set(self, gpu: int, key: str, value: int) -> None:
        """One scalar in NVML's unit (e.g. "power_mw", "temperature_c"; see value_keys in the C)."""
        self._check(self._lib.fake_set_value(gpu, key.encode(), value), f"set {key} on GPU {gpu}")

    def set_threshold(self, gpu: int, which: str, value_c: int | None) -> None:
        """An absolute temperature threshold; None makes it NOT_SUPPORTED."""
        code = RETURN_CODES["NOT_SUPPORTED"] if value_c is None else 0
        result = self._lib.fake_set_threshold(gpu, THRESHOLDS[which], value_c or 0, code)
        self._check(result, f"set threshold {which} on GPU {gpu}")

    def set_field(self, gpu: int, field_id: int, value: float, value_type: int | None = None) -> None:
        """A field value answered with SUCCESS, typed as a real driver types that field."""
        kind = FIELD_VALUE_TYPES.get(field_id, UNSIGNED_LONG_LONG) if value_type is None else value_type
        as_int = 0 if kind == DOUBLE else int(value)
        result = self._lib.fake_set_field(gpu, field_id, kind, as_int, float(value))
        self._check(result, f"set field {field_id} on GPU {gpu}")

    def set_field_return(self, gpu: int, field_id: int, code: str | int) -> None:
        """The nvmlReturn one field answers with (the call itself still succeeds)."""
        self._check(self._lib.fake_set_field_return(gpu, field_id, _code(code)), f"fail field {field_id}")

    def field_requests(self, gpu: int, field_id: int) -> int:
        """How often a caller asked GPU `gpu` for field `field_id`."""
        return int(self._lib.fake_field_requests(gpu, field_id))

    def set_return(self, gpu: int | None, function: str, code: str | int) -> None:
        """Make `function` (C symbol) return `code` on one GPU, or for gpu None on device-less calls."""
        result = self._lib.fake_set_return(self._row(gpu), function.encode(), _code(code))
        self._check(result, f"inject {code} into {function}")

    def set_gpu_return(self, gpu: int, code: str | int) -> None:
        """Every call on one GPU returns `code` (GPU_IS_LOST: it fell off the bus)."""
        self._check(self._lib.fake_set_device_return(gpu, _code(code)), f"fail GPU {gpu}")

    def set_global_return(self, code: str | int) -> None:
        """Every call returns `code`, as when the driver is unloaded; SUCCESS undoes it."""
        self._lib.fake_set_global_return(_code(code))

    def set_init_return(self, code: str | int) -> None:
        """What nvmlInitWithFlags returns."""
        self._lib.fake_set_init_return(_code(code))

    def block(self, gpu: int | None, function: str) -> None:
        """Calls of `function` on `gpu` sleep (polling every ~1 ms) until `release`."""
        self._check(self._lib.fake_block(self._row(gpu), function.encode(), 1), f"block {function}")

    def release(self, gpu: int | None, function: str) -> None:
        """Let blocked calls of `function` on `gpu` proceed."""
        self._check(self._lib.fake_block(self._row(gpu), function.encode(), 0), f"release {function}")

    def release_all(self) -> None:
        """Lift every block."""
        self._lib.fake_release_all()

    def calls(self, gpu: int | None, function: str) -> int:
        """How often `function` was called on `gpu` (None: device-less calls), failures included."""
        count = int(self._lib.fake_calls(self._row(gpu), function.encode()))
        self._check(count, f"count calls of {function}")
        return count

    def inject_xid(self, gpu: int, xid: int, count: int = 1) -> None:
        """Raise `count` XID events on one GPU."""
        self._check(self._lib.fake_inject_xid(gpu, xid, count), f"inject XID {xid} on GPU {gpu}")

    @property
    def xid_capacity(self) -> int:
        """How many undelivered XID events the fake driver keeps before dropping the oldest."""
        return int(self._lib.fake_xid_capacity())

    def install(self, profiles: Sequence[SkuProfile]) -> None:
        """A node with one GPU per profile, in order; the driver version is the first profile's."""
        self.set_gpu_count(len(profiles))
        if profiles:
            self.set_driver_version(profiles[0].driver_version)
        for index, profile in enumerate(profiles):
            self.configure_gpu(index, profile)

    def configure_gpu(self, gpu: int, profile: SkuProfile) -> None:
        """Give one GPU every value of a SKU profile."""
        self.set_identity(gpu, profile.name, fake_uuid(gpu, profile), fake_pci_bus_id(gpu))
        for key, value in _scalars(profile).items():
            self.set(gpu, key, value)
        self._configure_thermal(gpu, profile)
        self.set_field(gpu, FIELD_MEMORY_TEMP, profile.memory_temperature_c)
        self.set_field(gpu, FIELD_PCIE_REPLAY_COUNTER, profile.pcie_replays)
        for counter in (FIELD_SW_POWER_CAP_NS, FIELD_SYNC_BOOST_NS, FIELD_SW_THERMAL_SLOWDOWN_NS):
            self.set_field(gpu, counter, 0)
        for counter in (FIELD_HW_THERMAL_SLOWDOWN_NS, FIELD_HW_POWER_BRAKE_NS):
            self.set_field(gpu, counter, 0)
        for ecc in (FIELD_ECC_CORRECTED_VOLATILE, FIELD_ECC_UNCORRECTED_VOLATILE):
            self.set_field(gpu, ecc, 0)
        if profile.recovery_action is None:
            self.set_field_return(gpu, FIELD_RECOVERY_ACTION, "NOT_SUPPORTED")
        else:
            self.set_field(gpu, FIELD_RECOVERY_ACTION, profile.recovery_action)

    def _configure_thermal(self, gpu: int, profile: SkuProfile) -> None:
        margin_code = "NOT_SUPPORTED" if profile.margin_c is None else "SUCCESS"
        self.set_return(gpu, "nvmlDeviceGetMarginTemperature", margin_code)
        self.set(gpu, "margin_c", profile.margin_c or 0)
        tlimit = profile.tlimit
        tlimit_fields = (
            FIELD_TLIMIT_SHUTDOWN,
            FIELD_TLIMIT_SLOWDOWN,
            FIELD_TLIMIT_MEMORY_MAX,
            FIELD_TLIMIT_GPU_MAX,
        )
        offsets = (
            (None,) * 4
            if tlimit is None
            else (tlimit.shutdown_c, tlimit.slowdown_c, tlimit.memory_max_c, tlimit.gpu_max_c)
        )
        for field_id, offset in zip(tlimit_fields, offsets, strict=True):
            if offset is None:
                self.set_field_return(gpu, field_id, "NOT_SUPPORTED")
            else:
                self.set_field(gpu, field_id, offset)
        absolute = profile.thresholds
        for which in THRESHOLDS:
            self.set_threshold(gpu, which, None if absolute is None else getattr(absolute, f"{which}_c"))


def _scalars(profile: SkuProfile) -> dict[str, int]:
    """The profile's scalar values under the C library's keys, in NVML's units."""
    return {
        "temperature_c": profile.temperature_c,
        "power_mw": profile.power_mw,
        "enforced_limit_mw": profile.power_limit_mw,
        "default_limit_mw": profile.default_limit_mw,
        "min_limit_mw": profile.min_limit_mw,
        "max_limit_mw": profile.max_limit_mw,
        "energy_mj": 0,
        "utilization_gpu_pct": profile.utilization_gpu_pct,
        "utilization_memory_pct": profile.utilization_memory_pct,
        "memory_total_bytes": profile.memory_total_mib * MIB,
        "memory_used_bytes": profile.memory_used_mib * MIB,
        "memory_free_bytes": profile.memory_free_mib * MIB,
        "sm_clock_mhz": profile.sm_clock_mhz,
        "memory_clock_mhz": profile.memory_clock_mhz,
        "max_sm_clock_mhz": profile.max_sm_clock_mhz,
        "max_memory_clock_mhz": profile.max_memory_clock_mhz,
        "clock_event_reasons": profile.clock_event_reasons,
        "pstate": profile.pstate,
        "violation_power_ns": 0,
        "violation_thermal_ns": 0,
    }
