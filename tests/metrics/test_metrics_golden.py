"""Golden /metrics files: real captures replayed through sampler, policy and collector, diffed and linted.

Each case plays recorded telemetry (or a seeded simulation) in virtual time and compares the
whole exposition with tests/metrics/golden/<case>.prom. One of them (sim_leases) has gateways
taking leases as it plays, releasing most and forgetting some. After an intended change, rewrite them
with `GPUWATCH_UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/metrics/test_metrics_golden.py`
and review the diff.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from metrics_helpers import (
    DATA_DIR,
    GOLDEN_DIR,
    Edit,
    Pipeline,
    check_metrics,
    lost,
    query_gpu_csv,
    with_xids,
)

from gpuwatch.exposure.leases import Held
from gpuwatch.policy.decision import PriorityClass

UPDATE = os.environ.get("GPUWATCH_UPDATE_GOLDEN") == "1"
CAPTURE = DATA_DIR / "nvidia-smi-q" / "H100-80GB-HBM3_driver590_idle-and-load_capture.txt"
A100_TRACE = DATA_DIR / "traces" / "a100_serving_250ms_excerpt.csv"
H100X8_TRACE = DATA_DIR / "traces" / "8xh100_training_100ms_power-util-mem.csv"
# A failed fan on GPU 1 of two busy H100s, 5 s in: HOT, then thermal slowdown, within a minute
# (the first-order plant, tau 20 s: a two-node board's heat sink would take minutes).
COOLING_FAULT = """seed = 7
inlet_c = 30.0
plant = "first-order"
[[gpus]]
sku = "H100"
count = 2
[load]
jobs = 3
[[events]]
at_s = 5
gpus = [1]
cooling_factor = 3.0
inlet_c = 45.0
"""


_XID_79 = with_xids(0, {"13": 2, "79": 1}, last=79)
_GPU_1_LOST = lost(1)


def _XIDS_AND_LOST(snapshot):  # noqa: N802 - a constant edit, named as one
    """GPU 0 saw XIDs 13 (twice) and 79; GPU 1 has fallen off the bus."""
    return _GPU_1_LOST(_XID_79(snapshot))


# Gateways on two cool H100s, one sample a second: each second a default job of 8 s on GPU 0 and
# GPU 1 in turn, released when it ends, except every third, which is never released (it expires
# at 8 s + the 8 s grace); from second 2, a critical job of unknown length that stays open (its
# deadline is the 60 s horizon); at second 3, a sheddable job released 25 s later.
DEFAULT_JOB_S = 8.0
SHEDDABLE_HELD_S = 25


def _lease_traffic(pipeline: Pipeline) -> Callable[[int], None]:
    """Takes and releases leases in `pipeline`'s book before each sample (second) `n`."""
    book = pipeline.book
    ends: dict[int, list[Held]] = {}

    def before(second: int) -> None:
        for held in ends.pop(second, ()):
            assert book.release(held.id) is not None
        held = book.take(second % 2, PriorityClass.DEFAULT, DEFAULT_JOB_S)
        if second % 3:
            ends.setdefault(second + int(DEFAULT_JOB_S), []).append(held)
        if second == 2:
            book.take(1, PriorityClass.CRITICAL, None)
        if second == 3:
            shed = book.take(0, PriorityClass.SHEDDABLE, None)
            ends.setdefault(second + SHEDDABLE_HELD_S, []).append(shed)

    return before


@dataclass(frozen=True)
class Case:
    """A golden case: how to make its source spec in a scratch folder, and how long to play it.

    `traffic` gives what runs before each sample (gateways taking and releasing leases).
    """

    name: str
    spec: Callable[[Path], str]
    samples: int
    dcgm: bool = False
    edit: Edit | None = None
    traffic: Callable[[Pipeline], Callable[[int], None]] | None = None


def _capture_csv(phase: str) -> Callable[[Path], str]:
    def spec(folder: Path) -> str:
        path = folder / f"h100-{phase}.csv"
        path.write_text(query_gpu_csv(CAPTURE.read_text(), phase))
        return f"replay:{path}?loop=1"

    return spec


def _h100x8_head(folder: Path) -> str:
    """The first 30 s of the 8x H100 training trace (the whole file takes seconds to scan)."""
    lines = H100X8_TRACE.read_text().splitlines(keepends=True)[: 1 + 8 * 300]
    path = folder / "8xh100.csv"
    path.write_text("".join(lines))
    return f"replay:{path}?loop=1"


def _scenario(folder: Path) -> str:
    path = folder / "cooling-fault.toml"
    path.write_text(COOLING_FAULT)
    return f"sim:{path}"


CASES = (
    Case("h100_idle", _capture_csv("idle"), samples=12),
    Case("h100_load", _capture_csv("load"), samples=12),
    Case("h100_load_dcgm", _capture_csv("load"), samples=12, dcgm=True),
    Case("a100_serving", lambda _folder: f"replay:{A100_TRACE}?loop=1", samples=20),
    Case("h100x8_training", _h100x8_head, samples=10),
    Case("sim_cooling_fault", _scenario, samples=60),
    Case("sim_cooling_fault_dcgm", _scenario, samples=60, dcgm=True),
    Case("sim_lost_gpu_and_xids", lambda _folder: "sim:2xH100", samples=6, edit=_XIDS_AND_LOST),
    Case("sim_leases", lambda _folder: "sim:2xH100", samples=40, traffic=_lease_traffic),
)


def _render(case: Case, folder: Path) -> bytes:
    pipeline = Pipeline(case.spec(folder), dcgm=case.dcgm, edit=case.edit)
    try:
        pipeline.run(case.samples, None if case.traffic is None else case.traffic(pipeline))
        # Some traffic, so that admissions_total shows counts: 5 admitted and 2 refused defaults.
        counts = pipeline.board.tally.counts
        counts[3] += 5
        counts[2] += 2
        return pipeline.render()
    finally:
        pipeline.close()


@pytest.fixture(scope="module", params=CASES, ids=[case.name for case in CASES])
def rendered(request, tmp_path_factory) -> tuple[Case, bytes]:
    case = request.param
    return case, _render(case, tmp_path_factory.mktemp(case.name))


class TestGoldenFiles:
    """The exposition of each capture is exactly its golden file, and promtool finds nothing wrong."""

    def test_matches_the_golden_file(self, rendered):
        case, text = rendered
        golden = GOLDEN_DIR / f"{case.name}.prom"
        if UPDATE:
            golden.parent.mkdir(exist_ok=True)
            golden.write_bytes(text)
        assert golden.exists(), f"{golden} is missing; create it with GPUWATCH_UPDATE_GOLDEN=1"
        assert text.decode() == golden.read_text()

    def test_promtool_check_metrics(self, rendered):
        case, text = rendered
        result = check_metrics(text)
        if not case.dcgm:
            assert result.returncode == 0, result.stdout + result.stderr
            assert result.stdout + result.stderr == ""
            return
        # dcgm-exporter's own names break Prometheus' naming conventions; gpuwatch keeps them
        # so that existing dashboards work, and promtool says exactly that, nothing else.
        lines = (result.stdout + result.stderr).splitlines()
        assert lines
        assert {line.split(" ", 1)[0][:12] for line in lines} == {"DCGM_FI_DEV_"}
        assert {line.split(" ", 1)[1] for line in lines} <= {
            "label names should be written in 'snake_case' not 'camelCase'",
            'counter metrics should have "_total" suffix',
            "metric name should not include type 'counter'",
        }

    def test_is_deterministic(self, rendered, tmp_path):
        case, text = rendered
        assert _render(case, tmp_path) == text
