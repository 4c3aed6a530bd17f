"""Admission: which class gets in, on which GPU, paced by each class's own slots; how long the others wait."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st
from policy_builders import policy, reading, sample, snapshot

from gpuwatch.policy.admission import (
    SLOTS_TAKEN,
    UnknownGpuError,
    UnknownPriorityError,
    admit,
    jittered_retry_after,
    parse_priority,
)
from gpuwatch.policy.decision import (
    GpuDecision,
    NodeDecision,
    PriorityClass,
    RetryAfterBounds,
    Slots,
    ThermalState,
)

CRITICAL, DEFAULT, SHEDDABLE = PriorityClass.CRITICAL, PriorityClass.DEFAULT, PriorityClass.SHEDDABLE


def gpu(
    index: int,
    slots: Slots,
    *,
    pressure: float = 0.2,
    state: ThermalState = ThermalState.OK,
    wait_s: float = 7.0,
) -> GpuDecision:
    """A GPU decision offering `slots`; a class with no slot waits `wait_s`, one whose slots are taken 3 s."""
    return GpuDecision(
        index=index,
        uuid=f"GPU-test-{index}",
        name="Test GPU",
        state=state,
        pressure=pressure,
        admits=slots.classes,
        reasons=("within_limits",) if slots.sheddable else ("no_default_slot",),
        sentence=f"GPU {index}.",
        slots=slots,
        retry_after_by_class=tuple((cls, wait_s) for cls in PriorityClass if not slots.of(cls)),
        slot_waits=tuple((cls, 3.0 if slots.of(cls) else wait_s) for cls in PriorityClass),
    )


def node(*gpus: GpuDecision, state: ThermalState = ThermalState.OK) -> NodeDecision:
    return NodeDecision(
        state=state,
        pressure=0.3,
        reasons=("within_limits",),
        sentence="Node.",
        gpus=gpus,
        sequence=1,
        taken_at=0.0,
        decided_at=0.0,
        sample_age_s=0.0,
    )


def decided(*margins: float, **settings) -> NodeDecision:
    """A one-snapshot decision of the policy over GPUs with these margins (index = position)."""
    samples = [sample(i, reading(0.0, margin)) for i, margin in enumerate(margins)]
    return policy(**settings).update(snapshot(0.0, *samples))


class TestAdmit:
    """An unpinned request goes to the GPU with the most free slots for its class, coolest first."""

    def test_most_free_slots_then_coolest(self):
        decision = node(
            gpu(0, Slots(3, 2, 1), pressure=0.1),
            gpu(1, Slots(5, 4, 2), pressure=0.5),
            gpu(2, Slots(5, 4, 0), pressure=0.3),
        )
        answer = admit(decision, DEFAULT)
        assert (answer.admitted, answer.gpu.index, answer.slots_left) == (True, 2, 9)
        assert admit(decision, SHEDDABLE).gpu.index == 1

    def test_slots_taken_since_the_decision_come_off(self):
        decision = node(gpu(0, Slots(2, 2, 1)), gpu(1, Slots(2, 2, 1)))
        answer = admit(decision, DEFAULT, taken={0: 2, 1: 1})
        assert (answer.gpu.index, answer.slots_left) == (1, 0)
        held = admit(decision, DEFAULT, taken={0: 2, 1: 2})
        assert not held.admitted
        assert held.reason == SLOTS_TAKEN
        assert held.retry_after_s == 3  # the wait for a slot beyond those offered

    def test_a_class_without_slots_is_told_its_wait(self):
        decision = node(gpu(0, Slots(2, 1, 0), wait_s=40.0), gpu(1, Slots(1, 0, 0), wait_s=20.0))
        held = admit(decision, SHEDDABLE, taken={0: 0, 1: 0})
        assert not held.admitted
        assert held.retry_after_s == 20  # the soonest GPU
        assert held.reason == "no_default_slot"
        assert "Holding back sheddable work" in held.sentence

    def test_paced_by_the_slots_offered(self):
        decision = node(gpu(0, Slots(3, 3, 3)), gpu(1, Slots(2, 2, 2)))
        taken: dict[int, int] = {0: 0, 1: 0}
        admitted = 0
        for _ in range(50):
            answer = admit(decision, DEFAULT, taken=taken)
            if answer.admitted:
                admitted += 1
                taken[answer.gpu.index] += 1
        assert admitted == 5
        assert taken == {0: 3, 1: 2}

    def test_no_gpus_fail_open_admits_without_a_gpu(self):
        decision = policy(fail_open=True).update(snapshot(0.0))
        answer = admit(decision, SHEDDABLE)
        assert answer.admitted
        assert answer.gpu is None

    def test_no_gpus_holds_back_by_default(self):
        assert not admit(policy().update(snapshot(0.0)), DEFAULT).admitted

    def test_drained_node_holds_everything_for_the_longest_wait(self):
        decision = dataclasses.replace(node(gpu(0, Slots(3, 3, 3))), drained=True)
        answer = admit(decision, CRITICAL)
        assert not answer.admitted
        assert answer.retry_after_s == 120

    def test_jitter_outside_its_range_is_an_error(self):
        with pytest.raises(ValueError, match="jitter"):
            admit(decided(30.0), DEFAULT, jitter=1.5)


class TestClassesKeepTheirOwnSlots:
    """A class is admitted only on its own slots: free work never takes the degrees kept for paid work."""

    @pytest.mark.parametrize(
        ("slots", "admitted"),
        [
            (Slots(3, 2, 1), {CRITICAL, DEFAULT, SHEDDABLE}),
            (Slots(3, 2, 0), {CRITICAL, DEFAULT}),
            (Slots(3, 0, 0), {CRITICAL}),
            (Slots(0, 0, 0), set()),
        ],
    )
    def test_what_each_class_is_offered(self, slots, admitted):
        decision = node(gpu(0, slots))
        assert {cls for cls in PriorityClass if admit(decision, cls).admitted} == admitted

    @given(
        slots=st.tuples(st.integers(0, 8), st.integers(0, 8), st.integers(0, 8)),
        asks=st.lists(st.sampled_from(list(PriorityClass)), max_size=40),
    )
    def test_never_more_admitted_than_offered(self, slots, asks):
        critical, default, sheddable = sorted(slots, reverse=True)
        decision = node(
            gpu(0, Slots(critical, default, sheddable)), gpu(1, Slots(critical, default, sheddable))
        )
        taken = {0: 0, 1: 0}
        by_class = dict.fromkeys(PriorityClass, 0)
        for cls in asks:
            answer = admit(decision, cls, taken=taken)
            if answer.admitted:
                taken[answer.gpu.index] += 1
                by_class[cls] += 1
        assert all(taken[i] <= critical for i in taken)  # the most slots any class is offered
        assert by_class[SHEDDABLE] <= 2 * sheddable
        assert by_class[SHEDDABLE] + by_class[DEFAULT] <= 2 * default


class TestPinned:
    """A request pinned to a GPU is answered by that GPU's free slots."""

    def test_pinned_to_a_gpu_with_a_slot_on_a_node_without(self):
        decision = node(
            gpu(0, Slots(0, 0, 0), state=ThermalState.HOT), gpu(1, Slots(3, 2, 1)), state=ThermalState.HOT
        )
        answer = admit(decision, DEFAULT, gpu=1)
        assert (answer.admitted, answer.gpu.index, answer.state, answer.slots_left) == (
            True,
            1,
            ThermalState.OK,
            1,
        )

    def test_pinned_to_a_gpu_without(self):
        decision = node(gpu(0, Slots(0, 0, 0), state=ThermalState.HOT, wait_s=12.0), gpu(1, Slots(3, 2, 1)))
        answer = admit(decision, DEFAULT, gpu=0)
        assert not answer.admitted
        assert answer.gpu.index == 0
        assert answer.state is ThermalState.HOT
        assert answer.retry_after_s == 12

    def test_pinned_to_a_missing_gpu(self):
        with pytest.raises(UnknownGpuError, match="no GPU 7 on this node"):
            admit(decided(30.0, 30.0), DEFAULT, gpu=7)


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
        decision = node(gpu(0, Slots(0, 0, 0), wait_s=50.0))
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


