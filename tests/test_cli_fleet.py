"""`gpuwatch fleet`'s rows: read from /v1/state, ordered hottest first, totalled, judged; --targets parsed."""

from __future__ import annotations

import pytest

from gpuwatch.cli.fleet_daemons import TargetError, node_name, parse_targets
from gpuwatch.cli.fleet_rows import (
    NodeRow,
    WorstGpu,
    fleet_status,
    hottest_first,
    render_fleet,
    row_from_state,
    summary,
    unreachable,
    worst_gpu,
)


def _gpu(index: int, state: str, pressure: float, margin_c: float | None) -> dict:
    return {
        "index": index,
        "state": state,
        "pressure": pressure,
        "margin_c": margin_c,
        "time_to_slowdown_s": None,
    }


def _state(state: str, pressure: float, slots: tuple[int, int, int], gpus: list[dict]) -> dict:
    names = ("critical", "default", "sheddable")
    return {
        "state": state,
        "pressure": pressure,
        "slots": dict(zip(names, slots, strict=True)),
        "admits": [name for name, free in zip(names, slots, strict=True) if free > 0],
        "sample_age_s": 0.4,
        "reasons": [],
        "gpus": gpus,
    }


COOL = _state("ok", 0.2, (8, 8, 8), [_gpu(0, "ok", 0.2, 30.0), _gpu(1, "ok", 0.2, 29.0)])
WARM = _state("elevated", 0.8, (4, 2, 0), [_gpu(0, "elevated", 0.8, 6.0)])
HOT = _state("hot", 1.0, (2, 0, 0), [_gpu(0, "ok", 0.5, 20.0), _gpu(1, "hot", 1.0, 2.5)])
CRITICAL = _state("critical", 1.0, (0, 0, 0), [_gpu(0, "critical", 1.0, 0.5)])


def test_rows_come_hottest_first_and_silent_nodes_last():
    rows = [
        row_from_state("cool", COOL),
        unreachable("gone", "connection refused"),
        row_from_state("hot", HOT),
        row_from_state("warm", WARM),
        row_from_state("critical", CRITICAL),
    ]
    assert [row.node for row in hottest_first(rows)] == ["critical", "hot", "warm", "cool", "gone"]


def test_the_worst_gpu_is_the_one_under_most_pressure_then_least_margin():
    row = row_from_state("hot", HOT)
    assert row.worst == WorstGpu(index=1, pressure=1.0, margin_c=2.5, time_to_slowdown_s=None)
    assert row_from_state("cool", COOL).worst.index == 1  # equal pressure: the lower margin
    assert worst_gpu([]) is None


def test_totals_count_only_the_nodes_that_answered():
    rows = [row_from_state("cool", COOL), row_from_state("hot", HOT), unreachable("gone", "refused")]
    assert summary(rows) == {
        "nodes": 3,
        "unreachable": 1,
        "gpus": 4,
        "nodes_admitting": {"critical": 2, "default": 1, "sheddable": 1},
        "free_slots": {"critical": 10, "default": 8, "sheddable": 8},
    }


@pytest.mark.parametrize(
    ("rows", "status"),
    [
        ([row_from_state("cool", COOL), row_from_state("warm", WARM)], 0),
        ([row_from_state("cool", COOL), row_from_state("hot", HOT)], 1),
        ([row_from_state("cool", COOL), unreachable("gone", "refused")], 2),
        ([row_from_state("hot", HOT), unreachable("gone", "refused")], 1),
        ([], 2),
    ],
)
def test_the_exit_status_is_the_worst_checks(rows, status):
    assert fleet_status(rows) == status


def test_a_document_that_is_not_a_state_is_a_row_saying_so():
    row = row_from_state("odd", {"state": "melting", "pressure": 1, "gpus": []})
    assert not row.reachable
    assert row.error.startswith("its /v1/state answer is not readable")
    assert fleet_status([row]) == 2


def test_the_table_lists_the_silent_nodes_reasons_under_it():
    text = render_fleet(
        [row_from_state("hot", HOT), unreachable("gone:9478", "refused")], "test", colour=False
    )
    lines = text.splitlines()
    assert lines[1] == (
        "2 nodes (1 unreachable), 2 GPUs | nodes admitting critical 1/1, default 0/1, sheddable 0/1 | "
        "free slots critical 2, default 0, sheddable 0"
    )
    assert lines[3].split() == ["hot", "hot", "1.00", "2/0/0", "2", "1", "2.5C", "-", "0.4", "s"]
    assert lines[-1] == "gone:9478: refused"
    coloured = render_fleet([row_from_state("hot", HOT)], "test", colour=True)
    assert "\x1b[31mhot" in coloured
    assert NodeRow(node="x").state == "unreachable"


def test_targets_are_parsed_to_urls_in_order_without_repeats():
    urls = parse_targets("gpu-1:9478, http://u:p@gpu-2:9478,[::1]:9478,gpu-1:9478")
    assert urls == ["http://gpu-1:9478", "http://u:p@gpu-2:9478", "http://[::1]:9478"]
    assert [node_name(url) for url in urls] == ["gpu-1:9478", "gpu-2:9478", "[::1]:9478"]


@pytest.mark.parametrize("text", ["gpu-1", "gpu-1:http", "ftp://gpu-1:21", ",,"])
def test_a_bad_target_is_named(text):
    with pytest.raises(TargetError, match="--targets"):
        parse_targets(text)
