"""Every command README.md and docs/*.md show is run here, or listed in SKIPPED with the reason.

The pages cannot drift from the code: each command runs as a page shows it (`bash -c`), in a
scratch directory that links the checkout's bench/, dashboards/, systemd/, tests/ and .venv, with
`gpuwatch` on PATH. Commands ask real `gpuwatch serve` daemons on simulated GPUs: the one the
README's first command starts (its `gpuwatch serve` part, on free loopback ports), or the hot node
a block names with `<!-- doc-test: daemon=hot -->`. The documented addresses (localhost:9478,
127.0.0.1:9479, /tmp/gpuwatch) are rewritten to that daemon's, and GPUWATCH_URL names it; port
9488 is the hot node's wherever it is written (DOCUMENTED_PORTS). Each
command must exit as the page says (`$ echo $?`, else 0) and print the output lines the page
shows (tests/doc_commands.py says how lines match). A new command on a page is run as soon as
it is written; one that cannot run here must be added to SKIPPED, saying why.
"""

from __future__ import annotations

import ctypes.util
import http.client
import os
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from doc_commands import (
    REPO,
    Command,
    all_commands,
    blocks,
    commands,
    missing_lines,
    page_name,
    pages,
)
from sim_nodes import HOT_GUARDS, HOT_NODE

# Commands that are not run, as (pattern the whole command matches, why). Every entry must match
# some command on the pages, so a command that goes away takes its entry with it.
SKIPPED: tuple[tuple[str, str], ...] = (
    (
        r"python3 -m venv \.venv && \.venv/bin/pip install -q \. && \.venv/bin/gpuwatch serve .*",
        (
            "installs from PyPI (network) and serves until Ctrl-C; its `gpuwatch serve` part is the "
            "daemon every other command here asks"
        ),
    ),
    (r"bash tests/run.*", "the whole suite, this test included; installs Debian packages as root"),
    (r"\.venv/bin/python -m pytest -q tests/test_docs_commands\.py", "this very test"),
    # docs/operations.md: installing the service needs root, systemd and a GPU host.
    (r"python3 -m venv /opt/gpuwatch", "installs into /opt, as root on a GPU host"),
    (r"/opt/gpuwatch/bin/pip install .*", "installs into /opt from PyPI (network), as root"),
    (r"install -[dm] .*", "writes /etc and /usr/lib, as root"),
    (r"systemd-sysusers gpuwatch\.conf", "creates the system user, as root"),
    (
        r"apt install \./gpuwatch_.*\.deb",
        "installs the package as root on a GPU host; tests/packaging installs it into a fresh Debian root",
    ),
    (
        r"dnf install \./gpuwatch-.*\.rpm",
        "the RHEL family's installer; tests/packaging installs the .rpm with rpm --root",
    ),
    (r"bash packaging/build .*", "builds both packages (PyPI, a minute); tests/packaging runs it"),
    (r"systemctl .*", "needs systemd running the installed unit"),
    (r"journalctl .*", "reads the installed service's journal"),
    (r"sudo -u gpuwatch .*", "needs the gpuwatch system user and a GPU"),
    (
        r"/opt/gpuwatch/bin/gpuwatch check --config /etc/gpuwatch/gpuwatch\.toml",
        "the installed copy and its /etc config; docs/operations.md runs the same check on a scratch file",
    ),
    # docs/metrics.md
    (
        r"GPUWATCH_UPDATE_GOLDEN=1 .*",
        "rewrites the golden files in the checkout; tests/metrics/test_metrics_golden.py checks them",
    ),
    (r"git diff tests/metrics/golden/", "reviews the checkout's own changes"),
    # docs/simulation.md and docs/performance.md: long runs.
    (
        r"gpuwatch simulate (surge|viral-launch|video-fan) --plot .*",
        "simulation, 40 s to minutes on 2 cores; tests/simulate/test_sim_loop_readme.py checks its table",
    ),
    (r"\.venv/bin/python bench/targets\.py", "benchmark, 24 minutes (264 simulations)"),
    (r"\.venv/bin/python bench/targets\.py --plants wide", "benchmark, 13 minutes (132 simulations)"),
    (
        r"\.venv/bin/python bench/allowance_plot\.py",
        "benchmark, a minute or two (a 50-minute scenario, drawn)",
    ),
    (r"\.venv/bin/python bench/sample_cost\.py", "benchmark, minutes (the fake libnvidia-ml.so.1)"),
    (r"\.venv/bin/python bench/sample_cost\.py --beside .*", "benchmark, minutes (two checkouts in turns)"),
    (r"git worktree add .*", "checks out an earlier commit beside this one (needs the git history)"),
    (r"\.venv/bin/python bench/admit\.py .*", "benchmark, minutes (wrk and nginx, pinned CPUs)"),
    (r"\.venv/bin/python bench/scrape\.py .*", "benchmark, minutes (wrk, pinned CPUs)"),
    (r"\.venv/bin/python bench/slow_clients\.py .*", "benchmark, minutes (wrk, 1,000 slow clients)"),
    (r"\.venv/bin/python bench/soak\.py .*", "benchmark, 30 minutes"),
    (r"\.venv/bin/python bench/predict\.py", "benchmark, minutes (324 simulated heat-ups)"),
    (r"\.venv/bin/python bench/predict\.py --plants wide", "benchmark, 15 minutes (1,200 heat-ups)"),
    # docs/faults.md
    (r"GPUWATCH_FAULT_TABLE=faults\.md .*", "runs tests/faults (about 30 s), which the suite runs"),
)

