"""A noisy sensor: its flickers are seen, its readings averaged in bins, and the forecast holds."""

from __future__ import annotations

import math
import random

import pytest
from policy_builders import drive, policy

from gpuwatch.policy.model.dequantise import Dequantiser
from gpuwatch.policy.model.smoothing import BIN_S, KEEP_BINS, Smoother
from gpuwatch.policy.model.trajectory import fit


def noisy(true: list[float], sd_c: float, seed: int) -> list[float]:
    """NVML's margins for a sensor reading `true` with Gaussian noise of `sd_c`, seeded."""
    rng = random.Random(seed)
    return [float(math.ceil(m + rng.gauss(0.0, sd_c))) for m in true]


def observed(readings: list[float], *, step_at: int | None = None) -> tuple[Dequantiser, list[float]]:
    """The dequantiser after `readings` at 1 s intervals (power stepping at `step_at`), and its estimates."""
    dequantiser, estimates = Dequantiser(), []
    for at, reading in enumerate(readings):
        dequantiser, estimate = dequantiser.observe(float(at), reading, stepped=at == step_at)
        estimates.append(estimate)
    return dequantiser, estimates


class TestFlickers:
    """A reading back at the one before the last, a degree away, is a flicker; often, a noisy sensor."""

    @pytest.mark.parametrize("rate", [0.003, 0.05, 0.8])
    def test_a_smooth_margin_is_never_taken_for_noise(self, rate):
        true = [20.0 - rate * t + 0.3 * math.sin(t / 40.0) for t in range(900)]
        dequantiser, _ = observed([float(math.ceil(m)) for m in true])
        assert not dequantiser.noisy
        assert dequantiser.smoother is None
        assert dequantiser.point_sds is None

    def test_a_noisy_sensor_is_seen_and_stays_noisy_across_a_power_step(self):
        readings = noisy([10.0] * 60 + [7.5] * 60, 0.25, seed=3)
        dequantiser, _ = observed(readings, step_at=60)
        assert dequantiser.noisy
        assert dequantiser.point_sds is not None
        assert len(dequantiser.point_sds) == len(dequantiser.crossings)
        # The crossings are the bins: (time, margin) of every BIN_S seconds of readings.
        assert all(7.0 <= c <= 10.5 for _, c in dequantiser.crossings)


class TestNoisyEstimate:
    """Averaged in bins, noisy readings place the margin far better than one reading does."""

    @pytest.mark.parametrize(("sd_c", "seed"), [(0.15, 1), (0.3, 2), (0.5, 3)])
    def test_a_slow_climb_is_tracked_and_never_called_the_limit_early(self, sd_c, seed):
        true = [6.0 - 0.01 * t for t in range(500)]
        readings = noisy(true, sd_c, seed)
        dequantiser, estimates = observed(readings)
        assert dequantiser.noisy
        late = range(200, 500)
        estimate_error = sum(abs(estimates[i] - true[i]) for i in late) / len(late)
        reading_error = sum(abs(readings[i] - 0.5 - true[i]) for i in late) / len(late)
        assert estimate_error < 0.6 * reading_error
        # A reading a degree low says "at the limit"; the estimate does not while a degree is left.
        assert all(estimates[i] > 0.0 for i in late if true[i] >= 1.5)

    def test_a_power_step_starts_the_estimate_afresh(self):
        readings = noisy([10.0] * 100 + [4.0] * 30, 0.3, seed=5)
        _, estimates = observed(readings, step_at=100)
        assert estimates[110] == pytest.approx(4.0, abs=0.6)  # nothing of the bins before the step


class TestBins:
    """Old bins merge as they age: the points reach back minutes and stay few."""

    def test_bins_reach_back_and_stay_bounded(self):
        smoother = Smoother()
        for at in range(3600):
            smoother = smoother.observe(float(at), float(10 + at % 2))
        assert len(smoother.bins) <= KEEP_BINS
        reach_s = smoother.bins[-1].last_at - smoother.bins[0].first_at
        assert reach_s > 3 * KEEP_BINS * BIN_S
        assert smoother.bins[-1].last_at - smoother.bins[-1].first_at < BIN_S  # fine near now
        assert sum(b.count for b in smoother.bins) + 1 <= 3600

    def test_the_spread_is_pooled_over_the_bins(self):
        smoother = Smoother()
        for at in range(100):
            smoother = smoother.observe(float(at), 5.0 if at < 50 else float(5 + at % 2))
        # Half the bins read one value, half alternate: pooled, not the median bin's 0.
        assert 0.3 < smoother.spread_c < 0.6


class TestNoisyTrajectory:
    """Bins with their errors fit the curve; a change with no power step leaves flat bins behind."""

    def test_flat_bins_then_a_fall_fit_the_fall(self):
        steady, tau = -3.0, 150.0
        points = [(float(t), 5.0) for t in range(0, 200, 5)]
        points += [(200.0 + t, steady + (5.0 - steady) * math.exp(-t / tau)) for t in range(5, 105, 5)]
        now = points[-1][0]
        path = fit(points, -math.inf, now, tau_prior_s=120.0, margin_sds=[0.08] * len(points))
        assert path is not None
        true_now = points[-1][1]
        actual = tau * math.log((true_now - steady) / -steady)
        assert path.time_to_c(now, 0.0) == pytest.approx(actual, rel=0.15)


class TestPolicyWithNoisySensor:
    """Through the whole policy: a noisy sensor's slow climb has a time to slowdown, and not 0 early."""

    def test_time_to_slowdown_on_a_noisy_climb(self):
        true = [8.0 - 0.02 * t for t in range(320)]
        decisions = drive(policy(), noisy(true, 0.3, seed=7))
        for t in range(200, 320):
            seconds = decisions[t].gpus[0].time_to_slowdown_s
            assert seconds is not None
            if true[t] >= 1.5:
                assert seconds > 0.0
        ahead = true[300] / 0.02
        assert decisions[300].gpus[0].time_to_slowdown_s == pytest.approx(ahead, rel=0.3)
