"""Numbered lines of a text file, flagging the last one and whether it was cut mid-line."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

# How readers report a line they skip (a cut final line): a sentence naming file and line.
Warn = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class NumberedLine:
    """One non-blank line, without its line end."""

    number: int  # 1-based, counting blank lines too, as editors do
    text: str
    complete: bool  # ended with a line break; writers end every line, so False means cut
    last: bool  # no non-blank line follows


def numbered_lines(lines: Iterable[str]) -> Iterator[NumberedLine]:
    """The non-blank lines of `lines` (line ends kept, as a text file yields them), numbered."""
    previous: NumberedLine | None = None
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        if previous is not None:
            yield previous
        previous = NumberedLine(number, raw.rstrip("\r\n"), raw.endswith("\n"), last=False)
    if previous is not None:
        yield NumberedLine(previous.number, previous.text, previous.complete, last=True)