# A command run only where the host lets it answer as the page shows.
NVML_PRESENT = ctypes.util.find_library("nvidia-ml") is not None
SKIPPED_HERE: dict[str, tuple[bool, str]] = {
    "gpuwatch status --source nvml": (NVML_PRESENT, "this host has NVIDIA's library: it shows its GPUs"),
}

# Names the pages use for the reader's own programs; here they are stand-ins on PATH.
STAND_INS = {"run-job": '#!/bin/sh\necho "run-job on GPU $CUDA_VISIBLE_DEVICES"\n'}

# The checkout's files that commands read, linked into each page's scratch directory.
LINKED = ("bench", "dashboards", "systemd", "tests", "gpuwatch", "pyproject.toml")
COMMAND_TIMEOUT_S = 30.0
# The daemons' ports as the pages write them (HTTP, HAProxy agent): the README's, and the hot node's
# for a command that names both (e.g. two targets). A bare `gpuwatch status` asks the block's daemon.
DOCUMENTED_PORTS: dict[str, tuple[int, int | None]] = {"readme": (9478, 9479), "hot": (9488, None)}
# Where the README's daemon writes its state files; replaced by a scratch directory here.
DOCUMENTED_STATE_DIR = "/tmp/gpuwatch"  # noqa: S108 - only ever replaced, never written
READY_TIMEOUT_S = 20.0


def skip_reason(command: Command) -> str | None:
    for pattern, reason in SKIPPED:
        if re.fullmatch(pattern, command.text, re.DOTALL):
            return reason
    condition, reason = SKIPPED_HERE.get(command.text, (False, ""))
    return reason if condition else None


