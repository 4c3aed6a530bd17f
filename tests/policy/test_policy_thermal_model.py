"""Tests of the margin model (slow RC node with a fast die term): its paths, the online fit, the forecasts."""

from __future__ import annotations

import dataclasses
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gpuwatch.policy.config import PolicyConfig
from gpuwatch.policy.model.dequantise import Dequantiser, held_power_w
from gpuwatch.policy.model.history import Point, appended, margin_slope
from gpuwatch.policy.model.prediction import SLOWDOWN_MARGIN_C, Basis, Load, forecast
from gpuwatch.policy.model.thermal_model import KW, Node, RcFit, RcParameters, free_run_error_c
from gpuwatch.sources.clock import ManualClock
from gpuwatch.sources.sim import SimSource
from gpuwatch.sources.sim.scenario import LoadSettings, Scenario

CONFIG = PolicyConfig()
PARAMS = RcParameters(tau_s=20.0, resistance_c_per_w=0.05, zero_power_margin_c=60.0)
TWO_SCALE = RcParameters(
    tau_s=120.0, resistance_c_per_w=0.05, zero_power_margin_c=60.0, die_resistance_c_per_w=0.02
)


def start(point: Point, tau_prior_s: float = 120.0) -> RcFit:
    return RcFit.start(
        point,
        step_s=1.0,
        tau_prior_s=tau_prior_s,
        resistance_prior_c_per_w=0.05,
        die_share_prior=0.4,
        memory_s=120.0,
    )


def sim(sku: str = "H100", *, plant: str = "two-node", jobs: int = 1) -> tuple[SimSource, ManualClock]:
    clock = ManualClock()
    scenario = Scenario(skus=(sku,), load=LoadSettings(jobs=jobs, arrival_per_s=0.0), spread=0.0, plant=plant)
    return SimSource(scenario, clock, seed=3), clock


class Learner:
    """Reads the simulated GPU once a second, dequantised, into the fit and the window."""

    def __init__(self, source: SimSource, clock: ManualClock, tau_prior_s: float = 120.0) -> None:
        self.source, self.clock, self.tau_prior_s = source, clock, tau_prior_s
        self.fit: RcFit | None = None
        self.window: tuple[Point, ...] = ()
        self.dequantiser = Dequantiser()

    def learn(self, seconds: int) -> None:
        for _ in range(seconds):
            value = self.source.read().gpus[0].reading
            self.dequantiser, estimate = self.dequantiser.observe(value.monotonic, value.margin_c)
            held_w = self.window[-1].power_w if self.window else None
            point = Point(value.monotonic, estimate, held_power_w(held_w, value.power_w, value.power_limit_w))
            self.fit = start(point, self.tau_prior_s) if self.fit is None else self.fit.update(point)
            self.window = appended(self.window, point, 30)
            self.clock.advance(1.0)


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


class TestTwoScalePaths:
    """With a die term the margin drops by R_f*ΔP within seconds of a step, then follows the slow node."""

    def test_a_step_drops_the_die_part_within_seconds(self):
        path = TWO_SCALE.path(40.0, 600.0, lagged_power_w=400.0)
        assert path(0.0) == pytest.approx(40.0)
        fast = path(10.0) - 40.0
        assert fast == pytest.approx(-0.02 * 200.0 - 0.03 * 200.0 * (1 - math.exp(-10 / 120)), abs=0.05)
        assert path(5000.0) == pytest.approx(
            TWO_SCALE.steady_margin_c(600.0) + (40.0 - TWO_SCALE.steady_margin_c(400.0))
        )

    def test_time_to_margin_inverts_the_path_with_the_die_unsettled(self):
        seconds = TWO_SCALE.time_to_margin_s(30.0, 27.0, 700.0, lagged_power_w=500.0)
        assert seconds is not None
        assert TWO_SCALE.margin_after_c(30.0, 700.0, seconds, lagged_power_w=500.0) == pytest.approx(
            27.0, abs=1e-6
        )
        # Cooling back: power dropped, the die's part comes back within seconds.
        up = TWO_SCALE.time_to_margin_s(20.0, 22.0, 300.0, lagged_power_w=700.0)
        assert up is not None
        assert up < 10.0

    def test_settled_die_is_one_exponential(self):
        assert TWO_SCALE.margin_after_c(30.0, 500.0, 120.0) == pytest.approx(
            TWO_SCALE.steady_margin_c(500.0) + (30.0 - TWO_SCALE.steady_margin_c(500.0)) * math.exp(-1)
        )

    def test_free_run_error_is_zero_for_the_true_model(self):
        nodes = [
            Node(float(t), TWO_SCALE.margin_after_c(40.0, 800.0, t), 800.0, 800.0, 0.0, 0.0, 0.0)
            for t in range(10)
        ]
        assert free_run_error_c(TWO_SCALE, nodes) == pytest.approx(0.0, abs=1e-9)


