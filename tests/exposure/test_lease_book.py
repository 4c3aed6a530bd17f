"""The lease book alone: ids, expiry, late releases that still teach, live counts in /v1/state."""

from __future__ import annotations

import json

from serve_helpers import gpu, node

from gpuwatch.exposure.board import Board, not_yet_sampled
from gpuwatch.exposure.leases import LeaseBook, well_formed
from gpuwatch.exposure.publication import AdmitRoute
from gpuwatch.policy.config import PolicyConfig
from gpuwatch.policy.decision import PriorityClass, Slots
from gpuwatch.sources.clock import ManualClock

DEFAULT = PriorityClass.DEFAULT


def book_at(clock: ManualClock, **settings: float) -> LeaseBook:
    return LeaseBook(PolicyConfig(**settings), clock=clock.monotonic)  # type: ignore[arg-type]


class TestLeaseBook:
    """Leases taken, released, expired; what the policy is handed."""

    def test_ids_are_opaque_and_distinct(self):
        book = book_at(ManualClock())
        ids = {book.take(0, DEFAULT, None).id for _ in range(200)}
        assert len(ids) == 200
        assert all(well_formed(lease_id) for lease_id in ids)

    def test_a_release_after_the_deadline_is_404_but_still_teaches(self):
        clock = ManualClock()
        book = book_at(clock, lease_grace_ratio=0.0, lease_grace_min_s=1.0)
        late = book.take(0, DEFAULT, 5.0)
        clock.advance(30.0)
        book.leases()  # the sampler's pass ends it: expired
        assert book.release(late.id) is None
        assert book.ended_counts()[DEFAULT, "expired"] == 1
        assert book.leases().held_s[DEFAULT] == (30.0,)
        assert book.release(late.id) is None  # taught once
        assert book.leases().held_s[DEFAULT] == (30.0,)

    def test_leases_end_at_their_own_deadline_within_a_second_and_released_ones_never_expire(self):
        clock = ManualClock()
        book = book_at(clock, lease_grace_ratio=0.0, lease_grace_min_s=0.0)
        clock.advance(100.2)
        # Deadlines at 105.2 and 105.7 s share one second's bucket; 106.5 s is the next one.
        early, late, next_second = (book.take(0, DEFAULT, s) for s in (5.0, 5.5, 6.3))
        released = book.take(0, DEFAULT, 5.0)
        assert book.release(released.id) is not None
        clock.advance(5.3)  # now 105.5: only the first is past its deadline

        def still_open() -> list[int]:
            return [lease.number for lease in book.leases().gpus[0].open]

        assert still_open() == [late.lease.number, next_second.lease.number]
        clock.advance(0.3)  # 105.8
        assert still_open() == [next_second.lease.number]
        clock.advance(1.0)  # 106.8
        assert still_open() == []
        ended = book.ended_counts()
        assert (ended[DEFAULT, "expired"], ended[DEFAULT, "released"]) == (3, 1)
        assert book.release(early.id) is None

    def test_a_request_said_duration_is_marked(self):
        book = book_at(ManualClock())
        said = book.take(0, DEFAULT, 9.0, requested=True)
        planned = book.take(0, DEFAULT, 9.0)
        assert (said.lease.requested, planned.lease.requested) == (True, False)

    def test_every_take_and_end_changes_the_count(self):
        book = book_at(ManualClock())
        before = book.changes
        lease = book.take(0, DEFAULT, None)
        book.release(lease.id)
        assert book.changes == before + 2


class TestStateFollowsTheBook:
    """/v1/state shows the leases open now, before the next decision."""

    def test_a_release_shows_at_once(self):
        board = Board("sim:test", lambda d, _now: d, book=book_at(ManualClock()))
        board.publish(node(gpu(0, slots=Slots(5, 5, 5))))
        answer = board.current.admit_answer(AdmitRoute.PLAIN, DEFAULT, None)
        assert answer.lease is not None
        taken = json.loads(board.current.state.body)["gpus"][0]
        assert (taken["leases"]["default"], taken["reserved"]) == (1, 1)
        assert board.book is not None
        board.book.release(answer.lease.id)
        after = json.loads(board.current.state.body)["gpus"][0]
        assert (after["leases"]["default"], after["reserved"]) == (0, 0)
        assert after["slots"]["default"] == 4  # a slot taken stays taken until the next decision


class TestGpusOut:
    """A GPU FAILED, UNKNOWN or gone from the node ends its leases (gpu_out)."""

    def test_a_gpu_gone_from_the_decision_ends_its_leases(self):
        book = book_at(ManualClock())
        gone = book.take(1, DEFAULT, None)
        kept = book.take(0, DEFAULT, None)
        assert book.end_out(not_yet_sampled()) == 0  # no GPU listed yet: nothing is known to be gone
        assert book.end_out(node(gpu(0, slots=Slots(1, 1, 1)))) == 1
        assert book.release(gone.id) is None
        assert book.release(kept.id) is not None
        assert book.ended_counts()[DEFAULT, "gpu_out"] == 1
