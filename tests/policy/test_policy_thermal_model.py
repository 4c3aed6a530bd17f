"""Tests of the RC thermal model: its physics, the online fit against the simulator, and the forecasts."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gpuwatch.clock import ManualClock
from gpuwatch.policy.config import PolicyConfig
from gpuwatch.policy.forecast import SLOWDOWN_MARGIN_C, Basis, Load, forecast
from gpuwatch.policy.history import Point, appended, margin_slope
from gpuwatch.policy.thermal_model import RcFit, RcParameters, free_run_error_c, margin_estimate_c
from gpuwatch.sources.sim import SimSource
from gpuwatch.sources.sim.scenario import LoadSettings, Scenario

CONFIG = PolicyConfig()
PARAMS = RcParameters(tau_s=20.0, resistance_c_per_w=0.05, zero_power_margin_c=60.0)


def start(point: Point) -> RcFit:
    return RcFit.start(point, step_s=1.0, tau_prior_s=20.0, resistance_prior_c_per_w=0.05, memory_s=30.0)


def sim(sku: str = "H100", *, inlet_c: float = 25.0, jobs: int = 1) -> tuple[SimSource, ManualClock]:
    clock = ManualClock()
    scenario = Scenario(skus=(sku,), inlet_c=inlet_c, load=LoadSettings(jobs=jobs, arrival_per_s=0.0))
    return SimSource(scenario, clock, seed=3), clock


def learn(source: SimSource, clock: ManualClock, seconds: int, fit: RcFit | None = None, window=()):
    """Read the simulated GPU once a second into the fit and the window."""
    for _ in range(seconds):
        value = source.read().gpus[0].reading
        point = Point(value.monotonic, value.margin_c, value.power_w)
        fit = start(point) if fit is None else fit.update(point)
        window = appended(window, point, 30)
        clock.advance(1.0)
    return fit, window


class TestRcParameters:
    """Closed-form RC predictions: steady margin, margin after a time, time to a margin, sustainable power."""

    def test_steady_margin(self):
        assert PARAMS.steady_margin_c(400.0) == pytest.approx(40.0)

    def test_margin_after_one_time_constant(self):
        assert PARAMS.margin_after_c(60.0, 400.0, 20.0) == pytest.approx(40.0 + 20.0 * math.exp(-1))

    def test_time_to_margin_inverts_margin_after(self):
        seconds = PARAMS.time_to_margin_s(30.0, 15.0, 1000.0)
        assert PARAMS.margin_after_c(30.0, 1000.0, seconds) == pytest.approx(15.0)

    @pytest.mark.parametrize(("target", "power"), [(10.0, 800.0), (50.0, 400.0)])
    def test_target_beyond_the_steady_state_is_never_reached(self, target, power):
        assert PARAMS.time_to_margin_s(30.0, target, power) is None

    def test_sustainable_power_settles_at_the_margin(self):
        assert PARAMS.steady_margin_c(PARAMS.sustainable_power_w(15.0)) == pytest.approx(15.0)


class TestFitOnSimulatedHeatUp:
    """Recursive least squares recovers the simulator's true tau and R from whole-degree readings."""

    @pytest.mark.parametrize(
        ("sku", "cooling", "tau", "resistance"), [("H100", 1.0, 20.0, 0.05), ("A100", 2.0, 40.0, 0.10)]
    )
    def test_converges_to_the_true_parameters(self, sku, cooling, tau, resistance):
        source, clock = sim(sku)
        source.set_cooling(cooling)
        clock.advance(400.0)  # settle with this cooling before the first reading
        fit, window = learn(source, clock, 60)
        for jobs in (3, 0, 2):
            source.set_jobs(0, jobs)
            fit, window = learn(source, clock, 90, fit, window)
        params = fit.parameters
        assert params.tau_s == pytest.approx(tau, rel=0.15)
        assert params.resistance_c_per_w == pytest.approx(resistance, rel=0.15)
        assert fit.converged(window, CONFIG.slope_min_samples)

    def test_tracks_a_cooling_fault(self):
        source, clock = sim(jobs=4)
        fit, window = learn(source, clock, 120)
        source.set_cooling(2.2)  # tau 44 s; settles at 25 + 0.11 * 700 = 102 °C, 15 °C past the limit
        fit, window = learn(source, clock, 30, fit, window)
        assert fit.restarted_at > 120.0  # the change was detected
        assert fit.parameters.tau_s == pytest.approx(44.0, rel=0.25)
        assert fit.parameters.steady_margin_c(700.0) == pytest.approx(-15.0, abs=5.0)

    def test_irregular_sampling_converges_alike(self):
        source, clock = sim()
        fit = window = None
        window = ()
        steps = [1.0, 0.5, 2.0, 1.5, 1.0, 3.0]
        for i in range(300):
            if i == 50:
                source.set_jobs(0, 4)
            value = source.read().gpus[0].reading
            point = Point(value.monotonic, value.margin_c, value.power_w)
            fit = start(point) if fit is None else fit.update(point)
            window = appended(window, point, 30)
            clock.advance(steps[i % len(steps)])
        assert fit.parameters.tau_s == pytest.approx(20.0, rel=0.15)

    def test_out_of_order_and_powerless_readings_are_ignored(self):
        fit = start(Point(10.0, 30.0, 400.0))
        assert fit.update(Point(9.0, 20.0, 400.0)) is fit
        assert fit.update(Point(11.0, 20.0, None)) is fit

    def test_start_needs_power(self):
        with pytest.raises(ValueError, match="power"):
            start(Point(0.0, 30.0, None))


