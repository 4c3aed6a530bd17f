"""The policy engine: snapshots (and reservation ledgers) to decisions; UNKNOWN, FAILED, k-of-n, expire()."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from policy_builders import drive, policy, reading, sample, snapshot

from gpuwatch.policy import reasons
from gpuwatch.policy.config import PolicyConfig
from gpuwatch.policy.decision import ALL_CLASSES, PriorityClass, ThermalState
from gpuwatch.policy.engine import Policy, expire
from gpuwatch.policy.leases import Lease, Leases, Ledger
from gpuwatch.sampler.loop import Sampler
from gpuwatch.sources.clock import ManualClock
from gpuwatch.sources.model import ClockEventReason, GpuHealth, RecoveryAction
from gpuwatch.sources.sim import open_sim

SCENARIOS = Path(__file__).parent.parent.parent / "gpuwatch" / "sources" / "sim" / "scenarios"
NOTHING = frozenset[PriorityClass]()


def one(policy_: Policy, at: float, **kwargs) -> ThermalState:
    """The state of GPU 0 after one snapshot at `at` holding `sample(0, **kwargs)`."""
    return policy_.update(snapshot(at, sample(0, **kwargs))).gpus[0].state


class TestDecisionFields:
    """A decision fills every GpuDecision and NodeDecision field from the snapshot and the forecast."""

    def test_every_field_is_filled_once_history_exists(self):
        decision = drive(policy(), [30.0] * 20)[-1]
        gpu = decision.gpus[0]
        assert (gpu.index, gpu.uuid, gpu.name) == (0, "GPU-test-0", "Test GPU")
        assert gpu.state is ThermalState.OK
        assert gpu.admits == ALL_CLASSES
        assert gpu.slots.sheddable > 0
        assert (gpu.reserved, gpu.slots_counted) == (0, 0)
        assert gpu.reasons == (reasons.WITHIN_LIMITS,)
        assert gpu.sentence.startswith("GPU 0 is ok: margin 30 °C; room for")
        assert (gpu.margin_c, gpu.memory_margin_c, gpu.power_w, gpu.power_limit_w) == (
            30.0,
            40.0,
            400.0,
            700.0,
        )
        assert gpu.predicted_margin_c < 30.0  # one more job warms it
        assert gpu.time_to_slowdown_s is None
        assert 0 < gpu.sustainable_power_w <= 700.0
        assert gpu.retry_after_s is None
        assert gpu.state_since == 0.0
        assert gpu.sampled_at == 19.0
        assert gpu.prediction_basis == "model"
        assert gpu.job_power_w == 175.0  # a quarter of the limit until a step is seen
        assert 0.0 < gpu.pressure < 1.0
        assert (decision.sequence, decision.decided_at, decision.sample_age_s) == (20, 19.0, 0.0)
        assert decision.slots == gpu.slots

    def test_a_hot_gpu_is_told_when_it_gets_slots_back(self):
        gpu = drive(policy(), [30.0] * 5 + [6.0] * 5, power_w=600.0)[-1].gpus[0]
        assert gpu.state is ThermalState.HOT
        assert gpu.slots.default == 0
        assert gpu.admits <= {PriorityClass.CRITICAL}
        assert {cls for cls, _ in gpu.retry_after_by_class} >= {
            PriorityClass.DEFAULT,
            PriorityClass.SHEDDABLE,
        }
        assert all(1.0 <= seconds <= 120.0 for _, seconds in gpu.retry_after_by_class)
        assert gpu.pressure == 1.0


class TestPowerCap:
    """The SW power cap alone never sheds: drawing the limit is normal at full load."""

    def test_power_capped_gpu_admits_everything(self):
        decisions = drive(
            policy(), [30.0] * 40, power_w=700.0, clock_event_reasons=int(ClockEventReason.SW_POWER_CAP)
        )
        gpu = decisions[-1].gpus[0]
        assert gpu.state is ThermalState.OK
        assert gpu.admits == ALL_CLASSES
        assert gpu.slots.sheddable == PolicyConfig().max_slots  # more jobs cannot draw more power
        assert "sw_power_cap" in gpu.clock_event_reasons


class TestShownState:
    """The shown state steps down only after the hold; admission reads the slots at once."""

    def test_hot_is_shown_for_the_hold_while_the_slots_are_back(self):
        p = policy(state_hold_s=10.0)
        decisions = drive(p, [30.0] * 3 + [6.0] + [30.0] * 12, power_w=400.0)
        states = [d.gpus[0].state for d in decisions]
        assert states[3] is ThermalState.HOT
        assert states[4:14] == [ThermalState.HOT] * 10
        assert states[14] is ThermalState.OK
        held = decisions[6].gpus[0]
        assert held.reasons[0] == reasons.STATE_HOLD
        assert held.admits == ALL_CLASSES  # admission does not wait on the hold
        assert "shown hot" in held.sentence


class TestUnknown:
    """A GPU with no fresh reading is UNKNOWN: it admits nothing, or everything when failing open."""

    @pytest.mark.parametrize(("age", "state"), [(3.0, ThermalState.OK), (3.1, ThermalState.UNKNOWN)])
    def test_stale_after_three_intervals(self, age, state):
        assert one(policy(), 10.0, value=reading(10.0 - age)) is state

    def test_unknown_admits_nothing(self):
        gpu = policy().update(snapshot(10.0, sample(0, None))).gpus[0]
        assert gpu.state is ThermalState.UNKNOWN
        assert gpu.admits == NOTHING
        assert gpu.reasons == (reasons.NO_READING,)
        assert gpu.pressure == 1.0
        assert gpu.retry_after_s is not None

    def test_fail_open_admits_everything(self):
        gpu = policy(fail_open=True).update(snapshot(10.0, sample(0, reading(0.0)))).gpus[0]
        assert gpu.state is ThermalState.UNKNOWN
        assert gpu.admits == ALL_CLASSES
        assert gpu.reasons == (reasons.STALE_SAMPLE, reasons.FAIL_OPEN)

    def test_a_gpu_the_source_could_not_read_is_unknown_at_once(self):
        """A hung call leaves the last reading in place, still young: the GPU is UNKNOWN all the same."""
        p = policy()
        drive(p, [30.0] * 5)
        unread = sample(0, reading(4.0), health=GpuHealth.UNAVAILABLE)
        gpu = p.update(snapshot(5.0, unread)).gpus[0]
        assert (gpu.state, gpu.reasons) == (ThermalState.UNKNOWN, (reasons.SOURCE_UNAVAILABLE,))
        assert "could not read" in gpu.sentence
        assert one(p, 6.0, value=reading(6.0)) is ThermalState.OK

    def test_reading_without_margin_is_unknown(self):
        gpu = policy().update(snapshot(0.0, sample(0, reading(0.0, None)))).gpus[0]
        assert (gpu.state, gpu.reasons) == (ThermalState.UNKNOWN, (reasons.NO_MARGIN,))

    def test_no_gpus_is_unknown(self):
        decision = policy().update(snapshot(0.0))
        assert decision.state is ThermalState.UNKNOWN
        assert decision.reasons == (reasons.NO_GPUS,)
        assert decision.admits == NOTHING


class TestFailed:
    """Lost GPUs, reset required, a recovery action or a new critical XID take a GPU out of service."""

    @pytest.mark.parametrize(
        ("kwargs", "code"),
        [
            ({"value": None, "health": GpuHealth.LOST}, reasons.GPU_LOST),
            ({"value": reading(0.0), "health": GpuHealth.RESET_REQUIRED}, reasons.RESET_REQUIRED),
            ({"value": reading(0.0, recovery_action=RecoveryAction.GPU_RESET)}, reasons.RECOVERY_ACTION),
            ({"value": reading(0.0, recovery_action=RecoveryAction.UNKNOWN)}, reasons.RECOVERY_ACTION),
            ({"value": reading(0.0), "xids": {"79": 1}, "last_xid": 79}, reasons.CRITICAL_XID),
        ],
    )
    def test_cause(self, kwargs, code):
        gpu = policy().update(snapshot(0.0, sample(0, **kwargs))).gpus[0]
        assert gpu.state is ThermalState.FAILED
        assert code in gpu.reasons
        assert gpu.admits == NOTHING
        assert gpu.pressure == 1.0

    def test_application_xid_is_not_a_failure(self):
        assert one(policy(), 0.0, value=reading(0.0), xids={"13": 5}) is ThermalState.OK

    def test_critical_xid_holds_the_gpu_out_then_releases_it(self):
        p = policy(failed_xid_hold_s=10.0)
        assert one(p, 0.0, value=reading(0.0), xids={"48": 1}) is ThermalState.FAILED
        assert one(p, 9.0, value=reading(9.0), xids={"48": 1}) is ThermalState.FAILED
        assert one(p, 10.0, value=reading(10.0), xids={"48": 1}) is ThermalState.OK
        assert one(p, 11.0, value=reading(11.0), xids={"48": 2}) is ThermalState.FAILED

    def test_recovery_ends_failed_at_once(self):
        p = policy()
        assert one(p, 0.0, value=reading(0.0), health=GpuHealth.RESET_REQUIRED) is ThermalState.FAILED
        assert one(p, 1.0, value=reading(1.0)) is ThermalState.OK

    def test_failed_gpu_does_not_stop_the_node(self):
        decision = policy().update(
            snapshot(0.0, sample(0, None, health=GpuHealth.LOST), sample(1, reading(0.0)))
        )
        assert decision.state is ThermalState.OK
        assert reasons.GPU_FAILED in decision.reasons
        assert "out of service: GPU 0" in decision.sentence

    def test_all_failed_is_a_failed_node(self):
        decision = policy().update(snapshot(0.0, sample(0, None, health=GpuHealth.LOST)))
        assert decision.state is ThermalState.FAILED
        assert decision.admits == NOTHING


def leases(
    *open_: tuple[int, float, float | None], taken: int | None = None, **held: tuple[float, ...]
) -> Leases:
    """GPU 0's open leases as (number, taken at, expected s), and released held times by class name."""
    opened = tuple(
        Lease(n, at, PriorityClass.DEFAULT, expected, at + (expected or 60.0) + 5.0)
        for n, at, expected in open_
    )
    count = max((n for n, _, _ in open_), default=0) if taken is None else taken
    durations = {PriorityClass(name): values for name, values in held.items()}
    return Leases(gpus={0: Ledger(taken=count, open=opened)}, held_s=durations)


