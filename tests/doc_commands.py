"""The commands README.md and docs/*.md show, read from their fenced blocks, and checks on their output.

What counts as a command (docs/testing.md says the same for writers):
- In a ```console block (or any block whose first line starts with `$ `), each `$ ` line is a
  command; the lines after it, up to the next `$ `, are output it prints (a subset: each shown
  line must be among the printed ones; `...` lines are left out). `$ echo $?` and a number
  after a command is the exit status it must give; without one, 0.
- In a ```sh, ```shell or ```bash block, each line is a command that must exit 0. Comment and
  blank lines are skipped; a trailing backslash joins the next line, and `if`/`for`/`while`
  ... `fi`/`done` are one command.
- Other blocks (nginx, toml, yaml, json, python, plain text) are not commands.

An HTML comment on the line just above a block sets options for it:
`<!-- doc-test: daemon=hot -->` asks a different daemon, `<!-- doc-test: exact -->` compares
numbers too, and `<!-- doc-test: lines-of=PATH -->` says each line of a non-command block is a line
of the repository file PATH.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHELL_LANGUAGES = frozenset({"sh", "shell", "bash"})
CONSOLE_LANGUAGES = frozenset({"console"})
OPTIONS = frozenset({"daemon", "exact", "lines-of"})

FENCE = re.compile(r"^(?P<indent>\s*)(?P<fence>```+)(?P<info>[^`\s]*)\s*$")
ANNOTATION = re.compile(r"^\s*<!--\s*doc-test:(?P<options>.*?)-->\s*$")
PROMPT = "$ "
EXIT_STATUS = "echo $?"
# Whole numbers, decimals and thousands (1,062): what changes from run to run of a live daemon.
NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
OPENERS = frozenset({"if", "for", "while", "until", "case"})
CLOSERS = frozenset({"fi", "done", "esac"})


def pages() -> list[Path]:
    """README.md and every docs/*.md, the pages whose commands must run."""
    return [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


def page_name(page: Path) -> str:
    return page.relative_to(REPO).as_posix()


@dataclass(frozen=True)
class Block:
    """One fenced block: where it starts (1-based line of its first content line), its lines."""

    page: str
    line: int
    info: str
    lines: tuple[str, ...]
    options: dict[str, str] = field(default_factory=dict)

    @property
    def is_console(self) -> bool:
        first = next((line for line in self.lines if line.strip()), "")
        return self.info in CONSOLE_LANGUAGES or first.startswith(PROMPT)

    @property
    def is_shell(self) -> bool:
        return self.info in SHELL_LANGUAGES and not self.is_console


@dataclass(frozen=True)
class Command:
    """A command a page shows: its text as written, what it must print and exit with."""

    page: str
    line: int
    text: str
    output: tuple[str, ...] = ()
    exit_status: int = 0
    options: dict[str, str] = field(default_factory=dict)

    @property
    def where(self) -> str:
        return f"{self.page}:{self.line}"


def _options(text: str, where: str) -> dict[str, str]:
    options: dict[str, str] = {}
    for item in text.split():
        key, _, value = item.partition("=")
        if key not in OPTIONS:
            known = ", ".join(sorted(OPTIONS))
            raise ValueError(f"{where}: unknown doc-test option {key!r} (known: {known})")
        options[key] = value
    return options


def blocks(page: str, text: str) -> list[Block]:
    """The fenced blocks of a Markdown page, with the options of a doc-test comment just above each."""
    found: list[Block] = []
    lines = text.split("\n")
    index = 0
    while index < len(lines):
        opening = FENCE.match(lines[index])
        if not opening:
            index += 1
            continue
        indent, fence = opening.group("indent"), opening.group("fence")
        previous = lines[index - 1] if index else ""
        annotation = ANNOTATION.match(previous)
        options = _options(annotation.group("options"), f"{page}:{index}") if annotation else {}
        body: list[str] = []
        index += 1
        start = index + 1
        while index < len(lines) and lines[index].strip() != fence:
            line = lines[index]
            body.append(line[len(indent) :] if line.startswith(indent) else line.lstrip())
            index += 1
        if index == len(lines):
            raise ValueError(f"{page}:{start - 1}: the block opened here is never closed")
        found.append(Block(page, start, opening.group("info").lower(), tuple(body), options))
        index += 1
    return found


def _shell_depth(line: str) -> int:
    words = re.split(r"[\s;]+", re.sub(r"(^|\s)#.*$", "", line).strip())
    return sum(word in OPENERS for word in words) - sum(word in CLOSERS for word in words)


def _shell_commands(block: Block) -> list[Command]:
    commands: list[Command] = []
    pending: list[str] = []
    start = 0
    depth = 0
    for offset, raw in enumerate(block.lines):
        line = raw.removeprefix(PROMPT)
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if not pending:
            start = block.line + offset
        pending.append(line)
        depth += _shell_depth(line)
        if line.rstrip().endswith("\\") or depth > 0:
            continue
        commands.append(Command(block.page, start, "\n".join(pending), options=block.options))
        pending, depth = [], 0
    if pending:
        raise ValueError(f"{block.page}:{start}: the command here never ends (a backslash or an open `if`)")
    return commands


@dataclass
class _Shown:
    """A console command being read: its text so far, the output under it, its exit status."""

    line: int
    text: str
    output: list[str] = field(default_factory=list)
    status: int = 0
    status_next: bool = False  # the line after `$ echo $?`: the status
    continued: bool = False  # the text ended in a backslash

    def command(self, block: Block) -> Command:
        output = list(self.output)
        while output and not output[-1].strip():
            output.pop()
        return Command(block.page, self.line, self.text, tuple(output), self.status, block.options)


def _prompt(shown: list[_Shown], text: str, line: int, where: str) -> None:
    """A `$ ` line: a new command, or `echo $?` asking for the exit status of the one before."""
    if text.strip() != EXIT_STATUS:
        shown.append(_Shown(line, text, continued=text.rstrip().endswith("\\")))
    elif not shown:
        raise ValueError(f"{where}: `$ echo $?` with no command before it")
    else:
        shown[-1].status_next = True


def _console_commands(block: Block) -> list[Command]:
    shown: list[_Shown] = []
    for offset, line in enumerate(block.lines):
        where = f"{block.page}:{block.line + offset}"
        current = shown[-1] if shown else None
        if current is not None and current.continued:
            current.text += "\n" + line
            current.continued = line.rstrip().endswith("\\")
        elif line.startswith(PROMPT):
            _prompt(shown, line.removeprefix(PROMPT), block.line + offset, where)
        elif current is None:
            if line.strip():
                raise ValueError(f"{where}: output before any `$ ` command")
        elif current.status_next:
            if not line.strip().isdigit():
                raise ValueError(f"{where}: `$ echo $?` must be followed by the exit status, not {line!r}")
            current.status, current.status_next = int(line), False
        else:
            current.output.append(line)
    if shown and shown[-1].status_next:
        raise ValueError(
            f"{block.page}:{block.line}: `$ echo $?` at the end of a block needs the exit status"
        )
    return [item.command(block) for item in shown]


def commands(page: str, text: str) -> list[Command]:
    """Every command a page shows, in order."""
    found: list[Command] = []
    for block in blocks(page, text):
        if block.is_console:
            found.extend(_console_commands(block))
        elif block.is_shell:
            found.extend(_shell_commands(block))
    return found


def all_commands() -> list[Command]:
    return [command for page in pages() for command in commands(page_name(page), page.read_text("utf-8"))]


def _collapse(line: str) -> str:
    return " ".join(line.split())


def _numbers_free(line: str) -> str:
    return _collapse(NUMBER.sub("N", line))


# A node's address as `gpuwatch fleet` names its row.
ADDRESS = re.compile(r"\S+:\d+")


def _is_row(line: str) -> bool:
    """A table row starting with an index (a GPU's) or an address (a node's): its words move with the load."""
    words = line.split()
    return bool(words) and (words[0].isdigit() or ADDRESS.fullmatch(words[0]) is not None)


def _columns(line: str) -> int:
    """The row's cells: its words, a number and its unit (`12 s`) one cell, as `-` in its place is."""
    words = line.split()
    units = sum(1 for before, word in itertools.pairwise(words) if word == "s" and NUMBER.fullmatch(before))
    return len(words) - units


def missing_lines(shown: tuple[str, ...], printed: str, *, exact: bool = False) -> list[str]:
    """The shown output lines that the printed output lacks.

    A line matches a printed line with runs of blanks taken as one. Unless `exact`, numbers also
    match any numbers (a live daemon's temperatures, powers and pressures move), and a table row
    starting with an index or an address matches any printed row with as many cells (a GPU of
    the live simulation may be idle in one run and busy in the next, heading for slowdown or not).
    """
    printed_lines = printed.replace("\r", "").split("\n")
    as_printed = {_collapse(line) for line in printed_lines}
    numbers_free = {_numbers_free(line) for line in printed_lines}
    row_widths = {_columns(line) for line in printed_lines if _is_row(line)}
    missing = []
    for line in shown:
        if not line.strip() or line.strip() in {"...", "…"}:
            continue
        if _collapse(line) in as_printed:
            continue
        if not exact and (
            _numbers_free(line) in numbers_free or (_is_row(line) and _columns(line) in row_widths)
        ):
            continue
        missing.append(line)
    return missing
