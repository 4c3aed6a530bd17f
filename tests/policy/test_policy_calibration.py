"""The forecast's own errors: scored against the readings, pooled by the path's source, as allowances."""

from __future__ import annotations

import itertools
import math

import pytest
from policy_builders import drive, policy

from gpuwatch.policy import reasons
from gpuwatch.policy.model.calibration import (
    CHECK_SHARES,
    EARNED_AFTER,
    ERRORS_KEPT,
    KEPT_PER_HORIZON,
    Calibration,
    Made,
    allowance,
    start_cost,
)
from gpuwatch.policy.model.thermal_model import RcParameters

HORIZON_S = 60.0
PRIOR_C = 2.0
CHECKS_S = [share * HORIZON_S for share in CHECK_SHARES]
MODEL = "model"

# A plant the forecast knows exactly: settled at 40 °C of margin drawing nothing, 0.05 °C/W.
PLANT = RcParameters(
    tau_s=120.0, resistance_c_per_w=0.05, zero_power_margin_c=40.0, die_resistance_c_per_w=0.02
)


def _drive(  # noqa: PLR0913 - the plant, the forecast and its pool, each its own keyword
    calibration: Calibration,
    *,
    start_s: float,
    seconds: int,
    margin_at_s,
    power_at_s,
    forecast_plant: RcParameters = PLANT,
    drawn_from: str = MODEL,
) -> Calibration:
    """One reading a second: each scored, then a forecast of `forecast_plant` made from it and kept."""
    for second in range(seconds):
        now = start_s + second
        margin_c, power_w = margin_at_s(now), power_at_s(now)
        calibration = calibration.scored(now, margin_c, power_w, HORIZON_S)
        path = forecast_plant.path(margin_c, power_w)
        made = Made(now, path, forecast_plant.step_response_c_per_w, drawn_from)
        calibration = calibration.with_forecast(made, HORIZON_S)
    return calibration


def _steady(power_w: float):
    """A plant settled at `power_w`: its margin never moves."""
    return lambda _now: PLANT.steady_margin_c(power_w), lambda _now: power_w


def test_a_new_board_keeps_the_prior_until_each_horizon_has_its_scores() -> None:
    margin, power = _steady(300.0)
    calibration = _drive(
        Calibration(),
        start_s=0.0,
        seconds=int(CHECKS_S[0]) + EARNED_AFTER - 2,
        margin_at_s=margin,
        power_at_s=power,
    )
    quantiles = calibration.quantiles_c(MODEL, 0.9, PRIOR_C)
    assert quantiles == pytest.approx([PRIOR_C * share for share in CHECK_SHARES])
    calibration = _drive(calibration, start_s=20.0, seconds=2, margin_at_s=margin, power_at_s=power)
    earned = calibration.quantiles_c(MODEL, 0.9, PRIOR_C)
    assert earned[0] == pytest.approx(0.0, abs=1e-9)  # the 5 s horizon has earned its own
    assert earned[-1] == pytest.approx(PRIOR_C)  # the 60 s one not yet


