"""`gpuwatch serve` as a real process: a cooling fault drives the signal from admit to shed and back."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field

import pytest
from serve_helpers import ServeProcess, agent_answer, get

# Two H100s held at their 700 W cap with 20 °C of margin. At 3 s the room's cooling fails (inlet
# 60 °C, fans at half strength): they heat at ~1.5 °C/s towards far past their limit. At 13 s
# cooling returns, colder than before, so they recover within seconds. The first-order plant
# (one node, tau 20 s): a real heat sink takes minutes, longer than a test should wait.
FAULT_AT_S = 3.0
RECOVER_AT_S = 13.0
SCENARIO = f"""
seed = 3
inlet_c = 32.0
plant = "first-order"

[[gpus]]
sku = "H100"
count = 2

[load]
jobs = 4

[[events]]
at_s = {FAULT_AT_S}
inlet_c = 60.0
cooling_factor = 2.0

[[events]]
at_s = {RECOVER_AT_S}
inlet_c = -10.0
cooling_factor = 1.0
"""
# A short hold, so the recovery shows within the test.
CONFIG = """
[policy]
state_hold_s = 0.5
"""
INTERVAL_S = 0.1
TIMELINE_LIMIT_S = 40.0
# Read in this order: while the node heats up a later read can only see a hotter state, so a
# class found denied before a lower one never comes from a state change between the two reads.
CLASSES = ("critical", "default", "sheddable")


@dataclass
class Moment:
    """What every interface said at one instant of the run."""

    at_s: float
    admit: dict[str, int]
    admit_sequence: int  # the decision the `default` answer came from
    adapters: dict[str, int]
    retry_after: str | None
    agent: bytes
    state: dict
    state_file: dict
    pressure_file: str


@dataclass
class Run:
    moments: list[Moment] = field(default_factory=list)
    exit_code: int | None = None
    exit_took_s: float | None = None
    log: list[str] = field(default_factory=list)

    def first(self, predicate) -> Moment | None:
        return next((m for m in self.moments if predicate(m)), None)


def _observe(web: int, agent: int, state_dir, started: float) -> Moment:
    # dry_run=1: the observer asks as a gateway would but takes no slot. Taking one every 50 ms
    # would spend the GPUs' slots (reservations the capped power never shows last the horizon)
    # and the test would watch its own admissions, not the fault.
    admit = {c: get(web, f"/v1/admit?class={c}&dry_run=1") for c in CLASSES}
    adapters = {p: get(web, f"/v1/admit/{p}?dry_run=1").status for p in ("nginx", "envoy")}
    return Moment(
        at_s=time.monotonic() - started,
        admit={c: a.status for c, a in admit.items()},
        admit_sequence=admit["default"].json()["sequence"],
        adapters=adapters,
        retry_after=admit["default"].headers.get("retry-after"),
        agent=agent_answer(agent)[0],
        state=get(web, "/v1/state").json(),
        state_file=json.loads((state_dir / "state.json").read_bytes()),
        pressure_file=(state_dir / "pressure").read_text(),
    )


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """One daemon through a whole cooling fault, observed every ~0.1 s, then stopped with SIGTERM."""
    folder = tmp_path_factory.mktemp("serve")
    (folder / "fault.toml").write_text(SCENARIO)
    (folder / "gpuwatch.toml").write_text(CONFIG)
    state_dir = folder / "state"
    daemon = ServeProcess(
        f"--source=sim:{folder / 'fault.toml'}",
        f"--interval={INTERVAL_S}",
        "--web.listen-address=127.0.0.1:0",
        "--agent.listen-address=127.0.0.1:0",
        f"--state-dir={state_dir}",
        f"--config={folder / 'gpuwatch.toml'}",
    )
    result = Run()
    try:
        web, agent = daemon.port("HTTP"), daemon.port("the HAProxy agent")
        deadline = time.monotonic() + 10
        while get(web, "/v1/state").json()["sequence"] == 0 and time.monotonic() < deadline:
            time.sleep(0.02)
        started = time.monotonic()
        while time.monotonic() - started < TIMELINE_LIMIT_S:
            moment = _observe(web, agent, state_dir, started)
            result.moments.append(moment)
            # Every class admitted in one moment: asked one after the other, `default` could see
            # the last hot decision and `sheddable` the first cool one (a sample every 0.1 s).
            recovered = moment.at_s > RECOVER_AT_S and set(moment.admit.values()) == {200}
            if recovered and any(m.admit["default"] != 200 for m in result.moments):
                break
            time.sleep(0.05)
        result.exit_code, result.exit_took_s = daemon.stop()
    finally:
        daemon.kill()
        result.log = daemon.lines
    return result


class TestCoolingFault:
    """The API, the agent and the files follow a simulated cooling fault end to end."""

    def test_starts_admitting_every_class(self, run):
        first = run.moments[0]
        assert first.admit == {"sheddable": 200, "default": 200, "critical": 200}
        assert first.agent.startswith(b"up ready")

    def test_fault_turns_default_from_200_to_503_with_retry_after(self, run):
        denied = run.first(lambda m: m.admit["default"] == 503)
        assert denied is not None, [m.state["state"] for m in run.moments]
        assert denied.at_s > FAULT_AT_S - 1
        assert 1 <= int(denied.retry_after) <= 120
        assert denied.state["state"] in {"hot", "critical"}

    def test_sheddable_is_shed_first_and_critical_last(self, run):
        def first_denied(priority):
            moment = run.first(lambda m: m.admit[priority] != 200)
            return float("inf") if moment is None else moment.at_s

        # Idle slots are lent downwards, never upwards: no class loses its last slot before the
        # classes below it (the fault here is violent enough to take them all within a sample).
        assert first_denied("sheddable") <= first_denied("default") <= first_denied("critical")
        assert first_denied("critical") < RECOVER_AT_S

    def test_adapters_deny_with_their_own_codes_when_default_is_denied(self, run):
        denied = [m for m in run.moments if m.admit["default"] == 503]
        assert denied
        assert {m.adapters["nginx"] for m in denied} <= {403, 200}
        assert {m.adapters["envoy"] for m in denied} <= {429, 200}
        assert any(m.adapters == {"nginx": 403, "envoy": 429} for m in denied)

    def test_agent_drains_while_hot_and_is_ready_again_after(self, run):
        # With no `default` slot in the read before the agent's and in the state after it, both
        # from the same decision: the agent, read between them, answered from that one too.
        hot = [
            m
            for m in run.moments
            if m.admit["default"] == 503
            and m.state["slots"]["default"] == 0
            and m.state["state"] != "ok"
            and m.state["sequence"] == m.admit_sequence
        ]
        assert len(hot) >= 5
        assert [m.agent for m in hot] == [b"up drain\n"] * len(hot)
        assert run.moments[-1].agent.startswith(b"up ready")
        assert run.moments[-1].admit["default"] == 200

    def test_state_file_and_pressure_file_track_the_api(self, run):
        for moment in run.moments:
            assert moment.state_file["schema_version"] == 1
            assert abs(moment.state_file["sequence"] - moment.state["sequence"]) <= 3
            assert 0.0 <= float(moment.pressure_file) <= 1.0
        peak = max(float(m.pressure_file) for m in run.moments)
        assert peak > float(run.moments[0].pressure_file)

    def test_state_shows_the_hot_gpus_with_their_figures(self, run):
        hot = run.first(lambda m: m.admit["default"] == 503)
        assert hot is not None
        gpus = hot.state["gpus"]
        assert len(gpus) == 2
        assert all(g["margin_c"] is not None and g["margin_c"] <= 20 for g in gpus)
        assert all(g["reasons"] for g in gpus if g["state"] != "ok")

    def test_sigterm_exits_0_promptly(self, run):
        assert run.exit_code == 0
        assert run.exit_took_s < 3.0
        assert any("stopped" in line for line in run.log)

    def test_state_changes_are_logged_one_line_each(self, run):
        changes = [line for line in run.log if "event=state_change" in line and " scope=node " in line]
        assert len(changes) >= 2
        assert all(" level=info " in line and " from=" in line and " to=" in line for line in changes)
