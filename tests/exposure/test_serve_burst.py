"""A burst against a real `gpuwatch serve`: fifty admissions between two samples take exactly the slots."""

from __future__ import annotations

import threading

import pytest
from serve_helpers import ServeProcess, get

BURST = 50
SLOTS = 3  # policy.max_slots: a cool simulated GPU is offered exactly this many
# Long enough that the whole burst falls between two samples (each answer names its sample).
INTERVAL_S = 5.0


@pytest.fixture
def daemon(tmp_path):
    config = tmp_path / "gpuwatch.toml"
    config.write_text(f'[web]\nlisten_addresses = ["127.0.0.1:0"]\n[policy]\nmax_slots = {SLOTS}\n')
    process = ServeProcess(
        "--source=sim:1xH100",
        f"--interval={INTERVAL_S}",
        f"--config={config}",
        "--agent.listen-address=",
        "--state-dir=",
    )
    yield process
    process.kill()


def _state(port: int) -> dict:
    return get(port, "/v1/state").json()


def _burst(port: int, path: str) -> list:
    """`BURST` requests of `path`, each on its own connection, released at once."""
    start = threading.Barrier(BURST)
    answers: list = [None] * BURST

    def ask(slot: int) -> None:
        start.wait()
        answers[slot] = get(port, path)

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(BURST)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    return answers


def test_fifty_concurrent_admissions_take_exactly_the_slots(daemon, capsys):
    port = daemon.http_port()
    for _ in range(100):
        before = _state(port)
        if before["gpus"] and before["gpus"][0]["slots"]["default"] == SLOTS:
            break
        threading.Event().wait(0.1)
    assert before["gpus"][0]["slots"] == {"critical": SLOTS, "default": SLOTS, "sheddable": SLOTS}

    dry = _burst(port, "/v1/admit?class=default&gpu=0&dry_run=1")
    after_dry = _state(port)
    answers = _burst(port, "/v1/admit?class=default&gpu=0")
    after = _state(port)

    sequences = {a.headers["x-gpuwatch-sequence"] for a in answers}
    statuses = [a.status for a in answers]
    admitted_slots = sorted(a.headers["x-gpuwatch-slots"] for a in answers if a.status == 200)
    with capsys.disabled():
        print(  # noqa: T201 - the burst's outcome is this test's report
            f"\nburst of {BURST} concurrent /v1/admit?class=default&gpu=0 on a GPU with {SLOTS} slots, "
            f"sample(s) {sorted(sequences)}: "
            f"{statuses.count(200)} admitted, {statuses.count(503)} held back; "
            f"X-GPUWatch-Slots on the admitted: {admitted_slots}; "
            f"/v1/state after: slots {after['gpus'][0]['slots']}, reserved {after['gpus'][0]['reserved']}"
        )
    assert {a.status for a in dry} == {200}  # a dry run asks...
    assert after_dry["gpus"][0]["slots"] == before["gpus"][0]["slots"]  # ...and takes nothing
    assert after_dry["gpus"][0]["reserved"] == before["gpus"][0]["reserved"]
    assert len(sequences) == 1, "the burst straddled a sample"
    assert statuses.count(200) == SLOTS
    assert statuses.count(503) == BURST - SLOTS
    assert sorted(a.headers["x-gpuwatch-slots"] for a in answers if a.status == 200) == ["0", "1", "2"]
    assert {a.json()["reason"] for a in answers if a.status == 503} == {"slots_taken"}
    assert after["gpus"][0]["slots"] == {"critical": 0, "default": 0, "sheddable": 0}
    assert after["gpus"][0]["reserved"] == before["gpus"][0]["reserved"] + SLOTS
    assert after["slots"] == after["gpus"][0]["slots"]  # the node's are the sum over its one GPU