class TestLeases:
    """Leases in the book are planned with until their jobs end; a lost GPU plans none."""

    def test_leases_still_to_show_come_off_the_slots(self):
        p = policy()
        drive(p, [20.0] * 10, power_w=100.0)
        free = p.update(snapshot(10.0, sample(0, reading(10.0, 20.0, power_w=100.0)), sequence=11)).gpus[0]
        booked = p.update(
            snapshot(11.0, sample(0, reading(11.0, 20.0, power_w=100.0)), sequence=12),
            leases((1, 10.5, None), (2, 10.6, None)),
        )
        gpu = booked.gpus[0]
        assert (gpu.reserved, gpu.pending, gpu.slots_counted) == (2, 2, 2)
        assert gpu.leases_of(PriorityClass.DEFAULT) == 2
        assert (
            2 <= free.slots.default < PolicyConfig().max_slots
        )  # not the cap: the limit is not safe at 20 °C
        assert gpu.slots.default == free.slots.default - 2
        assert gpu.pressure > free.pressure

    def test_a_step_of_their_power_shows_them(self):
        p = policy(job_power_w=200.0)
        drive(p, [30.0] * 10, power_w=100.0)
        gpu = p.update(
            snapshot(10.0, sample(0, reading(10.0, 26.0, power_w=500.0)), sequence=11),
            leases((1, 9.5, None), (2, 9.6, None)),
        ).gpus[0]
        assert (gpu.reserved, gpu.pending) == (2, 0)

    def test_a_failed_gpu_plans_none(self):
        p = policy()
        drive(p, [30.0] * 3)
        book = leases((1, 3.5, None), (2, 3.6, None), (3, 3.7, None))
        gpu = p.update(snapshot(4.0, sample(0, None, health=GpuHealth.LOST), sequence=4), book).gpus[0]
        assert (gpu.reserved, gpu.slots_counted) == (0, 3)

    def test_the_class_duration_is_learned_from_released_leases(self):
        p = policy(job_seconds={"default": 30.0})
        drive(p, [30.0] * 3)
        configured = p.update(snapshot(3.0, sample(0, reading(3.0)), sequence=4), leases())
        assert configured.job_plan(PriorityClass.DEFAULT) == (30.0, "configured")
        assert configured.job_plan(PriorityClass.CRITICAL) == (None, "unknown")
        learned = p.update(
            snapshot(4.0, sample(0, reading(4.0)), sequence=5),
            leases(default=tuple(float(s) for s in range(1, 11))),
        )
        seconds, basis = learned.job_plan(PriorityClass.DEFAULT)
        assert basis == "learned"
        assert seconds == pytest.approx(9.1)  # the 0.9 quantile of 1..10 s

    def test_pulses_leave_more_slots_than_steps(self):
        steps, pulses = policy(), policy(job_seconds={"default": 8.0, "critical": 8.0, "sheddable": 8.0})
        for p in (steps, pulses):
            drive(p, [20.0] * 10, power_w=100.0)
        at = snapshot(10.0, sample(0, reading(10.0, 20.0, power_w=100.0)), sequence=11)
        assert pulses.update(at).gpus[0].slots.default > steps.update(at).gpus[0].slots.default


