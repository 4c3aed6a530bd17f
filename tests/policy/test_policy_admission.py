"""Tests of admission: which class gets in, on which GPU, and how long the others are told to wait."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st
from policy_builders import policy, reading, sample, snapshot

from gpuwatch.policy.admission import (
    UnknownGpuError,
    UnknownPriorityError,
    admit,
    jittered_retry_after,
    parse_priority,
)
from gpuwatch.policy.decision import NodeDecision, PriorityClass, RetryAfterBounds, ThermalState

CRITICAL, DEFAULT, SHEDDABLE = PriorityClass.CRITICAL, PriorityClass.DEFAULT, PriorityClass.SHEDDABLE


def node(*margins: float, **settings) -> NodeDecision:
    """A one-snapshot decision over GPUs with these margins (index = position)."""
    samples = [sample(i, reading(0.0, margin)) for i, margin in enumerate(margins)]
    return policy(**settings).update(snapshot(0.0, *samples))


class TestAdmit:
    """Unpinned requests follow the node's state and go to the coolest GPU that admits their class."""

    def test_picks_the_coolest_admissible_gpu(self):
        decision = node(20.0, 35.0, 5.0, 30.0, node_k=2)
        answer = admit(decision, CRITICAL)
        assert answer.admitted
        assert answer.gpu.index == 1
        assert answer.retry_after_s is None
        assert answer.state is decision.state

    @pytest.mark.parametrize(
        ("margin", "admitted"),
        [
            (30.0, {CRITICAL, DEFAULT, SHEDDABLE}),  # OK
            (12.0, {CRITICAL, DEFAULT}),  # ELEVATED sheds sheddable
            (5.0, {CRITICAL}),  # HOT
            (0.0, set()),  # CRITICAL
        ],
    )
    def test_sheds_by_class(self, margin, admitted):
        decision = node(margin, 35.0)
        assert {cls for cls in PriorityClass if admit(decision, cls).admitted} == admitted

    def test_worst_of_holds_back_even_with_a_cool_gpu(self):
        answer = admit(node(5.0, 35.0), DEFAULT)
        assert not answer.admitted
        assert answer.state is ThermalState.HOT
        assert answer.reason == "margin_below_hot"
        assert 1 <= answer.retry_after_s <= 120
        assert "Holding back default work" in answer.sentence

    def test_no_gpus_fail_open_admits_without_a_gpu(self):
        decision = policy(fail_open=True).update(snapshot(0.0))
        answer = admit(decision, SHEDDABLE)
        assert answer.admitted
        assert answer.gpu is None

    def test_no_gpus_holds_back_by_default(self):
        assert not admit(policy().update(snapshot(0.0)), DEFAULT).admitted

    def test_jitter_outside_its_range_is_an_error(self):
        with pytest.raises(ValueError, match="jitter"):
            admit(node(30.0), DEFAULT, jitter=1.5)


class TestPinned:
    """A request pinned to a GPU follows that GPU's own state."""

    def test_pinned_to_a_cool_gpu_on_a_hot_node(self):
        answer = admit(node(5.0, 35.0), DEFAULT, gpu=1)
        assert answer.admitted
        assert answer.gpu.index == 1
        assert answer.state is ThermalState.OK

    def test_pinned_to_a_gpu_that_does_not_admit(self):
        answer = admit(node(5.0, 35.0), DEFAULT, gpu=0)
        assert not answer.admitted
        assert answer.gpu.index == 0
        assert answer.state is ThermalState.HOT
        assert answer.retry_after_s is not None

    def test_pinned_to_a_missing_gpu(self):
        with pytest.raises(UnknownGpuError, match="no GPU 7 on this node"):
            admit(node(30.0, 30.0), DEFAULT, gpu=7)


class TestRetryAfter:
    """Retry-After is whole seconds, jittered by at most ±20 % and clamped to [1, 120]."""

    @given(st.floats(0.0, 500.0), st.floats(-1.0, 1.0))
    def test_jitter_bounds_and_clamp(self, seconds, jitter):
        value = jittered_retry_after(seconds, jitter, RetryAfterBounds())
        assert isinstance(value, int)
        assert 1 <= value <= 120
        assert min(120, max(1, round(seconds * 0.8))) <= value <= max(1, min(120, round(seconds * 1.2)))

    @pytest.mark.parametrize(("jitter", "expected"), [(-1.0, 40), (0.0, 50), (1.0, 60)])
    def test_jitter_scales_the_wait(self, jitter, expected):
        assert jittered_retry_after(50.0, jitter, RetryAfterBounds()) == expected

    def test_no_estimate_is_the_maximum(self):
        assert jittered_retry_after(None, 0.0, RetryAfterBounds()) == 120

    def test_admission_uses_the_decisions_bounds(self):
        decision = node(5.0)
        decision = dataclasses.replace(decision, retry_bounds=RetryAfterBounds(min_s=5.0, max_s=10.0))
        assert admit(decision, SHEDDABLE, jitter=-1.0).retry_after_s in range(5, 11)


class TestParsePriority:
    """Class names parse in any case; anything else is an error naming the valid classes."""

    @pytest.mark.parametrize(
        ("name", "cls"), [("critical", CRITICAL), (" Default ", DEFAULT), ("SHEDDABLE", SHEDDABLE)]
    )
    def test_valid(self, name, cls):
        assert parse_priority(name) is cls

    def test_invalid(self):
        with pytest.raises(
            UnknownPriorityError, match="'batch'; valid classes: critical, default, sheddable"
        ):
            parse_priority("batch")
