"""Snapshots to and from plain JSON-able dicts, for `status --json` and recordings."""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping
from typing import Any, TypeVar

from gpuwatch.sources.model import (
    GpuHealth,
    GpuIdentity,
    GpuReading,
    GpuSample,
    RecoveryAction,
    SampleHealth,
    SlowdownCounters,
    Snapshot,
    ThermalLimits,
    ThermalScale,
    frozen_counts,
    reason_words,
)

SCHEMA_VERSION = 1

JsonDict = dict[str, Any]
_T = TypeVar("_T")


class CodecError(ValueError):
    """A dict does not describe a snapshot; the message names the bad key."""


def _plain(obj: object) -> JsonDict:
    """A flat dataclass as a dict, enums as their values, mappings as dicts."""
    out: JsonDict = {}
    for f in dataclasses.fields(obj):  # type: ignore[arg-type]
        value = getattr(obj, f.name)
        if isinstance(value, Mapping):
            value = dict(value)
        elif dataclasses.is_dataclass(value):
            value = _plain(value)
        out[f.name] = value.value if isinstance(value, enum.Enum) else value
    return out


def reading_to_dict(reading: GpuReading) -> JsonDict:
    """A reading as a dict; adds the active clock-event reasons in words for people and jq."""
    out = _plain(reading)
    if reading.recovery_action is not None:
        out["recovery_action"] = reading.recovery_action.name.lower()
    mask = reading.clock_event_reasons
    out["clock_event_reason_words"] = None if mask is None else list(reason_words(mask))
    return out


def sample_to_dict(sample: GpuSample) -> JsonDict:
    """A GPU sample as a dict."""
    return {
        "identity": _plain(sample.identity),
        "reading": None if sample.reading is None else reading_to_dict(sample.reading),
        "health": sample.health.value,
        "error": sample.error,
        "xid_errors": dict(sample.xid_errors),
        "last_xid": sample.last_xid,
    }


def snapshot_to_dict(snapshot: Snapshot) -> JsonDict:
    """A snapshot as a dict that `snapshot_from_dict` turns back into an equal snapshot."""
    return {
        "schema_version": SCHEMA_VERSION,
        "sequence": snapshot.sequence,
        "taken_at": snapshot.taken_at,
        "monotonic": snapshot.monotonic,
        "source": snapshot.source,
        "driver_version": snapshot.driver_version,
        "health": _plain(snapshot.health),
        "gpus": [sample_to_dict(g) for g in snapshot.gpus],
    }


def _build(cls: type[_T], data: object, where: str, **nested: object) -> _T:
    """Construct dataclass `cls` from `data`, naming the unknown or missing key on failure."""
    if not isinstance(data, Mapping):
        msg = f"{where}: expected an object, got {type(data).__name__}"
        raise CodecError(msg)
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    kwargs = {k: v for k, v in data.items() if k in names}
    kwargs.update(nested)
    try:
        return cls(**kwargs)
    except TypeError as exc:
        msg = f"{where}: {exc}"
        raise CodecError(msg) from exc


def _identity_from(data: Mapping[str, Any], where: str) -> GpuIdentity:
    limits = data.get("thermal_limits")
    nested: dict[str, object] = {}
    if limits is not None:
        scale = ThermalScale(limits.get("scale", ThermalScale.PROFILE))
        nested["thermal_limits"] = _build(ThermalLimits, limits, f"{where}.thermal_limits", scale=scale)
    return _build(GpuIdentity, data, where, **nested)


def _reading_from(data: Mapping[str, Any], where: str) -> GpuReading:
    counters = _build(SlowdownCounters, data.get("slowdown_counters") or {}, f"{where}.slowdown_counters")
    nested: dict[str, object] = {"slowdown_counters": counters}
    action = data.get("recovery_action")
    if action is not None:
        try:
            nested["recovery_action"] = RecoveryAction[str(action).upper()]
        except KeyError as exc:
            msg = f"{where}.recovery_action: unknown action {action!r}"
            raise CodecError(msg) from exc
    return _build(GpuReading, data, where, **nested)


def sample_from_dict(data: Mapping[str, Any], where: str = "gpu") -> GpuSample:
    """The inverse of `sample_to_dict`."""
    try:
        identity = _identity_from(data["identity"], f"{where}.identity")
        raw_reading = data.get("reading")
        reading = None if raw_reading is None else _reading_from(raw_reading, f"{where}.reading")
        return GpuSample(
            identity=identity,
            reading=reading,
            health=GpuHealth(data.get("health", GpuHealth.OK)),
            error=data.get("error"),
            xid_errors=frozen_counts({str(k): int(v) for k, v in (data.get("xid_errors") or {}).items()}),
            last_xid=data.get("last_xid"),
        )
    except KeyError as exc:
        msg = f"{where}: missing key {exc}"
        raise CodecError(msg) from exc
    except ValueError as exc:
        if isinstance(exc, CodecError):
            raise
        msg = f"{where}: {exc}"
        raise CodecError(msg) from exc


def snapshot_from_dict(data: Mapping[str, Any]) -> Snapshot:
    """The inverse of `snapshot_to_dict`; raises CodecError naming what is wrong."""
    version = data.get("schema_version")
    if version != SCHEMA_VERSION:
        msg = f"schema_version: expected {SCHEMA_VERSION}, got {version!r}"
        raise CodecError(msg)
    raw_health = dict(data.get("health") or {})
    for key in ("failures", "dropped_values"):
        raw_health[key] = frozen_counts(raw_health.get(key))
    try:
        gpus = tuple(sample_from_dict(g, f"gpus[{i}]") for i, g in enumerate(data["gpus"]))
        return Snapshot(
            sequence=int(data["sequence"]),
            taken_at=float(data["taken_at"]),
            monotonic=float(data["monotonic"]),
            source=str(data["source"]),
            gpus=gpus,
            health=_build(SampleHealth, raw_health, "health"),
            driver_version=data.get("driver_version"),
        )
    except KeyError as exc:
        msg = f"missing key {exc}"
        raise CodecError(msg) from exc
