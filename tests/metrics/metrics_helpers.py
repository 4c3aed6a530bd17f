"""Helpers for the metrics tests: the sample -> policy -> exposition pipeline in virtual time, promtool."""

from __future__ import annotations

import dataclasses
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from gpuwatch.exposure.board import Board
from gpuwatch.exposure.leases import LeaseBook
from gpuwatch.exposure.metrics.exposition import MetricsExposition
from gpuwatch.policy.config import PolicyConfig
from gpuwatch.policy.engine import Policy
from gpuwatch.sampler.loop import Sampler
from gpuwatch.sources.clock import ManualClock
from gpuwatch.sources.model import GpuHealth, GpuSample, Snapshot, frozen_counts
from gpuwatch.sources.spec import open_source

REPO = Path(__file__).resolve().parents[2]
DATA_DIR = REPO / "tests" / "data"
GOLDEN_DIR = Path(__file__).resolve().parent / "golden"
DASHBOARDS = REPO / "dashboards"
# build_info's version label in rendered text, fixed so that a release does not rewrite goldens.
TEST_VERSION = "0.0.0-test"
Edit = Callable[[Snapshot], Snapshot]


def promtool() -> str:
    """Path of Debian's promtool (tests/run installs the prometheus package)."""
    found = shutil.which("promtool")
    assert found is not None, "promtool is missing: install Debian's prometheus package (tests/run does)"
    return found


def check_metrics(text: bytes) -> subprocess.CompletedProcess[str]:
    """`promtool check metrics` on an exposition."""
    return subprocess.run(
        [promtool(), "check", "metrics"],
        input=text.decode(),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def query_gpu_csv(capture: str, phase: str) -> str:
    """Header and data line of a capture's `--query-gpu` CSV section for `phase` ("idle" or "load")."""
    lines = capture.splitlines(keepends=True)
    start = next(i for i, line in enumerate(lines) if line.startswith(f"# {phase} :: query-gpu"))
    body = next(i for i in range(start + 1, len(lines)) if not lines[i].startswith("#"))
    return "".join(lines[body : body + 2])


class Pipeline:
    """A source sampled in virtual time, decided on by the policy, published to a board and rendered.

    `edit` may change each snapshot before the policy sees it (to add faults). The board has a
    lease book on the virtual clock, read by the policy with each snapshot as the daemon reads it.
    """

    def __init__(  # noqa: PLR0913 - test setup, all keywords
        self,
        spec: str,
        *,
        interval_s: float = 1.0,
        dcgm: bool = False,
        edit: Edit | None = None,
        config: PolicyConfig | None = None,
        seed: int = 7,
    ) -> None:
        self.clock = ManualClock()
        self.source = open_source(spec, self.clock, seed=seed)
        self.sampler = Sampler(self.source, interval_s=interval_s, clock=self.clock)
        self.policy = Policy(config or PolicyConfig(), interval_s)
        self.book = LeaseBook(config or PolicyConfig(), clock=self.clock.monotonic)
        self.board = Board(self.source.spec, lambda decision, _now: decision, book=self.book)
        self.exposition = MetricsExposition(
            self.board,
            interval_s,
            dcgm_hostname="gpu-node-1" if dcgm else None,
            monotonic=self.clock.monotonic,
            version=TEST_VERSION,
        )
        self._interval_s = interval_s
        self._edit = edit or (lambda snapshot: snapshot)
        self.latest: Snapshot | None = None  # the latest snapshot, as edited

    def run(self, samples: int, before: Callable[[int], None] | None = None) -> Pipeline:
        """Take `samples` samples, one interval apart; `before(n)` runs before the n-th (from 0)."""
        for number in range(samples):
            if before is not None:
                before(number)
            snapshot = self.latest = self._edit(self.sampler.sample_once())
            decision = self.policy.update(snapshot, self.book.leases())
            self.exposition.prepare(snapshot, decision)
            self.board.publish(decision)
            self.clock.advance(self._interval_s)
        return self

    def render(self) -> bytes:
        return self.exposition.body()

    def close(self) -> None:
        self.sampler.stop()


def with_xids(gpu: int, counts: dict[str, int], last: int) -> Edit:
    """An edit that gives GPU `gpu` these XID counts (as the NVML event thread would)."""

    def edit(snapshot: Snapshot) -> Snapshot:
        gpus = tuple(
            dataclasses.replace(sample, xid_errors=frozen_counts(counts), last_xid=last)
            if sample.identity.index == gpu
            else sample
            for sample in snapshot.gpus
        )
        return dataclasses.replace(snapshot, gpus=gpus)

    return edit


def lost(gpu: int) -> Edit:
    """An edit in which GPU `gpu` has fallen off the bus (no reading)."""

    def edit(snapshot: Snapshot) -> Snapshot:
        def lose(sample: GpuSample) -> GpuSample:
            if sample.identity.index != gpu:
                return sample
            return dataclasses.replace(sample, reading=None, health=GpuHealth.LOST, error="GPU is lost")

        return dataclasses.replace(snapshot, gpus=tuple(lose(sample) for sample in snapshot.gpus))

    return edit


def families(text: bytes) -> dict[str, object]:
    """Parsed families by name (counters under their name without `_total`)."""
    return {family.name: family for family in text_string_to_metric_families(text.decode())}


_SAMPLE = re.compile(r"^([A-Za-z_:][A-Za-z0-9_:]*)(?:\{(.*)\})? (\S+)$")
_LABEL = re.compile(r'([A-Za-z_][A-Za-z0-9_]*)="((?:[^"\\]|\\.)*)"')


def samples(text: bytes, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    """The samples named `name` exactly as written (no parser renaming), by their sorted labels."""
    found = {}
    for line in text.decode().splitlines():
        match = _SAMPLE.match(line)
        if match and match.group(1) == name:
            labels = tuple(sorted(_LABEL.findall(match.group(2) or "")))
            found[labels] = float(match.group(3))
    return found
