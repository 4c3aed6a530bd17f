"""What the model learns from: dequantised margins, held power, the trajectory fit, dropped readings."""

from __future__ import annotations

import math

import pytest
from policy_builders import drive, policy, reading, sample, snapshot

from gpuwatch.policy import reasons
from gpuwatch.policy.model import screen
from gpuwatch.policy.model.dequantise import Dequantiser, held_power_w
from gpuwatch.policy.model.trajectory import Measured, fit


def observe_all(times: list[float], true: list[float]) -> list[float]:
    """The dequantiser's estimates for whole-degree readings (ceil: NVML's margin) of `true`."""
    dequantiser, estimates = Dequantiser(), []
    for at, margin in zip(times, true, strict=True):
        dequantiser, estimate = dequantiser.observe(at, float(math.ceil(margin)))
        estimates.append(estimate)
    return estimates


class TestDequantiser:
    """Crossings of whole degrees place the true margin far closer than the readings do."""

    @pytest.mark.parametrize(
        ("start", "rate", "share"),
        [(30.3, 0.031, 0.6), (25.7, 0.13, 0.6), (38.1, 0.37, 0.75), (33.3, 0.77, 0.9)],
    )
    def test_estimate_stays_inside_the_reading_and_beats_it(self, start, rate, share):
        times = [float(t) for t in range(200)]
        true = [start - rate * t for t in times]
        estimates = observe_all(times, true)
        for estimate, margin in zip(estimates, true, strict=True):
            assert math.ceil(margin) - 1 <= estimate <= math.ceil(margin)
        late = range(100, 200)
        estimate_error = sum(abs(estimates[i] - true[i]) for i in late)
        reading_error = sum(abs(math.ceil(true[i]) - 0.5 - true[i]) for i in late)
        # It bends towards the far end of the reading's interval rather than run past it, so on a
        # straight fall it lags a little; at a crossing or more per sample, crossings are spread.
        assert estimate_error < share * reading_error

    def test_crossing_is_the_boundary_between_the_readings(self):
        dequantiser, _ = Dequantiser().observe(0.0, 10.0)
        dequantiser, _ = dequantiser.observe(1.0, 9.0)  # going down: crossed 9
        dequantiser, _ = dequantiser.observe(2.0, 10.0)  # going up: crossed 9 again
        assert [value for _, value in dequantiser.crossings] == [9.0, 9.0]
        assert dequantiser.rate_c_per_s(2.0) == 0.0

    def test_a_jump_of_several_degrees_is_several_crossings(self):
        dequantiser, _ = Dequantiser().observe(0.0, 10.0)
        dequantiser, _ = dequantiser.observe(1.0, 7.0)
        assert [value for _, value in dequantiser.crossings] == [9.0, 8.0, 7.0]

    def test_readings_with_decimals_are_taken_as_they_are(self):
        _, estimate = Dequantiser().observe(0.0, 12.34)
        assert estimate == 12.34


class TestHeldPower:
    """Noise within the band keeps the held power; a job's step replaces it."""

    def test_noise_is_held_and_a_step_is_not(self):
        assert held_power_w(400.0, 410.0, 700.0) == 400.0
        assert held_power_w(400.0, 600.0, 700.0) == 600.0
        assert held_power_w(None, 410.0, 700.0) == 410.0
        assert held_power_w(400.0, None, 700.0) is None


class TestTrajectory:
    """An exponential through the crossings gives the time to a margin at the present power."""

    @pytest.mark.parametrize(("steady", "tau"), [(-4.0, 450.0), (-2.0, 60.0), (-15.0, 150.0)])
    def test_time_to_zero_from_an_exponential_approach(self, steady, tau):
        times = [float(t) for t in range(600)]
        true = [steady + (30.0 - steady) * math.exp(-t / tau) for t in times]
        dequantiser = Dequantiser()
        for at, margin in zip(times, true, strict=True):
            dequantiser, _ = dequantiser.observe(at, float(math.ceil(margin)))
            if margin < 4.0:
                break
        now = at
        path = fit(dequantiser.crossings, -math.inf, now, tau_prior_s=120.0)
        assert path is not None
        actual = tau * math.log((margin - steady) / -steady)
        assert path.time_to_c(now, 0.0) == pytest.approx(actual, rel=0.1)

    def test_a_level_approach_never_reaches_the_limit(self):
        times = [float(t) for t in range(300)]
        dequantiser = Dequantiser()
        for at in times:
            dequantiser, _ = dequantiser.observe(at, float(math.ceil(10.0 + 20.0 * math.exp(-at / 60.0))))
        path = fit(dequantiser.crossings, -math.inf, 299.0, tau_prior_s=120.0)
        assert path is not None
        assert path.time_to_c(299.0, 0.0) is None

    def test_crossings_from_most_of_an_hour_ago_fit_without_overflow(self):
        # exp(age / tau) of a crossing 3000 s old at the grid's 4 s is past a float's range.
        steady, tau = 10.0, 1000.0
        crossings = tuple(
            (-tau * math.log((level - steady) / 10.0), level) for level in (19.0, 18.0, 17.0, 16.0, 15.0)
        )
        now = 3000.0
        path = fit(crossings, -math.inf, now, tau_prior_s=120.0)
        assert path is not None
        assert path.tau_s == pytest.approx(tau, rel=0.05)
        assert path.margin_c(now) == pytest.approx(steady + 10.0 * math.exp(-now / tau), abs=0.3)

    def test_too_few_crossings_fit_nothing(self):
        assert fit(((0.0, 10.0), (5.0, 9.0)), -math.inf, 6.0, tau_prior_s=120.0) is None

    def test_crossings_before_the_power_changed_are_left_out(self):
        crossings = tuple((float(t * 10), 30.0 - t) for t in range(10))
        assert fit(crossings, 75.0, 100.0, tau_prior_s=120.0) is None  # only 80 and 90 are after

    def test_the_rate_alone_when_no_curve_fits(self):
        measured = Measured(now=10.0, path=None, rate_c_per_s=-0.5)
        assert measured.time_to_c(5.0, 0.0) == pytest.approx(10.0)
        assert Measured(now=10.0, path=None, rate_c_per_s=0.1).time_to_c(5.0, 0.0) is None


