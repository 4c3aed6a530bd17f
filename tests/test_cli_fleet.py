"""`gpuwatch fleet`'s rows: read from /v1/state, ordered hottest first, totalled, judged; --targets parsed."""

from __future__ import annotations

import contextlib
import io
import json
import socket
import time

import pytest
from click.testing import CliRunner

from gpuwatch.cli import main
from gpuwatch.cli.fleet_daemons import TargetError, ask_daemons, node_name, parse_targets
from gpuwatch.cli.fleet_prometheus import Prometheus, PrometheusError, queries, rows_from_answers
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
from gpuwatch.cli.screen import Screen, show_every


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


def test_a_critical_gpu_on_a_big_cool_node_comes_before_a_warmer_ok_node():
    # One critical GPU among eight cool ones: the node's mean pressure is low (0.30), yet it is
    # the node an operator must see first.
    cool_gpus = [_gpu(index, "ok", 0.2, 30.0) for index in range(1, 8)]
    big = _state("critical", 0.30, (0, 0, 0), [_gpu(0, "critical", 1.0, 0.2), *cool_gpus])
    busy = _state("ok", 0.60, (8, 8, 8), [_gpu(0, "ok", 0.6, 12.0)])
    rows = [row_from_state("busy", busy), row_from_state("big", big)]
    assert [row.node for row in hottest_first(rows)] == ["big", "busy"]


@pytest.mark.parametrize(
    "document",
    [
        {**COOL, "slots": [1, 2, 3]},
        {**COOL, "gpus": [["not", "a", "gpu"]]},
        {**COOL, "state": None},
        ["not", "a", "document"],
    ],
)
def test_an_odd_state_document_is_a_row_not_a_crash(document):
    row = row_from_state("odd", document)
    assert not row.reachable
    assert "not readable" in row.error


def test_nan_in_a_state_document_reads_as_unknown_not_as_a_number():
    nan = _state("ok", float("nan"), (1, 1, 1), [_gpu(0, "ok", float("nan"), float("inf"))])
    row = row_from_state("nan", nan)
    assert row.pressure is None
    assert row.worst == WorstGpu(index=0, pressure=None, margin_c=None, time_to_slowdown_s=None)
    hottest_first([row, row_from_state("cool", COOL)])


def _answers(**overrides: list) -> dict[str, list]:
    """Prometheus' answers for two scraped nodes, `a` hot and `b` cool, and `c` not scraped."""
    a, b = {"instance": "a:9478"}, {"instance": "b:9478"}
    answers = {name: [] for name in queries("gpuwatch")}
    answers |= {
        "up": [(a, 1.0), (b, 1.0), ({"instance": "c:9478"}, 0.0)],
        "state": [({**a, "state": "hot"}, 1.0), ({**b, "state": "ok"}, 1.0)],
        "pressure": [(a, 0.9), (b, 0.1)],
        "slots": [({**a, "class": "critical"}, 3.0), ({**b, "class": "critical"}, 9.0)]
        + [({**b, "class": name}, 9.0) for name in ("default", "sheddable")],
        "gpus": [(a, 2.0), (b, 1.0)],
        "gpu_pressure": [({**a, "gpu": "0"}, 0.8), ({**a, "gpu": "1"}, 1.0), ({**b, "gpu": "0"}, 0.1)],
        "gpu_margin": [({**a, "gpu": "0"}, 4.0), ({**a, "gpu": "1"}, 2.0), ({**b, "gpu": "0"}, 40.0)],
        "gpu_to_slowdown": [({**a, "gpu": "1"}, 25.0)],
        "age": [(a, 0.5), (b, 1.5)],
    }
    return answers | overrides


def test_prometheus_answers_become_rows():
    rows = hottest_first(rows_from_answers(_answers(), {"c:9478": "connection refused"}))
    assert [row.node for row in rows] == ["a:9478", "b:9478", "c:9478"]
    hot, cool, silent = rows
    assert (hot.state, hot.gpus, hot.pressure, hot.sample_age_s) == ("hot", 2, 0.9, 0.5)
    assert hot.slots == {"critical": 3, "default": 0, "sheddable": 0}
    assert hot.admits == ("critical",)
    assert hot.worst == WorstGpu(index=1, pressure=1.0, margin_c=2.0, time_to_slowdown_s=25.0)
    assert hot.status == 1
    assert cool.status == 0
    assert cool.admits == ("critical", "default", "sheddable")
    assert silent.error == "scrape failed: connection refused"
    assert fleet_status(rows) == 1