class TestKOfN:
    """The node state is the worst shown state held by at least k in-service GPUs."""

    MARGINS = (5.0, 12.0, 30.0, 30.0)  # HOT, ELEVATED, OK, OK at 400 W of 700

    @pytest.mark.parametrize(
        ("k", "state"),
        [(1, ThermalState.HOT), (2, ThermalState.ELEVATED), (3, ThermalState.OK), (9, ThermalState.OK)],
    )
    def test_node_state(self, k, state):
        samples = [sample(i, reading(0.0, margin)) for i, margin in enumerate(self.MARGINS)]
        decision = policy(node_k=k).update(snapshot(0.0, *samples))
        assert decision.state is state
        assert decision.pressure == pytest.approx(sum(g.pressure for g in decision.gpus) / 4)

    def test_node_reasons_come_from_the_gpus_in_the_node_state(self):
        samples = [sample(i, reading(0.0, margin)) for i, margin in enumerate(self.MARGINS)]
        decision = policy().update(snapshot(0.0, *samples))
        assert decision.reasons == (reasons.NO_DEFAULT_SLOT,)
        assert decision.sentence.startswith("Node is hot: GPU 0 is hot")
        assert decision.admits == ALL_CLASSES  # the cool GPUs still have slots for every class

    def test_node_outvoting_its_worst_gpu_says_so(self):
        samples = [sample(i, reading(0.0, margin)) for i, margin in enumerate(self.MARGINS)]
        decision = policy(node_k=3).update(snapshot(0.0, *samples))
        assert decision.reasons == (reasons.WITHIN_LIMITS,)
        assert decision.sentence.startswith(
            "Node is ok: fewer than 3 GPUs are worse; the worst: GPU 0 is hot"
        )

    def test_all_ok_sentence(self):
        decision = policy().update(snapshot(0.0, sample(0, reading(0.0)), sample(1, reading(0.0))))
        assert decision.sentence == "All 2 GPUs in service are within limits; admitting every class."