@dataclass
class Daemon:
    """A `gpuwatch serve` on loopback ports the kernel picked, stopped when the module ends."""

    process: subprocess.Popen[str]
    state_dir: Path | None
    http_port: int = 0
    agent_port: int = 0
    reader: threading.Thread | None = None

    @classmethod
    def start(cls, args: list[str], *, cwd: Path, state_dir: Path | None) -> Daemon:
        process = subprocess.Popen(
            [sys.executable, "-m", "gpuwatch", *args],
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env=clean_environment(),
            start_new_session=True,
        )
        return cls(process, state_dir)

    def wait_ready(self) -> None:
        """Read the ports from the log, then wait (bounded) for the first decision."""
        assert self.process.stderr is not None
        log: list[str] = []
        self.reader = threading.Thread(target=lambda: log.extend(self.process.stderr or ()), daemon=True)
        self.reader.start()
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline and not self.http_port:
            for line in log.copy():
                if found := re.search(r"serving HTTP on 127\.0\.0\.1:(\d+)", line):
                    self.http_port = int(found.group(1))
                if found := re.search(r"serving the HAProxy agent on 127\.0\.0\.1:(\d+)", line):
                    self.agent_port = int(found.group(1))
            if self.process.poll() is not None:
                break
            time.sleep(0.05)
        assert self.http_port, "gpuwatch serve did not start; its log:\n" + "".join(log)
        while time.monotonic() < deadline:
            connection = http.client.HTTPConnection("127.0.0.1", self.http_port, timeout=2)
            try:
                connection.request("GET", "/v1/state")
                if connection.getresponse().status == 200:
                    return
            except OSError:
                pass
            finally:
                connection.close()
            time.sleep(0.05)
        raise AssertionError("gpuwatch serve made no decision in time; its log:\n" + "".join(log))

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=5)
        if self.reader is not None:
            self.reader.join(timeout=5)
        if self.process.stderr is not None:
            self.process.stderr.close()

    def rewrite(self, text: str, documented_port: int, documented_agent_port: int | None) -> str:
        """The command with the documented ports replaced by this daemon's real ones."""
        for documented, real in ((documented_port, self.http_port), (documented_agent_port, self.agent_port)):
            if documented is not None:
                text = re.sub(rf"\b(localhost|127\.0\.0\.1)([:/]){documented}\b", rf"\g<1>\g<2>{real}", text)
        return text


def clean_environment() -> dict[str, str]:
    """This process's environment without GPUWATCH_* settings, which would change what commands do."""
    return {key: value for key, value in os.environ.items() if not key.startswith("GPUWATCH_")}


def readme_serve_args(state_dir: Path) -> list[str]:
    """The `gpuwatch serve` part of the README's first command, on port 0 and a scratch state dir."""
    first = next(c for c in commands("README.md", (REPO / "README.md").read_text("utf-8")) if c.text.strip())
    serve = first.text.split(" && ")[-1]
    assert serve.startswith(".venv/bin/gpuwatch serve "), f"README's first command changed: {first.text}"
    args = shlex.split(serve)[1:]
    replacements = {"127.0.0.1:9478": "127.0.0.1:0", "127.0.0.1:9479": "127.0.0.1:0"}
    replacements[DOCUMENTED_STATE_DIR] = str(state_dir)
    for old, new in replacements.items():
        assert old in args, f"README's first command lost {old}; this test substitutes it"
        args[args.index(old)] = new
    return args


@pytest.fixture(scope="module")
def daemons(tmp_path_factory) -> Iterator[dict[str, Daemon]]:
    """The README's daemon (eight simulated H100s) and a hot node, both ready."""
    folder = tmp_path_factory.mktemp("daemons")
    (folder / "hot.toml").write_text(HOT_NODE)
    (folder / "guards.toml").write_text(HOT_GUARDS)
    started = {
        "readme": Daemon.start(readme_serve_args(folder / "state"), cwd=folder, state_dir=folder / "state"),
        "hot": Daemon.start(
            [
                "serve",
                "--source=sim:hot.toml",
                "--config=guards.toml",
                "--web.listen-address=127.0.0.1:0",
                "--agent.listen-address=",
                "--state-dir=",
            ],
            cwd=folder,
            state_dir=None,
        ),
    }
    try:
        for daemon in started.values():
            daemon.wait_ready()
        yield started
    finally:
        for daemon in started.values():
            daemon.stop()


