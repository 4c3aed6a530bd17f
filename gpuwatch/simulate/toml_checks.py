"""Checked reading of parsed TOML values for scenario files: every error names the file, line and key."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gpuwatch.simulate.scenario import ScenarioError
from gpuwatch.sources.tomlcheck import TomlChecker
from gpuwatch.sources.tomlkeys import KeyPath


class ScenarioChecker(TomlChecker):
    """The shared TOML checker, raising ScenarioError, plus what only simulate scenarios have."""

    def __init__(self, text: str, source: str, ranges: Mapping[str, tuple[float, float]]) -> None:
        super().__init__(text, source, ranges, ScenarioError)

    def text(self, table: dict[str, Any], path: KeyPath, key: str, default: str) -> str:
        """A string, or `default` when absent."""
        value = table.get(key, default)
        if not isinstance(value, str):
            raise self.fail((*path, key), "must be a string in quotes", value)
        return value

    def array(self, data: dict[str, Any], key: str) -> list[Any]:
        """An array of tables, empty when absent."""
        value = data.get(key, [])
        if not isinstance(value, list):
            raise self.fail((key,), f"must be an array of tables ([[{key}]])", value)
        return value

    def indexes(self, table: dict[str, Any], path: KeyPath, key: str, count: int) -> tuple[int, ...] | None:
        """A non-empty list of distinct indexes below `count`, or None when absent."""
        value = table.get(key)
        if value is None:
            return None
        ok = isinstance(value, list) and bool(value) and len(set(map(repr, value))) == len(value)
        if not ok or not all(type(i) is int and 0 <= i < count for i in value):
            raise self.fail(
                (*path, key), f"must be a non-empty list of distinct indexes from 0 to {count - 1}", value
            )
        return tuple(value)