class TestTracks:
    """History is kept per uuid and forgotten when a GPU leaves the snapshot."""

    def test_gpu_identity_follows_uuid_not_index(self):
        p = policy()
        p.update(snapshot(0.0, sample(0, reading(0.0, 5.0))))
        moved = dataclasses.replace(sample(0, reading(1.0, 30.0)), identity=sample(1).identity)
        assert p.update(snapshot(1.0, moved)).gpus[0].state is ThermalState.OK
        assert set(p._tracks) == {"GPU-test-1"}

    def test_interval_must_be_positive(self):
        with pytest.raises(ValueError, match="interval"):
            Policy(PolicyConfig(), 0.0)


class TestExpire:
    """expire() returns the decision itself while fresh, and UNKNOWN GPUs once their readings are stale."""

    def test_fresh_decision_is_returned_as_is(self):
        decision = drive(policy(), [30.0] * 3)[-1]
        assert expire(decision, 5.0, PolicyConfig(), 1.0) is decision

    def test_stale_decision_turns_unknown(self):
        decision = drive(policy(), [30.0] * 3)[-1]
        expired = expire(decision, 5.1, PolicyConfig(), 1.0)
        assert expired.state is ThermalState.UNKNOWN
        assert expired.admits == NOTHING
        assert expired.slots.critical == 0
        assert expired.gpus[0].reasons == (reasons.STALE_SAMPLE,)
        assert expired.gpus[0].margin_c == 30.0
        assert expired.gpus[0].predicted_margin_c is None  # predictions from a stale reading are dropped
        assert expired.sample_age_s == pytest.approx(3.1)
        assert expired.retry_after_for(PriorityClass.DEFAULT) is not None
        assert expire(expired, 6.0, PolicyConfig(), 1.0) is expired

    def test_fail_open_expired_decision_admits_everything(self):
        config = PolicyConfig(fail_open=True)
        decision = drive(Policy(config, 1.0), [30.0] * 3)[-1]
        assert expire(decision, 60.0, config, 1.0).admits == ALL_CLASSES

    def test_failed_gpu_stays_failed(self):
        decision = policy().update(
            snapshot(0.0, sample(0, None, health=GpuHealth.LOST), sample(1, reading(0.0)))
        )
        expired = expire(decision, 10.0, PolicyConfig(), 1.0)
        assert [g.state for g in expired.gpus] == [ThermalState.FAILED, ThermalState.UNKNOWN]


