"""Structured log lines on stderr for journald: one line per event, logfmt (default) or JSON."""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
import sys
from collections.abc import Mapping
from typing import Any

FORMATS = ("logfmt", "json")
# Prometheus' spellings; "warning" is read as "warn" too.
LEVELS = ("debug", "info", "warn", "error")
_NUMBERS = {"debug": logging.DEBUG, "info": logging.INFO, "warn": logging.WARNING, "error": logging.ERROR}
_LEVEL_NAMES = {number: name for name, number in _NUMBERS.items()}
# The attribute a record's structured fields travel in (see `fields`).
_FIELDS = "gpuwatch_fields"
# A logfmt value needs quotes when empty or when it holds a space, '=', '"', or a control character.
_NEEDS_QUOTES = re.compile(r'[\s="\\\x00-\x1f\x7f]')


def fields(event: str, **values: object) -> dict[str, object]:
    """`extra=` for a log call: an `event=` name and key=value fields, e.g. `from="ok"`.

    Sequences become comma-joined values; None values are left out.
    """
    return {_FIELDS: {"event": event, **values}}


def logfmt_value(value: object) -> str:
    """`value` as a logfmt value: bare when it can be, else double-quoted with escapes."""
    text = _text(value)
    if text and not _NEEDS_QUOTES.search(text):
        return text
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r")
    escaped = re.sub(r"[\x00-\x08\x0b-\x1f\x7f\t]", lambda m: f"\\u{ord(m.group()):04x}", escaped)
    return f'"{escaped}"'


def _text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple | set | frozenset):
        return ",".join(str(item) for item in value)
    return str(value)


def _timestamp(record: logging.LogRecord) -> str:
    """RFC 3339 UTC with milliseconds, as Prometheus' own logs write it."""
    moment = dt.datetime.fromtimestamp(record.created, tz=dt.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _pairs(record: logging.LogRecord, formatter: logging.Formatter) -> list[tuple[str, object]]:
    """The record as ordered (key, value) pairs: ts, level, logger, event, msg, fields, exc."""
    structured: Mapping[str, object] = getattr(record, _FIELDS, {})
    pairs: list[tuple[str, object]] = [
        ("ts", _timestamp(record)),
        ("level", _LEVEL_NAMES.get(record.levelno, record.levelname.lower())),
        ("logger", record.name),
    ]
    if "event" in structured:
        pairs.append(("event", structured["event"]))
    pairs.append(("msg", record.getMessage()))
    pairs += [(key, value) for key, value in structured.items() if key != "event" and value is not None]
    if record.exc_info:
        pairs.append(("exc", formatter.formatException(record.exc_info)))
    return pairs


class LogfmtFormatter(logging.Formatter):
    """`ts=… level=info logger=gpuwatch.service.daemon event=… msg="…" key=value …` on one line."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as one logfmt line."""
        return " ".join(f"{key}={logfmt_value(value)}" for key, value in _pairs(record, self))


class JsonFormatter(logging.Formatter):
    """One JSON object per line, with the same keys as the logfmt lines."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as one line of JSON."""
        document: dict[str, Any] = {}
        for key, value in _pairs(record, self):
            document[key] = list(value) if isinstance(value, tuple | set | frozenset) else value
        return json.dumps(document, ensure_ascii=False, default=str)


def setup_logging(level: str = "info", log_format: str = "logfmt") -> None:
    """Send every log line to stderr (journald keeps it; no log files) at `level` and above.

    Called again on a reload: replaces the handler, so level and format change live.
    """
    if log_format not in FORMATS:
        raise ValueError(f"log format {log_format!r}: expected one of {', '.join(FORMATS)}")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else LogfmtFormatter())
    logging.basicConfig(level=level_number(level), handlers=[handler], force=True)


def level_number(level: str) -> int:
    """`info` -> logging.INFO; ValueError naming the choices for anything else."""
    name = level.strip().lower()
    if name == "warning":
        name = "warn"
    if name not in LEVELS:
        raise ValueError(f"log level {level!r}: expected one of {', '.join(LEVELS)}")
    return _NUMBERS[name]
