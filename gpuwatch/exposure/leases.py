"""The lease book: each admission is a lease on its GPU until the gateway releases it or its deadline passes.

`take` runs on the event loop for each admission (not for dry runs): a lease with an opaque,
unguessable id (128 random bits, as 22 URL-safe characters), numbered per GPU, with its class,
the duration planned with and its deadline, and the GPU's count of slots taken bumped at once.
The request path reads only those counts (`totals`, written under the lock), so it knows how many
slots were taken since the decision it answers from. `release` ends a lease by its id, on the
event loop. The sampler thread asks for `leases` once per sample, under a lock held while the
open leases are copied (microseconds for the dozens a GPU has): leases past their deadline end
there (`expired`), and the policy gets each GPU's open leases, its recent releases and how long
the released leases of each class were held. Deadlines are kept in buckets of one second (a
timing wheel, as the kernel keeps its timers): a release takes its lease out of its bucket, so
expiry looks only at the leases still open in the buckets due. A heap with entries left behind
by releases made the sampler pop every admission of the last minute under the lock (20 ms a
second at 12,000 admissions a second), stalling the requests waiting on it.
A GPU that goes FAILED or UNKNOWN ends its leases (`end_gpus`, `gpu_out`). A lease released
after its deadline is answered as ended (404), but how long its job ran still teaches the class's
duration: without it the longest jobs, the ones that outlive their plan, would never be learned.

The book also keeps what the metrics show: open leases by GPU and class, leases ended by class
and how, and a histogram of how long released leases were held.
"""

from __future__ import annotations

import heapq
import math
import re
import secrets
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from types import MappingProxyType
from typing import NamedTuple

from gpuwatch.policy.config import PolicyConfig
from gpuwatch.policy.decision import NodeDecision, PriorityClass, ThermalState
from gpuwatch.policy.durations import LEARN_FROM, deadline_s
from gpuwatch.policy.leases import Lease, Leases, Ledger

# More GPUs than any node has: indexes beyond it are refused by the routes long before.
MAX_GPUS = 1024
ID_BYTES = 16  # 128 random bits
ID_LENGTH = 22  # base64url of 16 bytes, unpadded
ID_PATTERN = "^[A-Za-z0-9_-]{22}$"
_ID = re.compile(r"[A-Za-z0-9_-]{22}")
# Leases that expired unreleased, remembered this many (the latest) so that a release after the
# deadline still teaches how long the job ran.
LATE_RELEASES = 4096
# Releases kept per GPU for the policy to match against the falls they cause: more than can
# happen within a few sampling intervals.
RECENT_RELEASES = 256
# How a lease ended (the `how` label of gpuwatch_leases_ended_total).
RELEASED = "released"
EXPIRED = "expired"
GPU_OUT = "gpu_out"
ENDINGS = (RELEASED, EXPIRED, GPU_OUT)
# Upper bounds of gpuwatch_job_duration_seconds, s: image jobs of seconds to video jobs of minutes.
DURATION_BUCKETS_S = (1.0, 2.0, 5.0, 10.0, 15.0, 20.0, 30.0, 45.0, 60.0, 90.0, 120.0, 300.0, 600.0, math.inf)


OUT = (ThermalState.FAILED, ThermalState.UNKNOWN)


def well_formed(lease_id: str) -> bool:
    """Whether `lease_id` could be one this book hands out (22 URL-safe base64 characters)."""
    return _ID.fullmatch(lease_id) is not None


class Held(NamedTuple):
    """One lease as handed out: its id, GPU and what the policy reads of it (a tuple: one per admission)."""

    id: str
    gpu: int
    lease: Lease


@dataclass(frozen=True, slots=True)
class Ended:
    """A lease that ended: which, and after how long, s."""

    held: Held
    held_s: float
    how: str


@dataclass(slots=True)
class DurationHistogram:
    """Released leases' held times of one class: cumulative-ready bucket counts, their sum and count."""

    counts: list[int]
    total_s: float = 0.0

    def add(self, seconds: float) -> None:
        """Count one released lease held `seconds`."""
        for i, bound in enumerate(DURATION_BUCKETS_S):
            if seconds <= bound:
                self.counts[i] += 1
                break
        self.total_s += seconds


