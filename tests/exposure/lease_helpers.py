"""Helpers for the lease tests: take and end leases on a real daemon, and read its books.

The books are read two ways: /v1/state (each GPU's open leases at the latest decision, and the
slots held against it) and /metrics (`gpuwatch_gpu_leases`, read from the book at each scrape,
and `gpuwatch_leases_ended_total{class,how}`, every lease that ended, counted once).
"""

from __future__ import annotations

import http.client
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar
from urllib.parse import quote

import pytest
from exposure.serve_helpers import TIMEOUT_S, Answer, get

OPEN_FAMILY = "gpuwatch_gpu_leases"
ENDED_FAMILY = "gpuwatch_leases_ended_total"
HOWS = ("released", "expired", "gpu_out")
POLL_S = 0.05  # between two reads while waiting for the books to settle
_T = TypeVar("_T")

Ended = dict[tuple[str, str], float]  # (class, how) -> leases ended


def take(port: int, query: str = "class=default", headers: dict[str, str] | None = None) -> Answer:
    """One admit request (a lease when admitted)."""
    return get(port, f"/v1/admit?{query}", headers)


def release(port: int, lease: str, *, form: str = "post") -> Answer:
    """End `lease` by `POST /v1/release?lease=` (form "post") or `DELETE /v1/leases/` ("delete")."""
    if form == "post":
        return get(port, f"/v1/release?lease={quote(lease, safe='')}", method="POST")
    return get(port, f"/v1/leases/{quote(lease, safe='')}", method="DELETE")


def keep_alive_release(connection: http.client.HTTPConnection, lease: str, form: str = "post") -> int:
    """End `lease` over an open keep-alive connection; the status."""
    if form == "post":
        connection.request("POST", f"/v1/release?lease={lease}")
    else:
        connection.request("DELETE", f"/v1/leases/{lease}")
    response = connection.getresponse()
    response.read()
    return response.status


def metric_samples(port: int, name: str) -> dict[str, float] | None:
    """Every sample of `name` in /metrics by its label text; None when the family is not served."""
    text = get(port, "/metrics").body.decode()
    if f"# TYPE {name.removesuffix('_total')} " not in text and f"# TYPE {name} " not in text:
        return None
    pattern = re.compile(rf"^{re.escape(name)}(?:\{{(?P<labels>[^}}]*)\}})? (?P<value>\S+)$", re.MULTILINE)
    return {match["labels"] or "": float(match["value"]) for match in pattern.finditer(text)}


def ended(port: int) -> Ended | None:
    """`gpuwatch_leases_ended_total` by (class, how); None when the family is not served."""
    samples = metric_samples(port, ENDED_FAMILY)
    if samples is None:
        return None
    counts: Ended = {}
    for labels, value in samples.items():
        found = dict(re.findall(r'(\w+)="([^"]*)"', labels))
        counts[found["class"], found["how"]] = value
    return counts


def ended_by_how(counts: Ended) -> dict[str, float]:
    """Leases ended by how, over every class."""
    return {how: sum(v for (_, h), v in counts.items() if h == how) for how in HOWS}


def open_gauge(port: int) -> float | None:
    """`gpuwatch_gpu_leases` summed over GPUs and classes; None when the family is not served."""
    samples = metric_samples(port, OPEN_FAMILY)
    return None if samples is None else sum(samples.values())


def state_leases(state: dict) -> int:
    """Open leases in a /v1/state document, over every GPU and class."""
    return sum(sum(gpu["leases"].values()) for gpu in state["gpus"])


def wait_for(check: Callable[[], _T | None], timeout_s: float, what: str) -> _T:
    """`check()` once it gives something truthy, polled every POLL_S; fails after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(POLL_S)
    raise AssertionError(f"waited {timeout_s} s for {what}; last: {last!r}")


@dataclass
class Books:
    """What a test expects of the books: the node's slots when idle, and the ends counted before."""

    port: int
    idle_slots: dict[str, int]
    before: Ended | None

    @classmethod
    def open(cls, port: int, idle_slots: dict[str, int]) -> Books:
        """The books as a test starts: nothing open, what ended so far."""
        return cls(port, idle_slots, ended(port))

    def assert_balanced(
        self, *, released: int, expired: int, gpu_out: int = 0, timeout_s: float = 10.0
    ) -> None:
        """Every lease the test took has ended and was counted once, as expected; the slots are back.

        /v1/state shows no open lease and the idle slots again (a decision made after the ends);
        gpuwatch_gpu_leases is 0; gpuwatch_leases_ended_total grew by exactly the leases ended.
        """

        def idle() -> dict | None:
            state = get(self.port, "/v1/state").json()
            settled = (
                state_leases(state) == 0
                and all(gpu["reserved"] == 0 for gpu in state["gpus"])
                and state["slots"] == self.idle_slots
            )
            return state if settled else None

        wait_for(idle, timeout_s, "no open lease and the idle slots in /v1/state")
        after = ended(self.port)
        if after is None or self.before is None:
            pytest.skip(f"{ENDED_FAMILY} is not served yet: the books were checked in /v1/state only")
        assert open_gauge(self.port) == 0
        grown = {how: ended_by_how(after)[how] - ended_by_how(self.before)[how] for how in HOWS}
        assert grown == {"released": released, "expired": expired, "gpu_out": gpu_out}, grown


def lease_of(answer: Answer) -> str:
    """The lease an admitted answer took: the header and the body name the same one."""
    assert answer.status == 200, (answer.status, answer.body)
    lease = answer.json()["lease"]
    assert answer.headers["x-gpuwatch-lease"] == lease
    return lease


def new_connection(port: int) -> http.client.HTTPConnection:
    """A keep-alive connection to the daemon."""
    return http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT_S)