class TestSimulatedFault:
    """On the shipped cooling-fault scenario the failing GPU loses its slots before it slows down, alone."""

    def test_no_default_slot_before_slowdown_and_only_there(self):
        clock = ManualClock()
        sampler = Sampler(open_sim(str(SCENARIOS / "cooling-fault.toml"), clock), interval_s=1.0, clock=clock)
        p = Policy(PolicyConfig(), 1.0)
        hot_at = slowdown_at = None
        others = set()
        try:
            for t in range(900):
                decision = p.update(sampler.sample_once())
                gpu = decision.gpus[3]
                if hot_at is None and gpu.slots.default == 0:
                    hot_at = t
                if slowdown_at is None and gpu.margin_c <= 0:
                    slowdown_at = t
                others |= {g.state for g in decision.gpus if g.index != 3}
                clock.advance(1.0)
        finally:
            sampler.stop()
        assert slowdown_at is not None
        assert slowdown_at - hot_at >= 60  # held back a minute or more before the slowdown
        assert others == {ThermalState.OK}


class TestReleasesTeach:
    """The fall a released job leaves teaches ΔP_job, as a start's rise does (DESIGN §2)."""

    def test_a_release_fall_is_a_job_power_measurement(self):
        p = policy()
        drive(p, [30.0] * 5, power_w=100.0)
        started = Leases(gpus={0: Ledger(taken=1, open=(Lease(1, 4.5, PriorityClass.DEFAULT, 10.0, 20.0),))})
        gpu = p.update(snapshot(5.0, sample(0, reading(5.0, 30.0, power_w=300.0)), sequence=6), started).gpus[
            0
        ]
        assert gpu.job_power_w == pytest.approx(200.0)
        released = Leases(gpus={0: Ledger(taken=1, released=((1, 5.5),))})
        gpu = p.update(
            snapshot(6.0, sample(0, reading(6.0, 30.0, power_w=140.0)), sequence=7), released
        ).gpus[0]
        assert gpu.job_power_w == pytest.approx(180.0)  # the median of the 200 W rise and the 160 W fall

    def test_a_fall_with_a_start_in_it_teaches_nothing(self):
        p = policy()
        drive(p, [30.0] * 5, power_w=100.0)
        started = Leases(gpus={0: Ledger(taken=1, open=(Lease(1, 4.5, PriorityClass.DEFAULT, 10.0, 20.0),))})
        p.update(snapshot(5.0, sample(0, reading(5.0, 30.0, power_w=300.0)), sequence=6), started)
        both = Leases(
            gpus={
                0: Ledger(
                    taken=2, open=(Lease(2, 5.6, PriorityClass.DEFAULT, 10.0, 20.0),), released=((1, 5.5),)
                )
            }
        )
        gpu = p.update(snapshot(6.0, sample(0, reading(6.0, 30.0, power_w=140.0)), sequence=7), both).gpus[0]
        assert gpu.job_power_w == pytest.approx(200.0)