class TestFitOnSimulatedHeatUp:
    """Recursive least squares recovers the simulated board's R, its die share and its slow tau."""

    @pytest.mark.parametrize("sku", ["H100", "A100"])
    def test_converges_on_the_two_node_plant(self, sku):
        source, clock = sim(sku)
        learner = Learner(source, clock)
        learner.learn(60)
        for jobs in (3, 0, 2):
            source.set_jobs(0, jobs)
            learner.learn(300)
        params = learner.fit.parameters
        thermal = source.physics_now()[0].profile.thermal
        assert params.resistance_c_per_w == pytest.approx(thermal.resistance_c_per_w, rel=0.15)
        assert params.die_resistance_c_per_w == pytest.approx(thermal.die_resistance_c_per_w, rel=0.25)
        # The slow node: R_sa*C_s = 120 s, a little longer coupled to the die.
        assert params.tau_s == pytest.approx(thermal.sink_time_constant_s, rel=0.2)
        assert learner.fit.converged(CONFIG.slope_min_samples)

    def test_finds_the_time_constant_of_a_first_order_plant(self):
        source, clock = sim(plant="first-order")
        learner = Learner(source, clock, tau_prior_s=20.0)
        learner.learn(60)
        for jobs in (3, 0, 2):
            source.set_jobs(0, jobs)
            learner.learn(120)
        assert learner.fit.parameters.tau_s == pytest.approx(20.0, rel=0.25)
        assert learner.fit.parameters.die_resistance_c_per_w < 0.01

    def test_a_sudden_change_restarts_the_fit(self):
        source, clock = sim(jobs=3, plant="first-order")
        learner = Learner(source, clock, tau_prior_s=20.0)
        learner.learn(120)
        source.set_inlet(40.0)  # +15 °C at the inlet: the margin falls 15 °C within a minute
        learner.learn(60)
        assert learner.fit.restarted_at > 120.0  # the change was detected

    def test_out_of_order_and_powerless_readings_are_ignored(self):
        fit = start(Point(10.0, 30.0, 400.0))
        assert fit.update(Point(9.0, 20.0, 400.0)) is fit
        assert fit.update(Point(11.0, 20.0, None)) is fit

    def test_a_gap_breaks_the_rows_across_it(self):
        fit = start(Point(0.0, 30.0, 400.0))
        for t in range(1, 20):
            fit = fit.update(Point(float(t), 30.0, 400.0))
        rows = fit.rows
        fit = fit.update(Point(60.0, 30.0, 400.0))  # 41 s without a reading: no row spans it
        assert fit.rows == rows
        assert fit.nodes[-1].unbroken_since == 60.0

    def test_start_needs_power(self):
        with pytest.raises(ValueError, match="power"):
            start(Point(0.0, 30.0, None))

    def test_regression_columns_are_in_kilowatts(self):
        assert KW == 1000.0


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
        learner = Learner(source, clock)
        learner.learn(60)
        source.set_jobs(0, 1)
        learner.learn(200)
        value = source.read().gpus[0].reading
        result = forecast(
            learner.fit,
            learner.window,
            learner.window[-1].margin_c,
            Load(value.power_w, 700.0, 200.0),
            CONFIG,
        )
        assert result.basis is Basis.MODEL
        assert result.time_to_slowdown_s is None
        # One more 200 W job: the die's 0.02 °C/W at once, and the sink's 0.03 °C/W for 60 of its
        # ~120 s: about 4 + 6 * (1 - e^-0.5) = 6.4 °C.
        assert result.predicted_margin_c == pytest.approx(learner.window[-1].margin_c - 6.4, abs=1.5)
        assert result.sustainable_power_w == 700.0

    def test_a_fit_not_converged_plans_with_what_it_learned_where_that_costs_more(self):
        # A sink of minutes on a busy GPU: the slow node is not physical yet (alpha < 0), but the
        # die's 0.04 °C/W jumps showed at every step. Planning with the priors' 0.02 would start
        # a job that takes twice what they say.
        window = tuple(Point(float(t), 10.0, 400.0) for t in range(12))
        learned = dataclasses.replace(start(window[0]), theta=(40.0, -0.001, 0.1, 0.05), rows=50)
        result = forecast(learned, window, 10.0, Load(400.0, 700.0, 200.0), CONFIG)
        assert result.basis is Basis.SLOPE
        assert result.response is not None
        assert result.response.die_resistance_c_per_w == pytest.approx(0.04)
        assert result.response.resistance_c_per_w == pytest.approx(0.05 - 0.02 + 0.04)
        # One that learned a cheaper die, or too little yet, keeps the priors.
        cheaper = dataclasses.replace(learned, theta=(5.0, -0.001, 0.1, 0.05))
        young = dataclasses.replace(learned, rows=2)
        for fit in (cheaper, young):
            response = forecast(fit, window, 10.0, Load(400.0, 700.0, 200.0), CONFIG).response
            assert response is not None
            assert response.die_resistance_c_per_w == pytest.approx(CONFIG.die_share_prior * 0.05)

    def test_one_more_job_is_capped_at_the_limit(self):
        assert Load(650.0, 700.0, 200.0).with_one_more_job_w() == 700.0
        assert Load(400.0, None, 200.0).with_one_more_job_w() == 600.0