def test_odd_prometheus_samples_do_not_crash_the_rows():
    answers = _answers(
        state=[({"instance": "a:9478", "state": "melting"}, 1.0)],
        slots=[({"instance": "a:9478", "class": "default"}, float("nan")), ({"class": "default"}, 4.0)],
        gpu_margin=[({"instance": "a:9478"}, 1.0), ({"instance": "a:9478", "gpu": "x"}, 1.0)],
        failed=[({"instance": "b:9478"}, 1.0)],
    )
    rows = {row.node: row for row in rows_from_answers(answers, {})}
    assert rows["a:9478"].state == "unknown"  # a state this gpuwatch does not know
    assert rows["a:9478"].slots["default"] == 0
    assert rows["a:9478"].status == 1
    assert rows["b:9478"].status == 1  # a failed GPU on an ok node is a problem, as `check` says
    assert rows["c:9478"].error == "scrape failed: up is 0"


def test_the_job_is_quoted_in_every_query():
    for query in queries('gpu"watch\\').values():
        assert 'job="gpu\\"watch\\\\"' in query


def test_a_prometheus_login_goes_in_a_header_never_in_messages():
    prometheus = Prometheus("http://admin:hunter2@127.0.0.1:1/prom/", 0.5)
    assert prometheus.url == "http://127.0.0.1:1/prom"
    assert prometheus._headers["Authorization"] == "Basic YWRtaW46aHVudGVyMg=="
    with pytest.raises(PrometheusError) as error:
        prometheus.vector("up")
    assert "hunter2" not in str(error.value)
    with pytest.raises(PrometheusError) as error:
        Prometheus("ftp://admin:hunter2@prometheus:21", 0.5)
    assert "hunter2" not in str(error.value)
    assert "admin:***@prometheus" in str(error.value)


def test_a_daemons_password_is_never_printed():
    environment = {"NO_COLOR": "1", "GPUWATCH_PROMETHEUS": "http://127.0.0.1:1"}
    result = CliRunner().invoke(
        main,
        ["fleet", "--targets", f"http://admin:hunter2@127.0.0.1:{_closed_port()}", "--json"],
        env=environment,
    )
    # --targets on the command line wins over GPUWATCH_PROMETHEUS from the environment.
    assert result.exit_code == 2, result.output
    document = json.loads(result.stdout)
    assert document["nodes"][0]["error"].startswith("cannot reach gpuwatch at http://admin:***@127.0.0.1:")
    assert "hunter2" not in result.output
    bad = CliRunner().invoke(main, ["fleet", "--targets", "http://admin:hunter2@gpu-1"], env=environment)
    assert bad.exit_code == 2
    assert "hunter2" not in bad.output


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_silent_nodes_are_asked_in_parallel():
    timeout_s = 0.5
    with contextlib.ExitStack() as stack:
        silent = []
        for _ in range(4):
            # Each accepts (the kernel's backlog) and never answers a byte: a full timeout each.
            listener = stack.enter_context(socket.socket())
            listener.bind(("127.0.0.1", 0))
            listener.listen(4)
            silent.append(f"http://127.0.0.1:{listener.getsockname()[1]}")
        started = time.monotonic()
        rows = ask_daemons(silent, timeout_s)
        took_s = time.monotonic() - started
    assert [row.error for row in rows] == [
        f"gpuwatch at {url} did not answer within {timeout_s:g} s" for url in silent
    ]
    # One after the other they would take 4 timeouts (2 s); asked at once, about one.
    assert took_s < 2.5 * timeout_s


def test_a_failing_refresh_goes_to_stderr_when_piped(capsys):
    stream = io.StringIO()
    answers = iter(['{"n":1}', PrometheusError("no Prometheus answered"), '{"n":3}', PrometheusError("gone")])

    def frame() -> str:
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer

    screen = Screen(in_place=True, stream=stream)  # not a terminal: lines are appended
    drawn = show_every(screen, frame, watch_s=0.01, count=4, failures=(PrometheusError,))
    assert stream.getvalue().splitlines() == ['{"n":1}', '{"n":3}']
    assert capsys.readouterr().err.splitlines() == ["gpuwatch: no Prometheus answered", "gpuwatch: gone"]
    assert drawn is False


def test_the_first_frames_failure_is_raised():
    def frame() -> str:
        raise PrometheusError("down")

    with pytest.raises(PrometheusError):
        show_every(
            Screen(in_place=False, stream=io.StringIO()),
            frame,
            watch_s=1,
            count=2,
            failures=(PrometheusError,),
        )