class LeaseBook:
    """Leases by id and by GPU index; counts of slots taken; what ended, and how."""

    def __init__(self, config: PolicyConfig, clock: Callable[[], float] = time.monotonic) -> None:
        self._config = config
        self._clock = clock
        self._lock = threading.Lock()
        self.totals: list[int] = []  # slots taken, by GPU index
        self._numbers: list[int] = []  # leases taken, by GPU index
        self._open: dict[str, Held] = {}
        self._open_counts: dict[tuple[int, PriorityClass], int] = {}  # kept as leases come and go
        # Open leases by the whole second of their deadline (id -> deadline, s), and those seconds
        # in a heap, soonest first: expiry looks only at the buckets due.
        self._due: dict[int, dict[str, float]] = {}
        self._due_seconds: list[int] = []
        self._by_gpu: list[dict[int, Held]] = []  # number -> lease, in number order
        self._released: list[deque[tuple[int, float]]] = []
        self._held_s = {cls: deque[float](maxlen=LEARN_FROM) for cls in PriorityClass}
        self._ended = dict.fromkeys(((cls, how) for cls in PriorityClass for how in ENDINGS), 0)
        self._durations = {cls: DurationHistogram([0] * len(DURATION_BUCKETS_S)) for cls in PriorityClass}
        self._expired: OrderedDict[str, Lease] = OrderedDict()  # id -> lease, oldest first
        self.changes = 0  # grows with every lease taken or ended: what caches of the counts key on

    @property
    def config(self) -> PolicyConfig:
        """The policy settings deadlines are set by."""
        return self._config

    def reconfigure(self, config: PolicyConfig) -> None:
        """A reload changed the policy: new leases get deadlines by its settings."""
        self._config = config

    def take(
        self,
        gpu: int,
        priority: PriorityClass,
        expected_s: float | None,
        slots: int = 1,
        *,
        requested: bool = False,
    ) -> Held:
        """A lease on GPU `gpu` for a job of `priority` planned to run `expected_s` (None: unknown), now.

        It takes `slots` of the GPU's slots (a job planned longer than its class's may take more);
        `requested`: the admit request said `expected_s` (else it is the class's plan).
        """
        if not 0 <= gpu < MAX_GPUS:
            raise ValueError(f"GPU index out of range: {gpu}")
        now = self._clock()
        lease_id = secrets.token_urlsafe(ID_BYTES)
        with self._lock:
            while len(self.totals) <= gpu:
                self.totals.append(0)
                self._numbers.append(0)
                self._by_gpu.append({})
                self._released.append(deque(maxlen=RECENT_RELEASES))
                self._open_counts.update(((len(self._by_gpu) - 1, cls), 0) for cls in PriorityClass)
            number = self._numbers[gpu] + 1
            self._numbers[gpu] = number
            deadline_at = now + deadline_s(expected_s, self._config)
            lease = Lease(number, now, priority, expected_s, deadline_at, requested=requested)
            held = Held(lease_id, gpu, lease)
            self._open[lease_id] = held
            self._by_gpu[gpu][number] = held
            second = math.floor(deadline_at)
            bucket = self._due.get(second)
            if bucket is None:
                bucket = self._due[second] = {}
                heapq.heappush(self._due_seconds, second)
            bucket[lease_id] = deadline_at
            self._open_counts[gpu, priority] += 1
            self.totals[gpu] += slots
            self.changes += 1
        return held

    def total(self, gpu: int) -> int:
        """Slots taken on GPU `gpu` so far (0 if none)."""
        totals = self.totals
        return totals[gpu] if gpu < len(totals) else 0

    def release(self, lease_id: str) -> Ended | None:
        """End the lease `lease_id`: its job is over. None: no such lease open (unknown, or already ended)."""
        now = self._clock()
        with self._lock:
            held = self._open.get(lease_id)
            if held is None:
                late = self._expired.pop(lease_id, None)
                if late is not None:
                    self._held_s[late.priority].append(max(0.0, now - late.taken_at))
                return None
            if now > held.lease.deadline_at:
                self._end(held, now, EXPIRED)
                self._expired.pop(lease_id, None)
                self._held_s[held.lease.priority].append(max(0.0, now - held.lease.taken_at))
                return None
            return self._end(held, now, RELEASED)

    def end_gpus(self, gpus: Iterable[int]) -> int:
        """End every lease on the GPUs `gpus` (gone FAILED or UNKNOWN); returns how many ended."""
        now = self._clock()
        ended = 0
        with self._lock:
            for gpu in gpus:
                if gpu < len(self._by_gpu):
                    for held in list(self._by_gpu[gpu].values()):
                        self._end(held, now, GPU_OUT)
                        ended += 1
        return ended

    def end_out(self, decision: NodeDecision) -> int:
        """End the leases on every GPU `decision` has FAILED or UNKNOWN (DESIGN §2); returns how many.

        A GPU the decision no longer lists at all (gone from the node) is out too, once some GPU
        is listed (before the first sample none is).
        """
        out = [gpu.index for gpu in decision.gpus if gpu.state in OUT]
        if decision.gpus:
            listed = {gpu.index for gpu in decision.gpus}
            out += [gpu for gpu in range(len(self._by_gpu)) if gpu not in listed]
        return self.end_gpus(out) if out else 0

    def leases(self) -> Leases:
        """Every GPU's open leases and recent releases, and each class's recent held times, for the policy.

        Leases past their deadline end first.
        """
        now = self._clock()
        with self._lock:
            self._expire(now)
            return Leases(
                gpus=MappingProxyType(
                    {
                        gpu: Ledger(
                            taken=self.totals[gpu],
                            open=tuple(h.lease for h in self._by_gpu[gpu].values()),
                            released=tuple(self._released[gpu]),
                        )
                        for gpu in range(len(self.totals))
                    }
                ),
                held_s=MappingProxyType({cls: tuple(held) for cls, held in self._held_s.items()}),
            )

    def open_counts(self) -> dict[tuple[int, PriorityClass], int]:
        """Open leases by (GPU index, class), every class of every GPU seen named."""
        with self._lock:
            return dict(self._open_counts)

    def ended_counts(self) -> dict[tuple[PriorityClass, str], int]:
        """Leases ended since the start, by (class, how)."""
        with self._lock:
            return dict(self._ended)

    def durations(self) -> dict[PriorityClass, tuple[tuple[int, ...], float]]:
        """Per class: released leases per DURATION_BUCKETS_S bucket (not cumulative), and their sum, s."""
        with self._lock:
            return {cls: (tuple(h.counts), h.total_s) for cls, h in self._durations.items()}

    @property
    def open(self) -> int:
        """Open leases on every GPU."""
        return len(self._open)

    def _expire(self, now: float) -> None:
        """End the leases whose deadline is before `now` (the lock is held)."""
        seconds = self._due_seconds
        while seconds and seconds[0] <= now:
            second = seconds[0]
            bucket = self._due[second]
            due = [lease_id for lease_id, deadline_at in bucket.items() if deadline_at < now]
            for lease_id in due:
                self._end(self._open[lease_id], now, EXPIRED)
            if second + 1 > now:
                return  # the bucket of this second: the rest of it is not due yet
            heapq.heappop(seconds)
            del self._due[second]

    def _end(self, held: Held, now: float, how: str) -> Ended:
        """End `held` at `now` (the lock is held)."""
        del self._open[held.id]
        self._due[math.floor(held.lease.deadline_at)].pop(held.id)
        del self._by_gpu[held.gpu][held.lease.number]
        self._open_counts[held.gpu, held.lease.priority] -= 1
        lease = held.lease
        held_s = max(0.0, now - lease.taken_at)
        self._ended[lease.priority, how] += 1
        self.changes += 1
        if how == EXPIRED:
            self._expired[held.id] = lease
            if len(self._expired) > LATE_RELEASES:
                self._expired.popitem(last=False)
        if how == RELEASED:
            self._released[held.gpu].append((lease.number, now))
            self._held_s[lease.priority].append(held_s)
            self._durations[lease.priority].add(held_s)
        return Ended(held, held_s, how)