@pytest.fixture(scope="module")
def stand_ins(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("stand-ins")
    for name, script in STAND_INS.items():
        (folder / name).write_text(script)
        (folder / name).chmod(0o755)
    return folder


def scratch_directory(folder: Path) -> Path:
    """A working directory whose bench/, tests/, .venv ... are the checkout's; files written stay in it."""
    for name in LINKED:
        (folder / name).symlink_to(REPO / name)
    (folder / ".venv").symlink_to(Path(sys.prefix))
    (folder / "docs").mkdir()
    return folder


def run(command: Command, daemons: dict[str, Daemon], cwd: Path, stand_ins: Path) -> list[str]:
    """Run one command as its page shows it; the problems found, none if it did as the page says."""
    daemon = daemons[command.options.get("daemon", "readme")]
    text = command.text
    for name, (port, agent_port) in DOCUMENTED_PORTS.items():
        # The README's ports name the block's daemon; another daemon's ports name that daemon.
        text = (daemon if name == "readme" else daemons[name]).rewrite(text, port, agent_port)
    text = text.replace(DOCUMENTED_STATE_DIR, str(daemons["readme"].state_dir))
    environment = clean_environment()
    environment["PATH"] = os.pathsep.join(
        [str(stand_ins), str(Path(sys.executable).parent), environment["PATH"]]
    )
    environment["GPUWATCH_URL"] = f"http://127.0.0.1:{daemon.http_port}"
    environment["NO_COLOR"] = "1"
    try:
        result = subprocess.run(
            ["bash", "-c", text],
            cwd=cwd,
            env=environment,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return [
            (
                f"{command.where}: `{command.text}` still ran after {COMMAND_TIMEOUT_S:g} s "
                "(a long run belongs in SKIPPED, with its reason)"
            )
        ]
    printed = result.stdout + result.stderr
    problems = []
    if result.returncode != command.exit_status:
        problems.append(f"exited {result.returncode}, the page says {command.exit_status}")
    missing = missing_lines(command.output, printed, exact="exact" in command.options)
    if missing:
        problems.append("the page shows lines it did not print:\n  " + "\n  ".join(missing))
    if not problems:
        return []
    return [f"{command.where}: `{command.text}` " + "; ".join(problems) + "\n--- it printed:\n" + printed]


@pytest.mark.slow
@pytest.mark.parametrize("page", [page_name(page) for page in pages()])
def test_page_commands_do_what_the_page_says(page, daemons, stand_ins, tmp_path):
    cwd = scratch_directory(tmp_path)
    problems = []
    for command in commands(page, (REPO / page).read_text("utf-8")):
        if skip_reason(command) is not None:
            continue
        problems.extend(run(command, daemons, cwd, stand_ins))
    assert not problems, "\n\n".join(problems)


class TestTheInventory:
    """What runs and what does not is decided by the pages and SKIPPED alone."""

    def test_every_skip_entry_still_matches_a_command(self):
        texts = [command.text for command in all_commands()]
        unused = [
            pattern for pattern, _ in SKIPPED if not any(re.fullmatch(pattern, t, re.DOTALL) for t in texts)
        ]
        unused += [text for text in SKIPPED_HERE if text not in texts]
        assert not unused, f"SKIPPED entries no page shows any more: {unused}"

    def test_the_pages_name_only_known_daemons(self, capsys):
        found = all_commands()
        unknown = [c.where for c in found if c.options.get("daemon", "readme") not in DOCUMENTED_PORTS]
        assert not unknown, f"daemon= names no daemon this test starts: {unknown}"
        skipped = [c for c in found if skip_reason(c) is not None]
        with capsys.disabled():
            print(  # noqa: T201 - the inventory, shown once per run
                f"\ndoc commands: {len(found)} on the pages, {len(found) - len(skipped)} run, "
                f"{len(skipped)} skipped"
            )

    def test_quoted_lines_are_in_their_file(self):
        problems = []
        for page in pages():
            for block in blocks(page_name(page), page.read_text("utf-8")):
                if "lines-of" not in block.options:
                    continue
                lines = set((REPO / block.options["lines-of"]).read_text("utf-8").splitlines())
                problems += [
                    f"{block.page}:{block.line}: {line}" for line in block.lines if line and line not in lines
                ]
        assert not problems, "lines not in the file the page quotes:\n" + "\n".join(problems)


LINK = re.compile(r"\]\((?P<target>[^)\s]+)\)")


def heading_anchors(text: str) -> set[str]:
    """GitHub's anchors for a page's headings: lower case, punctuation dropped, spaces to hyphens."""
    anchors = set()
    in_block = False
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            in_block = not in_block
        elif not in_block and (found := re.match(r"#+\s+(.*)", line)):
            anchors.add(re.sub(r"[^\w\- ]", "", found.group(1).lower()).replace(" ", "-"))
    return anchors


@pytest.mark.parametrize("page", [page_name(page) for page in pages()])
def test_links_between_pages_resolve(page):
    source = REPO / page
    broken = []
    for found in LINK.finditer(source.read_text("utf-8")):
        target = found.group("target")
        if re.match(r"[a-z]+:", target):
            continue
        path, _, anchor = target.partition("#")
        resolved = (source.parent / path).resolve() if path else source
        if not resolved.exists():
            broken.append(f"{target}: no such file")
        elif (
            anchor and resolved.suffix == ".md" and anchor not in heading_anchors(resolved.read_text("utf-8"))
        ):
            broken.append(f"{target}: no heading with that anchor")
    assert not broken, f"{page}: " + "; ".join(broken)


class TestReadingCommands:
    """How tests/doc_commands.py reads a page."""

    PAGE = """
Text with `inline code`, not a command.

```console
$ gpuwatch check
OK: node ok
$ echo $?
0
$ gpuwatch status --source nvml
gpuwatch: no NVML.
$ echo $?
2
```

<!-- doc-test: daemon=hot exact -->
```sh
systemctl status gpuwatch   # a comment
# a comment line
if gpu=$(gpuwatch admit); then
  run-job
fi
curl -s localhost:9478/v1/state \\
  | head
```

```toml
key = "not a command"
```

```
$ gpuwatch simulate --list
surge
```
"""

    def test_console_sh_and_plain_prompt_blocks(self):
        found = commands("page.md", self.PAGE)
        assert [c.text for c in found] == [
            "gpuwatch check",
            "gpuwatch status --source nvml",
            "systemctl status gpuwatch   # a comment",
            "if gpu=$(gpuwatch admit); then\n  run-job\nfi",
            "curl -s localhost:9478/v1/state \\\n  | head",
            "gpuwatch simulate --list",
        ]
        assert [(c.exit_status, c.output) for c in found[:2]] == [
            (0, ("OK: node ok",)),
            (2, ("gpuwatch: no NVML.",)),
        ]
        assert found[2].options == {"daemon": "hot", "exact": ""}
        assert found[0].line == 5
        assert found[5].output == ("surge",)

    def test_a_misspelt_option_is_an_error(self):
        with pytest.raises(ValueError, match="unknown doc-test option 'deamon'"):
            commands("page.md", "<!-- doc-test: deamon=hot -->\n```sh\ntrue\n```\n")

    def test_a_status_without_its_number_is_an_error(self):
        with pytest.raises(ValueError, match="exit status"):
            commands("page.md", "```console\n$ false\n$ echo $?\nnope\n```\n")

    def test_lines_match_with_numbers_free_and_rows_by_width(self):
        printed = "node ok | pressure 0.17\n0  H100  ok  idle  85 W\nGPU  NAME\n"
        assert (
            missing_lines(("node ok | pressure 0.98", "3  H100  ok  none  685 W", "GPU NAME"), printed) == []
        )
        assert missing_lines(("node hot | pressure 1.00",), printed) == ["node hot | pressure 1.00"]
        assert missing_lines(("node ok | pressure 0.98",), printed, exact=True) == ["node ok | pressure 0.98"]

    def test_a_node_row_matches_with_a_time_or_a_dash_in_a_cell_but_not_with_a_cell_more(self):
        printed = "127.0.0.1:41135  ok  0.28  256/256/256  8  5  34.0C  -  0.0 s\n"
        assert (
            missing_lines(("127.0.0.1:9478  ok  0.31  255/255/255  8  6  42.0C  99 s  0.4 s",), printed) == []
        )
        wider = "127.0.0.1:9478  ok  0.31  255/255/255  8  6  42.0C  99 s  0.4 s  extra"
        assert missing_lines((wider,), printed) == [wider]
