"""Names TOML keys and finds the lines they are written on, for errors that cite file:line key."""

from __future__ import annotations

import json
import re
import tomllib

KeyPath = tuple[str | int, ...]

_HEADER = re.compile(r"^\s*\[")


def key_name(path: KeyPath) -> str:
    """A key path as people write it: `events[1].cooling_factor`."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


def show_value(value: object) -> str:
    """A value as TOML would spell it, where JSON agrees (strings quoted, true/false)."""
    try:
        return json.dumps(value)
    except TypeError:
        return repr(value)


def decode_error_line(error: tomllib.TOMLDecodeError) -> int | None:
    """The 1-based line tomllib names in its message, or None."""
    found = re.search(r"at line (\d+)", str(error))
    return int(found.group(1)) if found else None


def locate(text: str, path: KeyPath) -> int | None:
    """The 1-based line where `path` is written, else the line of its table, else None.

    tomllib reports no lines for values it accepted, so the line is found by looking for the key.
    """
    lines = text.splitlines()
    start, end, found = 0, len(lines), None
    for position, part in enumerate(path):
        if isinstance(part, int):
            continue
        is_array = position + 1 < len(path) and isinstance(path[position + 1], int)
        if position + 1 < len(path):
            header = _find_header(lines, part, path[position + 1] if is_array else None)
            if header is not None:
                start, found = header + 1, header + 1
                end = next((i for i in range(start, len(lines)) if _HEADER.match(lines[i])), len(lines))
                continue
        assignment = re.compile(rf'^\s*"?{re.escape(part)}"?\s*[=.]')  # `key =` or dotted `key.sub =`
        line = next((i for i in range(start, end) if assignment.match(lines[i])), None)
        if line is None and position == len(path) - 1:
            # A whole table: point at its header, `[part]` or the first `[[part]]`.
            tables = (_find_header(lines, part, None), _find_header(lines, part, 0))
            line = next((i for i in tables if i is not None), None)
        return found if line is None else line + 1
    return found


def _find_header(lines: list[str], name: str, index: str | int | None) -> int | None:
    """The 0-based line of `[name]`, or of the `index`-th `[[name]]` when an index is given."""
    if index is None:
        pattern = re.compile(rf"^\s*\[\s*{re.escape(name)}\s*\]")
        return next((i for i, line in enumerate(lines) if pattern.match(line)), None)
    pattern = re.compile(rf"^\s*\[\[\s*{re.escape(name)}\s*\]\]")
    headers = [i for i, line in enumerate(lines) if pattern.match(line)]
    return headers[int(index)] if int(index) < len(headers) else None