class TestLongJobs:
    """A job planned longer than its class's takes the class jobs it displaces (DESIGN §2: jobs end)."""

    def test_it_takes_as_many_slots_as_it_displaces(self):
        roomy = dataclasses.replace(gpu(0, Slots(6, 6, 6)), long_slots=Slots(2, 2, 2))
        answer = admit(node(roomy), DEFAULT, long=True)
        assert (answer.admitted, answer.cost, answer.slots_left) == (True, 3, 3)

    def test_not_where_no_long_job_fits(self):
        short_only = dataclasses.replace(gpu(0, Slots(6, 6, 6), pressure=0.1), long_slots=Slots(1, 0, 0))
        other = dataclasses.replace(gpu(1, Slots(2, 2, 2), pressure=0.5), long_slots=Slots(1, 1, 1))
        answer = admit(node(short_only, other), DEFAULT, long=True)
        assert answer.gpu is not None
        assert (answer.gpu.index, answer.cost) == (1, 2)
        assert not admit(node(short_only), DEFAULT, long=True).admitted

    def test_the_slots_taken_since_count(self):
        roomy = dataclasses.replace(gpu(0, Slots(6, 6, 6)), long_slots=Slots(2, 2, 2))
        assert admit(node(roomy), DEFAULT, long=True, taken={0: 3}).admitted
        assert not admit(node(roomy), DEFAULT, long=True, taken={0: 4}).admitted
        assert admit(node(roomy), DEFAULT, taken={0: 5}).cost == 1
