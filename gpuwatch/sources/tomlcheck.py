"""Checked reading of parsed TOML values: the first bad one raises an error naming file, line and key."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from gpuwatch.sources.tomlkeys import KeyPath, key_name, locate, show_value

_Default = TypeVar("_Default")
# Builds the caller's error type from a message, the key and its line.
ErrorFactory = Callable[..., Exception]


def where(source: str, line: int | None) -> str:
    """`FILE:LINE`, or just `FILE` when the line is unknown."""
    return source if line is None else f"{source}:{line}"


class TomlChecker:
    """Reads values out of parsed TOML tables, raising `error(message, key=, line=)` at the first bad one.

    `ranges` gives each numeric key's (low, high); whole numbers are checked against the same.
    """

    def __init__(
        self, text: str, source: str, ranges: Mapping[str, tuple[float, float]], error: ErrorFactory
    ) -> None:
        self._text = text
        self._source = source
        self._ranges = ranges
        self._error = error

    def fail(self, path: KeyPath, problem: str, value: object = None) -> Exception:
        """An error naming file, line, key and (when given) the value."""
        line = locate(self._text, path)
        got = "" if value is None else f" (got {show_value(value)})"
        key = key_name(path) or "(top level)"
        return self._error(f"{where(self._source, line)}: {key}: {problem}{got}", key=key, line=line)

    def table(self, value: object, path: KeyPath, allowed: tuple[str, ...]) -> dict[str, Any]:
        """`value` as a table with no keys but `allowed`."""
        if not isinstance(value, dict):
            raise self.fail(path, "must be a table", value)
        for key in value:
            if key not in allowed:
                raise self.fail((*path, key), f"unknown key; expected one of {', '.join(allowed)}")
        return value

    def number(self, table: dict[str, Any], path: KeyPath, key: str, default: _Default) -> float | _Default:
        """A finite number within the key's range, or `default` when absent."""
        value = table.get(key)
        if value is None:
            return default
        low, high = self._ranges[key]
        ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
        if not ok or not low <= value <= high:
            raise self.fail((*path, key), f"must be a number from {low:g} to {high:g}", value)
        return float(value)

    def integer(self, table: dict[str, Any], path: KeyPath, key: str, default: _Default) -> int | _Default:
        """A whole number within the key's range, or `default` when absent."""
        value = table.get(key)
        if value is None:
            return default
        low, high = self._ranges[key]
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise self.fail((*path, key), f"must be a whole number from {low:g} to {high:g}", value)
        return value

    def array(self, data: dict[str, Any], key: str) -> list[Any]:
        """An array of tables, empty when absent."""
        value = data.get(key, [])
        if not isinstance(value, list):
            raise self.fail((key,), f"must be an array of tables ([[{key}]])", value)
        return value

    def string(self, table: dict[str, Any], path: KeyPath, key: str, default: _Default) -> str | _Default:
        """A string, or `default` when absent."""
        value = table.get(key)
        if value is None:
            return default
        if not isinstance(value, str):
            raise self.fail((*path, key), "must be a string in quotes", value)
        return value

    def boolean(self, table: dict[str, Any], path: KeyPath, key: str, default: _Default) -> bool | _Default:
        """A boolean (true or false), or `default` when absent."""
        value = table.get(key)
        if value is None:
            return default
        if not isinstance(value, bool):
            raise self.fail((*path, key), "must be true or false", value)
        return value

    def strings(
        self, table: dict[str, Any], path: KeyPath, key: str, default: _Default
    ) -> tuple[str, ...] | _Default:
        """An array of strings, or `default` when absent."""
        value = table.get(key)
        if value is None:
            return default
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            raise self.fail((*path, key), 'must be an array of strings, e.g. ["a", "b"]', value)
        return tuple(value)
