"""Parsers for single values of nvidia-smi --query-gpu CSV: numbers with units, flags, masks, times."""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Callable

from gpuwatch.sources.model import RecoveryAction

ValueParser = Callable[[str], object]


class BadValueError(ValueError):
    """A CSV value that does not parse as its column's type; the message says what was expected."""


# What nvidia-smi writes where it has no value, with or without brackets. Any other bracketed text
# ("[GPU requires reset]", "[Insufficient Permissions]") is also a reason in place of a value.
_NO_VALUE = frozenset(
    {"", "n/a", "not supported", "unknown error", "requested functionality has been deprecated"}
)
_NUMBER = re.compile(r"([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*([A-Za-z%]*)")
_PSTATE = re.compile(r"P(\d{1,2})")
_TIMESTAMP = re.compile(r"(\d{4})/(\d{2})/(\d{2}) (\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,6}))?")
_TRUE_WORDS = frozenset({"active", "enabled", "yes", "on"})
_FALSE_WORDS = frozenset({"not active", "disabled", "no", "off"})
# nvidia-smi prints recovery actions as short phrases ("None", "Reset", "Reboot", "Drain P2P",
# "Drain and Reset"); NVML's enum names are accepted too. Keys are lowercase letters and digits.
_RECOVERY_WORDS = {action.name.lower().replace("_", ""): action for action in RecoveryAction} | {
    "reset": RecoveryAction.GPU_RESET,
    "reboot": RecoveryAction.NODE_REBOOT,
}


def is_missing(text: str) -> bool:
    """True where nvidia-smi wrote a placeholder ([N/A], [Not Supported], ...) instead of a value."""
    value = text.strip()
    return value.lower() in _NO_VALUE or (value.startswith("[") and value.endswith("]"))


def number(unit: str = "", scale: float = 1.0) -> Callable[[str], float | None]:
    """A parser for a number written bare or with `unit` ("69.85 W", "69.85"), times `scale`."""

    def parse(text: str) -> float | None:
        if is_missing(text):
            return None
        match = _NUMBER.fullmatch(text.strip())
        if match is None or match.group(2) not in ("", unit):
            expected = f"a number in {unit}" if unit else "a number"
            raise BadValueError(f"expected {expected}, got {text.strip()!r}")
        value = float(match.group(1)) * scale
        if not math.isfinite(value):
            raise BadValueError(f"expected a finite number, got {text.strip()!r}")
        return value

    return parse


def whole(unit: str = "", scale: int = 1) -> Callable[[str], int | None]:
    """A parser for a whole number, optionally with `unit` ("81559 MiB"), times `scale`."""
    parse_number = number(unit)

    def parse(text: str) -> int | None:
        value = parse_number(text)
        if value is None:
            return None
        if not value.is_integer():
            raise BadValueError(f"expected a whole number, got {text.strip()!r}")
        return int(value) * scale

    return parse


def text_value(text: str) -> str | None:
    """A free-text value (name, uuid, bus id, driver version), None where missing."""
    return None if is_missing(text) else text.strip()


def flag(text: str) -> bool | None:
    """`Active`/`Not Active`, `Enabled`/`Disabled`, `Yes`/`No` as True/False."""
    if is_missing(text):
        return None
    word = text.strip().lower()
    if word in _TRUE_WORDS:
        return True
    if word in _FALSE_WORDS:
        return False
    raise BadValueError(f"expected Active/Not Active, Enabled/Disabled or Yes/No, got {text.strip()!r}")


def mask(text: str) -> int | None:
    """A bitmask written in hex ("0x0000000000000001") or decimal."""
    if is_missing(text):
        return None
    value = text.strip()
    try:
        return int(value, 16 if value.lower().startswith("0x") else 10)
    except ValueError:
        raise BadValueError(f"expected a hex bitmask like 0x0000000000000001, got {value!r}") from None


def pstate(text: str) -> int | None:
    """A performance state "P0".."P15" as its number."""
    if is_missing(text):
        return None
    match = _PSTATE.fullmatch(text.strip())
    if match is None:
        raise BadValueError(f"expected a performance state like P0, got {text.strip()!r}")
    return int(match.group(1))


def recovery_action(text: str) -> RecoveryAction | None:
    """A GPU recovery action ("None", "Reset", "Drain P2P", ...)."""
    if is_missing(text):
        return None
    key = "".join(char for char in text.lower() if char.isalnum())
    if key in _RECOVERY_WORDS:
        return _RECOVERY_WORDS[key]
    try:
        return RecoveryAction(int(key))
    except ValueError:
        raise BadValueError(
            f"expected a GPU recovery action like None or Reset, got {text.strip()!r}"
        ) from None


def timestamp(text: str) -> float:
    """An nvidia-smi timestamp "YYYY/MM/DD HH:MM:SS.mmm" as seconds.

    The file does not say its time zone; it is read as UTC so that differences between rows are
    never bent by a daylight-saving change. Only those differences are used.
    """
    match = _TIMESTAMP.fullmatch(text.strip())
    if match is None:
        raise BadValueError(f"expected a timestamp like 2025/07/26 23:32:09.703, got {text.strip()!r}")
    year, month, day, hour, minute, second = (int(part) for part in match.groups()[:6])
    micros = int((match.group(7) or "0").ljust(6, "0"))
    try:
        moment = dt.datetime(year, month, day, hour, minute, second, micros, tzinfo=dt.UTC)
    except ValueError as exc:
        raise BadValueError(f"impossible timestamp {text.strip()!r}: {exc}") from None
    return moment.timestamp()
