"""Admissions the samples do not show yet: matched to power steps, kept to the horizon, dropped on FAILED."""

from __future__ import annotations

from gpuwatch.policy.reservations import Ledger, dropped, matched

JOB_W = 200.0


def ledger(*times: float, total: int | None = None) -> Ledger:
    """Admissions numbered 1.. at `times` (the book's running count `total`, default their number)."""
    count = len(times) if total is None else total
    first = count - len(times) + 1
    return Ledger(count, tuple((first + i, at) for i, at in enumerate(times)))


class TestMatched:
    """Which admissions still count against the slots after a reading."""

    def test_admissions_after_the_reading_stay_reserved(self):
        result = matched(ledger(10.2, 10.4), 0, 10.0, None, JOB_W)
        assert (result.reserved, result.shown_through, result.counted) == (2, 0, 2)

    def test_a_rise_of_one_job_shows_the_oldest(self):
        result = matched(ledger(9.6, 9.8), 0, 10.0, 210.0, JOB_W)
        assert (result.reserved, result.shown_through) == (1, 1)

    def test_a_rise_of_two_jobs_shows_two(self):
        result = matched(ledger(9.5, 9.6, 9.8), 0, 10.0, 390.0, JOB_W)
        assert (result.reserved, result.shown_through) == (1, 2)

    def test_a_rise_never_shows_an_admission_taken_after_the_reading(self):
        result = matched(ledger(10.5), 0, 10.0, 200.0, JOB_W)
        assert (result.reserved, result.shown_through) == (1, 0)

    def test_noise_shows_nothing(self):
        result = matched(ledger(9.6), 0, 10.0, 60.0, JOB_W)
        assert result.reserved == 1

    def test_without_a_rise_it_stays_reserved_until_it_leaves_the_book(self):
        # A job that has not started yet (or started as another ended) shows no step: its slot
        # stays taken until the book drops it after the horizon.
        result = matched(ledger(8.9, 9.5), 0, 10.0, 0.0, JOB_W)
        assert (result.reserved, result.shown_through) == (2, 0)
        later = matched(ledger(9.5, total=2), result.shown_through, 69.0, 0.0, JOB_W)
        assert (later.reserved, later.shown_through) == (1, 1)

    def test_shown_ones_are_not_counted_again(self):
        result = matched(ledger(9.6, 9.8), 1, 10.0, None, JOB_W)
        assert (result.reserved, result.shown_through) == (1, 1)

    def test_admissions_gone_from_the_book_are_through(self):
        result = matched(ledger(9.8, total=7), 0, 10.0, None, JOB_W)
        assert (result.reserved, result.shown_through, result.counted) == (1, 6, 7)

    def test_unknown_job_power_shows_nothing_by_its_step(self):
        result = matched(ledger(9.6), 0, 10.0, 400.0, None)
        assert result.reserved == 1


class TestDropped:
    """A GPU out or unknown keeps none of its admissions."""

    def test_everything_is_through(self):
        result = dropped(ledger(9.6, 9.8, 10.1))
        assert (result.reserved, result.shown_through, result.counted) == (0, 3, 3)