class TestMarginEstimate:
    """The current margin is estimated from several whole-degree readings, closer than any one of them."""

    def test_estimate_beats_the_rounded_reading(self):
        estimate_errors, reading_errors = [], []
        for offset in range(40):  # the rounding falls differently for each starting margin
            times = [float(t) for t in range(12)]
            true = [PARAMS.margin_after_c(40.0 + offset / 40, 800.0, t) for t in times]
            window = [Point(t, float(math.ceil(m)), 800.0) for t, m in zip(times, true, strict=True)]
            # Whole-degree readings run half a degree above the true margin on average (ceil).
            estimate_errors.append(abs(margin_estimate_c(PARAMS, window) - (true[-1] + 0.5)))
            reading_errors.append(abs(window[-1].margin_c - (true[-1] + 0.5)))
        assert sum(estimate_errors) < 0.5 * sum(reading_errors)

    def test_free_run_error_is_small_for_the_true_model(self):
        window = [Point(float(t), PARAMS.margin_after_c(40.0, 800.0, t), 800.0) for t in range(10)]
        assert free_run_error_c(PARAMS, window) == pytest.approx(0.0, abs=1e-9)


class TestSlope:
    """Slope regression needs ten readings and ignores flicker that is not a trend."""

    def test_too_few_readings(self):
        assert margin_slope([Point(float(t), 30.0 - t, 400.0) for t in range(9)], 10) is None

    def test_steady_decline(self):
        window = [Point(float(t), 30.0 - t // 2, 400.0) for t in range(20)]
        assert margin_slope(window, 10) == pytest.approx(-0.5, rel=0.05)

    @given(st.lists(st.sampled_from([13.0, 14.0, 15.0]), min_size=10, max_size=30))
    def test_flicker_never_predicts_slowdown_within_30_s(self, margins):
        window = tuple(Point(float(t), m, None) for t, m in enumerate(margins))
        result = forecast(None, window, 13.0, Load(None, 700.0, 200.0), CONFIG)
        assert result.basis is Basis.SLOPE
        assert result.time_to_slowdown_s is None or result.time_to_slowdown_s >= 30.0


class TestForecast:
    """Forecasts rest on the converged model, else on the slope (readings without power), else nothing."""

    def test_no_history_no_prediction(self):
        window = (Point(0.0, 30.0, 400.0),)
        assert forecast(start(window[0]), window, 30.0, Load(400.0, 700.0, 200.0), CONFIG).basis is Basis.NONE

    def test_slope_before_the_fit_exists(self):
        window = tuple(Point(float(t), 20.0 - t // 2, None) for t in range(12))
        result = forecast(None, window, 15.0, Load(None, 700.0, 200.0), CONFIG)
        assert result.basis is Basis.SLOPE
        assert result.time_to_slowdown_s == pytest.approx((15.0 - SLOWDOWN_MARGIN_C) / 0.5, rel=0.1)
        assert result.predicted_margin_c == pytest.approx(15.0 - 0.5 * CONFIG.horizon_s, rel=0.1)

    def test_model_after_convergence(self):
        source, clock = sim(jobs=2)
        fit, window = learn(source, clock, 40)
        value = source.read().gpus[0].reading
        result = forecast(fit, window, value.margin_c, Load(value.power_w, 700.0, 200.0), CONFIG)
        assert result.basis is Basis.MODEL
        assert result.time_to_slowdown_s is None
        # One more 200 W job at R = 0.05 °C/W costs about 10 °C once settled (95 % of it in 60 s).
        assert result.predicted_margin_c == pytest.approx(value.margin_c - 9.5, abs=1.5)
        assert result.sustainable_power_w == 700.0

    def test_one_more_job_is_capped_at_the_limit(self):
        assert Load(650.0, 700.0, 200.0).with_one_more_job_w() == 700.0
        assert Load(400.0, None, 200.0).with_one_more_job_w() == 600.0
