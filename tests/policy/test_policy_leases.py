"""Leases matched against the power: starts shown by rises, releases and unreleased ends by falls."""

from __future__ import annotations

from gpuwatch.policy.decision import PriorityClass
from gpuwatch.policy.leases import Lease, LeaseMemory, Ledger, dropped, matched

JOB_W = 200.0


def lease(number: int, taken_at: float, expected_s: float | None = None) -> Lease:
    return Lease(number, taken_at, PriorityClass.DEFAULT, expected_s, taken_at + (expected_s or 60.0) + 5.0)


def ledger(*leases: Lease, released: tuple[tuple[int, float], ...] = ()) -> Ledger:
    return Ledger(taken=max((x.number for x in leases), default=0), open=leases, released=released)


def match(book: Ledger, memory: LeaseMemory, step_w: float | None, *, job_w: float | None = JOB_W):
    return matched(book, memory, reading_at=10.0, previous_at=9.0, step_w=step_w, job_power_w=job_w)


class TestStarts:
    """A rise of whole jobs shows the leases taken before the reading, oldest first."""

    def test_leases_after_the_reading_stay_pending(self):
        result = match(ledger(lease(1, 10.2), lease(2, 10.4)), LeaseMemory(), None)
        assert (len(result.pending), len(result.running), result.counted) == (2, 0, 2)

    def test_a_rise_of_one_job_shows_the_oldest(self):
        result = match(ledger(lease(1, 9.6), lease(2, 9.8)), LeaseMemory(), 210.0)
        assert [x.number for x in result.running] == [1]
        assert [x.number for x in result.pending] == [2]

    def test_a_rise_of_two_jobs_shows_two(self):
        result = match(ledger(lease(1, 9.5), lease(2, 9.6), lease(3, 9.8)), LeaseMemory(), 390.0)
        assert result.memory.shown_through == 2

    def test_a_rise_never_shows_a_lease_taken_after_the_reading(self):
        result = match(ledger(lease(1, 10.5)), LeaseMemory(), 200.0)
        assert (len(result.pending), result.memory.shown_through) == (1, 0)

    def test_noise_shows_nothing(self):
        assert len(match(ledger(lease(1, 9.6)), LeaseMemory(), 60.0).pending) == 1

    def test_unknown_job_power_shows_nothing(self):
        assert len(match(ledger(lease(1, 9.6)), LeaseMemory(), 400.0, job_w=None).pending) == 1

    def test_a_start_hidden_by_a_release_still_shows(self):
        # One job released and another started in the same interval: no net step, one start.
        book = ledger(lease(2, 9.5), released=((1, 9.4),))
        result = match(book, LeaseMemory(shown_through=1), 5.0)
        assert [x.number for x in result.running] == [2]
        assert result.released_shown == 1


class TestEnds:
    """A fall that no release explains is a job ending unreleased: its planned fall is forgotten."""

    def test_a_released_jobs_fall_is_explained(self):
        book = ledger(lease(2, 5.0, 8.0), released=((1, 9.5),))
        result = match(book, LeaseMemory(shown_through=2), -200.0)
        assert [x.number for x in result.running] == [2]
        assert result.released_shown == 1
        assert not result.started_between

    def test_an_unexplained_fall_ends_the_lease_planned_to_end_soonest(self):
        book = ledger(lease(1, 2.0, 30.0), lease(2, 5.0, 6.0), lease(3, 6.0))
        result = match(book, LeaseMemory(shown_through=3), -190.0)
        assert [x.number for x in result.running] == [1, 3]
        assert result.memory.seen_ended == {2}

    def test_seen_ended_leases_stay_ended_and_are_forgotten_once_closed(self):
        book = ledger(lease(1, 2.0, 30.0), lease(3, 6.0))
        result = match(book, LeaseMemory(shown_through=3, seen_ended=frozenset({2, 3})), 0.0)
        assert result.memory.seen_ended == {3}
        assert [x.number for x in result.running] == [1]

    def test_a_reading_comes_before_what_happens_at_its_instant(self):
        # Released at the previous reading's instant: after that reading, so in this step. Taken
        # at this reading's instant: not in it.
        book = ledger(lease(2, 5.0), lease(3, 10.0), released=((1, 9.0),))
        result = match(book, LeaseMemory(shown_through=2), -200.0)
        assert (result.released_shown, result.memory.seen_ended, result.started_between) == (1, set(), False)
        assert [x.number for x in result.pending] == [3]

    def test_releases_before_the_step_are_not_counted_in_it(self):
        book = ledger(lease(2, 5.0), released=((1, 8.5),))
        result = match(book, LeaseMemory(shown_through=2), 0.0)
        assert result.released_shown == 0


class TestDropped:
    """A GPU out or unknown plans nothing from its leases."""

    def test_everything_is_through(self):
        result = dropped(ledger(lease(1, 9.6), lease(2, 9.8), lease(3, 10.1)), LeaseMemory())
        assert (result.open, result.memory.shown_through, result.counted) == (0, 3, 3)


class TestReleasesOutOfStep:
    """Releases that come before or after their fall, or while the job still draws, show no start."""

    def test_a_fall_seen_then_its_release_shows_nothing(self):
        # Lease 1 running, 2 pending. 1's fall came unreleased: seen ended.
        book = ledger(lease(1, 2.0, 8.0), lease(2, 5.0))
        first = match(book, LeaseMemory(shown_through=1), -200.0)
        assert first.memory.seen_ended == {1}
        # Then 1's release comes, with no power step: 2 has not started.
        later = matched(
            ledger(lease(2, 5.0), released=((1, 10.5),)),
            first.memory,
            reading_at=11.0,
            previous_at=10.0,
            step_w=0.0,
            job_power_w=JOB_W,
        )
        assert [x.number for x in later.pending] == [2]
        assert later.released_shown == 0

    def test_a_release_before_its_fall_shows_no_start(self):
        # Lease 1 running is released, its power still drawn at the reading; 2 was taken earlier.
        book = ledger(lease(2, 5.0), released=((1, 9.5),))
        result = match(book, LeaseMemory(shown_through=1), 0.0)
        assert [x.number for x in result.pending] == [2]
        # The fall one interval later is unexplained: 2 is not shown, and nothing running ends.
        later = matched(
            book, result.memory, reading_at=11.0, previous_at=10.0, step_w=-200.0, job_power_w=JOB_W
        )
        assert ([x.number for x in later.pending], later.memory.seen_ended) == ([2], set())

    def test_a_start_hidden_by_a_release_in_the_same_interval_shows(self):
        book = ledger(lease(2, 9.6), released=((1, 9.5),))
        result = match(book, LeaseMemory(shown_through=1), 10.0)
        assert [x.number for x in result.running] == [2]