def test_a_forecast_that_holds_earns_no_allowance_while_jobs_end() -> None:
    # The plant is the forecast's model, settled at 500 W, and a job ends every 7 s: every
    # change of the margin is one its step response foresees.
    def power_w(now: float) -> float:
        return 500.0 - 30.0 * (int(now) // 7)

    def margin_c(now: float) -> float:
        moved = sum(-30.0 * PLANT.step_response_c_per_w(now - at) for at in range(7, int(now) + 1, 7))
        return PLANT.steady_margin_c(500.0) - moved

    calibration = _drive(Calibration(), start_s=0.0, seconds=100, margin_at_s=margin_c, power_at_s=power_w)
    assert all(len(scores) >= EARNED_AFTER for scores in calibration.errors[MODEL])
    # What is left is the die's lag behind the steps, which the forecasts here leave out (0.01 °C).
    assert max(calibration.quantiles_c(MODEL, 0.9, PRIOR_C)) < 0.05


def test_a_forecast_is_not_scored_across_a_job_starting() -> None:
    """A new job's heat is what the slots count per job; the path's error is the rest."""
    margin, _ = _steady(300.0)
    calibration = _drive(
        Calibration(), start_s=0.0, seconds=80, margin_at_s=margin, power_at_s=lambda _now: 300.0
    )
    scored = [len(scores) for scores in calibration.errors[MODEL]]
    # A job starts at 80 s and its die jumps 4 °C more than the forecast's step response says.
    jumped = lambda now: margin(now) - 4.0  # noqa: E731 - one expression
    calibration = _drive(
        calibration, start_s=80.0, seconds=4, margin_at_s=jumped, power_at_s=lambda _now: 500.0
    )
    # Only the forecasts made after the start (none due yet) and none of those before are scored.
    assert [len(scores) for scores in calibration.errors[MODEL]] == [min(ERRORS_KEPT, n) for n in scored]


def test_a_surprise_widens_the_allowance_and_it_narrows_once_the_forecast_holds_again() -> None:
    margin, power = _steady(300.0)
    calibration = _drive(Calibration(), start_s=0.0, seconds=130, margin_at_s=margin, power_at_s=power)
    assert max(calibration.quantiles_c(MODEL, 0.9, PRIOR_C)) == pytest.approx(0.0, abs=1e-9)
    # A fan fails at 130 s: the margin falls 0.1 °C/s while the forecast still sees it settled.
    failed = lambda now: margin(now) - 0.1 * (now - 130.0)  # noqa: E731 - one expression
    calibration = _drive(calibration, start_s=130.0, seconds=70, margin_at_s=failed, power_at_s=power)
    widened = calibration.quantiles_c(MODEL, 0.9, PRIOR_C)
    # At least the fall over each horizon (0.1 °C/s): the forecast even sees the margin recover.
    assert [round(error_c, 1) for error_c in widened] >= [0.5, 1.5, 3.0, 6.0]
    assert all(error_c >= 0.1 * check_s for error_c, check_s in zip(widened, CHECKS_S, strict=True))
    # The model has caught up (its forecast now follows the fall): the surprise's scores age out.
    calibration = _drive_following(calibration, start_s=200.0, seconds=ERRORS_KEPT + 70, margin_at_s=failed)
    assert max(calibration.quantiles_c(MODEL, 0.9, PRIOR_C)) < 0.05


def _drive_following(calibration: Calibration, *, start_s: float, seconds: int, margin_at_s) -> Calibration:
    """Readings of a margin falling 0.1 °C/s, each forecast as falling so: a forecast that holds."""
    for second in range(seconds):
        now = start_s + second
        margin_c = margin_at_s(now)
        calibration = calibration.scored(now, margin_c, 300.0, HORIZON_S)
        made = Made(now, lambda h, m=margin_c: m - 0.1 * h, PLANT.step_response_c_per_w, MODEL)
        calibration = calibration.with_forecast(made, HORIZON_S)
    return calibration


def test_each_pool_is_scored_on_its_own_forecasts() -> None:
    margin, power = _steady(300.0)
    optimistic = RcParameters(
        PLANT.tau_s, PLANT.resistance_c_per_w, PLANT.zero_power_margin_c + 3.0, PLANT.die_resistance_c_per_w
    )
    calibration = _drive(
        Calibration(), start_s=0.0, seconds=130, margin_at_s=margin, power_at_s=power, drawn_from="trajectory"
    )
    calibration = _drive(
        calibration,
        start_s=130.0,
        seconds=130,
        margin_at_s=margin,
        power_at_s=power,
        forecast_plant=optimistic,
    )
    # The optimistic model starts 0 °C off (from the reading) and drifts towards 3 °C too warm.
    assert calibration.quantiles_c(MODEL, 0.9, PRIOR_C)[-1] > 1.0
    assert max(calibration.quantiles_c("trajectory", 0.9, PRIOR_C)) == pytest.approx(0.0, abs=1e-9)
    assert calibration.quantiles_c("trend", 0.9, PRIOR_C) == pytest.approx(
        [PRIOR_C * s for s in CHECK_SHARES]
    )


def test_a_reading_judged_again_is_not_scored_twice() -> None:
    margin, power = _steady(300.0)
    calibration = _drive(Calibration(), start_s=0.0, seconds=20, margin_at_s=margin, power_at_s=power)
    again = calibration.scored(19.0, margin(19.0) - 5.0, 300.0, HORIZON_S)
    assert again is calibration


def test_what_it_keeps_is_bounded_at_any_sampling_interval() -> None:
    calibration = Calibration()
    for tenth in range(5 * 600):  # 5 minutes at 0.1 s
        now = tenth / 10
        calibration = calibration.scored(now, 30.0, 600.0 - 0.01 * tenth, HORIZON_S)
        calibration = calibration.with_forecast(
            Made(now, lambda _h: 30.0, PLANT.step_response_c_per_w, MODEL), HORIZON_S
        )
    assert len(calibration.made) <= KEPT_PER_HORIZON + 1
    assert all(len(scores) <= ERRORS_KEPT for scores in calibration.errors[MODEL])
    assert all(when > calibration.made[0].at for when, _ in calibration.steps)


def test_the_allowance_starts_at_zero_never_falls_and_grows_past_the_horizon() -> None:
    along = allowance((0.4, 0.2, 1.0, 2.0), HORIZON_S)
    assert along(0.0) == 0.0
    assert along(2.5) == pytest.approx(0.2)  # half way to the 5 s check
    assert along(15.0) == pytest.approx(0.4)  # the 15 s check's 0.2 does not undercut the 5 s one
    assert along(45.0) == pytest.approx(1.5)
    assert along(60.0) == pytest.approx(2.0)
    assert along(120.0) == pytest.approx(4.0)  # a job longer than the horizon: in proportion
    samples = [along(h / 2) for h in range(241)]
    assert all(later >= earlier for earlier, later in itertools.pairwise(samples))
    assert not math.isnan(along(1e9))


def test_a_new_board_is_held_back_by_its_prior_and_earns_its_slots() -> None:
    """A GPU settled 15 °C from its limit: wide enough for jobs, not for a 20 °C prior."""
    engine = policy(forecast_error_prior_c=20.0)
    decisions = drive(engine, [15.0] * 90)
    first = decisions[12].gpus[0]
    assert first.slots.default == 0
    assert reasons.FORECAST_UNCERTAIN in first.reasons
    assert "held back by its own uncertainty, not by heat" in first.sentence
    assert dict(first.forecast_error_c)[60.0] == pytest.approx(20.0)
    settled = decisions[-1].gpus[0]
    assert settled.slots.default > 0
    assert reasons.FORECAST_UNCERTAIN not in settled.reasons
    # Every horizon has earned its own allowance: the margin held as forecast.
    assert max(error_c for _, error_c in settled.forecast_error_c) < 0.5


def test_a_board_that_surprises_its_forecast_keeps_a_wider_allowance() -> None:
    engine = policy(forecast_error_prior_c=PRIOR_C, start_error_prior_ratio=0.5)
    settled = drive(engine, [30.0] * 120)[-1].gpus[0]
    quiet = dict(settled.forecast_error_c)
    # Then the margin falls a degree every 4 s at the same power: a fan failing.
    # Its path is no longer the settled model's: the trend's, then the trajectory's, each on its
    # own record (here none yet, so the prior).
    falling = [30.0 - (second // 4) for second in range(40)]
    surprised = drive(engine, falling, start=120.0)[-1].gpus[0]
    widened = dict(surprised.forecast_error_c)
    assert max(quiet.values()) < 0.01
    assert widened[15.0] > quiet[15.0] + 0.2
    assert widened[60.0] >= 1.0


def test_jobs_that_cost_twice_their_forecast_double_what_the_next_start_is_planned_to_cost() -> None:
    # The board's response is twice the forecast's (a fan gone, a cooler worse than the profile);
    # the path at present power is right. A job of 50 W starts every 10 s.
    doubled = RcParameters(PLANT.tau_s, 2 * PLANT.resistance_c_per_w, 40.0, 2 * PLANT.die_resistance_c_per_w)

    def power_w(now: float) -> float:
        return 300.0 + 50.0 * (int(now) // 10)

    def margin_c(now: float, until: float | None = None) -> float:
        """The board's margin at `now`, with the starts up to `until` (default: all)."""
        starts = range(10, int(now if until is None else until) + 1, 10)
        return doubled.steady_margin_c(300.0) - sum(
            50.0 * doubled.step_response_c_per_w(now - at) for at in starts
        )

    calibration = Calibration()
    assert calibration.start_ratios(0.9, 0.5) == (0.5,) * len(CHECK_SHARES)
    for second in range(200):
        now = float(second)
        calibration = calibration.scored(now, margin_c(now), power_w(now), HORIZON_S)
        path = lambda h, t=now: margin_c(t + h, until=t)  # noqa: E731 - the board's own path
        calibration = calibration.with_forecast(
            Made(now, path, PLANT.step_response_c_per_w, MODEL), HORIZON_S
        )
    ratios = calibration.start_ratios(0.9, 0.5)
    assert ratios == pytest.approx((1.0,) * len(CHECK_SHARES), abs=0.02)
    planned = start_cost(ratios, PLANT.step_response_c_per_w, HORIZON_S)
    for ahead_s in (1.0, 5.0, 20.0, 60.0, 120.0):
        assert planned(ahead_s) == pytest.approx(doubled.step_response_c_per_w(ahead_s), rel=0.02)
    # The path itself held, as far as it could be checked between two starts.
    assert calibration.quantiles_c(MODEL, 0.9, PRIOR_C)[0] < 0.05
