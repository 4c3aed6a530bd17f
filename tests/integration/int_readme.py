"""The configurations README.md's `## Integrations` shows, so the tests run exactly those."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"


def integration_block(heading: str, language: str) -> str:
    """The first ```language block under the `### heading…` subsection of `## Integrations`."""
    text = README.read_text(encoding="utf-8")
    section = text.split("\n## Integrations\n", 1)[1].split("\n## ", 1)[0]
    subsection = section.split(f"\n### {heading}", 1)[1].split("\n### ", 1)[0]
    found = re.search(rf"```{language}\n(.*?)```", subsection, re.DOTALL)
    assert found, f"README: no {language} block under ### {heading}"
    return found.group(1)


def with_addresses(block: str, replacements: dict[str, str]) -> str:
    """`block` with the README's example addresses replaced; each one must be there."""
    for old, new in replacements.items():
        assert old in block, f"README block lost {old!r}; the test substitutes it"
        block = block.replace(old, new)
    return block
