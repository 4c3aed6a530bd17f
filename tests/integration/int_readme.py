"""The configurations README.md and docs/integrations.md show, so the tests run exactly those."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def doc_block(page: str, heading: str, language: str) -> str:
    """The first ```language block under the heading of `page` that starts with `heading`.

    `page` is relative to the repository (README.md, docs/integrations.md); the heading's section
    runs to the next heading of the same level or higher.
    """
    lines = (REPO / page).read_text(encoding="utf-8").split("\n")
    levels = _heading_levels(lines)
    starts = [i for i in levels if re.match(rf"#+ {re.escape(heading)}", lines[i])]
    assert len(starts) == 1, f"{page}: {len(starts)} headings start with {heading!r}; the tests read one"
    level = levels[starts[0]]
    ends = [i for i in levels if i > starts[0] and levels[i] <= level]
    section = lines[starts[0] + 1 : ends[0] if ends else len(lines)]
    block = re.search(rf"```{language}\n(.*?)```", "\n".join(section), re.DOTALL)
    assert block, f"{page}: no {language} block under {heading!r}"
    return block.group(1)


def _heading_levels(lines: list[str]) -> dict[int, int]:
    """Line index -> level of every Markdown heading, leaving out `#` lines inside fenced blocks."""
    levels = {}
    fenced = False
    for index, line in enumerate(lines):
        if line.lstrip().startswith("```"):
            fenced = not fenced
        elif not fenced and (found := re.match(r"(#+) ", line)):
            levels[index] = len(found.group(1))
    return levels


def with_addresses(block: str, replacements: dict[str, str]) -> str:
    """`block` with the page's example addresses replaced; each one must be there."""
    for old, new in replacements.items():
        assert old in block, f"the block lost {old!r}; the test substitutes it"
        block = block.replace(old, new)
    return block