class TestPublishedWhileFalling:
    """While the margin falls towards zero, a time to slowdown is always published."""

    def test_a_steady_fall_always_has_a_time(self):
        margins = [40.0 - t * 0.25 for t in range(150)]
        decisions = drive(policy(), [float(math.ceil(m)) for m in margins])
        late = [d.gpus[0] for d in decisions[30:]]
        assert all(g.time_to_slowdown_s is not None for g in late)
        assert {g.prediction_basis for g in late} == {"corrected"}
        last = late[-1]
        assert last.time_to_slowdown_s == pytest.approx(margins[-1] / 0.25, rel=0.15)


class TestDroppedReadings:
    """A reading the model cannot use is dropped from the fit, counted, and said in the reasons."""

    def history(self):
        p = policy()
        drive(p, [float(math.ceil(40.0 - t * 0.1)) for t in range(60)])
        return p

    def fit_of(self, p):
        return next(iter(p._tracks.values())).model.fit

    @pytest.mark.parametrize(
        ("fields", "why"),
        [
            ({"margin": 5.0}, screen.MARGIN_JUMP),
            ({"power_w": 1500.0}, screen.POWER_OVER_LIMIT),
        ],
    )
    def test_glitch_is_dropped_counted_and_said(self, fields, why):
        p = self.history()
        fitted = self.fit_of(p)
        margin = fields.pop("margin", 34.0)
        gpu = p.update(snapshot(60.0, sample(0, reading(60.0, margin, **fields)), sequence=61)).gpus[0]
        assert self.fit_of(p) is fitted  # nothing learned from it
        assert reasons.MODEL_INPUT_REJECTED in gpu.reasons
        assert why.replace("_", " ") in gpu.sentence
        assert dict(gpu.rejected_readings) == {why: 1}
        # The next good reading is learned from again, and the count stays.
        gpu = p.update(snapshot(61.0, sample(0, reading(61.0, 34.0)), sequence=62)).gpus[0]
        assert self.fit_of(p) is not fitted
        assert reasons.MODEL_INPUT_REJECTED not in gpu.reasons
        assert dict(gpu.rejected_readings) == {why: 1}

    def test_a_jump_toward_the_limit_still_moves_the_state(self):
        p = self.history()
        gpu = p.update(snapshot(60.0, sample(0, reading(60.0, 5.0)), sequence=61)).gpus[0]
        assert gpu.margin_c == 5.0
        assert gpu.state.severity > 0

    def test_a_jump_that_holds_is_real(self):
        p = self.history()
        for i in range(screen.JUMP_CONFIRMATIONS):
            p.update(snapshot(60.0 + i, sample(0, reading(60.0 + i, 5.0)), sequence=61 + i))
        assert self.fit_of(p).nodes[-1].margin_c == pytest.approx(4.5)  # started again from the jump

    def test_nan_margin_is_no_margin(self):
        p = self.history()
        gpu = p.update(snapshot(60.0, sample(0, reading(60.0, math.nan)), sequence=61)).gpus[0]
        assert gpu.state.value == "unknown"
        assert reasons.NO_MARGIN in gpu.reasons
        assert dict(gpu.rejected_readings) == {screen.NOT_A_NUMBER: 1}

    def test_nan_power_does_not_reach_the_fit(self):
        p = self.history()
        fitted = self.fit_of(p)
        p.update(snapshot(60.0, sample(0, reading(60.0, 34.0, power_w=math.nan)), sequence=61))
        assert self.fit_of(p).nodes == fitted.nodes  # a reading without power teaches the fit nothing

    def test_a_clock_going_backwards_is_counted(self):
        p = self.history()
        fitted = self.fit_of(p)
        gpu = p.update(snapshot(60.0, sample(0, reading(58.5, 34.0)), sequence=61)).gpus[0]
        assert self.fit_of(p) is fitted
        assert dict(gpu.rejected_readings) == {screen.CLOCK_BACKWARDS: 1}
