"""The slots stage: jobs that fit over the horizon above each class's guard; properties that always hold."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from policy_builders import reading, sample, wide_config

from gpuwatch.policy import reasons
from gpuwatch.policy.config import PolicyConfig
from gpuwatch.policy.decision import PriorityClass, Slots
from gpuwatch.policy.durations import DurationBasis, JobDurations, JobPlan
from gpuwatch.policy.leases import Lease, LeaseMemory, OnGpu
from gpuwatch.policy.model.learning import Learned, Load, MarginModel
from gpuwatch.policy.model.prediction import HORIZON_SHARES, Basis, Forecast, Outlook, step_costs
from gpuwatch.policy.model.schedule import Schedule
from gpuwatch.policy.model.thermal_model import RcParameters
from gpuwatch.policy.readings import Moment, XidMemory, read
from gpuwatch.policy.slots import headroom
from gpuwatch.sources.model import ClockEventReason

# A board like the sim's dense-chassis H100: die 0.02 °C/W, sink 0.07 °C/W with tau 280 s.
RESPONSE = RcParameters(
    tau_s=280.0, resistance_c_per_w=0.09, zero_power_margin_c=60.0, die_resistance_c_per_w=0.02
)
JOB_W = 200.0
NOW = 100.0


def lease(number: int, expected_s: float | None = None, *, taken_at: float = NOW - 1.0) -> Lease:
    """A default-class lease taken at `taken_at`, planned for `expected_s` (None: unknown)."""
    return Lease(number, taken_at, PriorityClass.DEFAULT, expected_s, taken_at + (expected_s or 60.0) + 5.0)


def outlook(  # noqa: PLR0913 - every input of the stage, each its own knob
    margin_c: float,
    *,
    drift_c_per_s: float = 0.0,
    reserved: int = 0,
    running: tuple[Lease, ...] = (),
    pending: tuple[Lease, ...] = (),
    job_s: float | None = None,
    power_w: float = 300.0,
    limit_w: float = 1500.0,  # far above the jobs here, unless a test asks for the cap
    reasons_bits: int = 0,
    memory_margin_c: float = 40.0,
    config: PolicyConfig | None = None,
) -> Outlook:
    """The forecast stage's output for a GPU whose margin drifts linearly at present power.

    `reserved` leases of unknown duration are still to show, besides `pending`; `job_s` is every
    class's planned duration (None: unknown).
    """
    config = config or wide_config()
    plan = JobPlan(job_s, DurationBasis.UNKNOWN if job_s is None else DurationBasis.CONFIGURED)
    moment = Moment(NOW, config, 1.0, JobDurations(tuple((cls, plan) for cls in PriorityClass)))
    value = reading(
        NOW, margin_c, power_w=power_w, clock_event_reasons=reasons_bits, memory_margin_c=memory_margin_c
    )
    readings, _ = read(sample(0, value), XidMemory(), moment)
    load = Load(power_w, limit_w, JOB_W)
    unknown = tuple(lease(100 + i) for i in range(reserved))
    on_gpu = OnGpu(
        LeaseMemory(),
        leases=(*running, *pending, *unknown),
        running=running,
        pending=(*pending, *unknown),
        counted=0,
        released_shown=0,
        started_between=False,
    )
    learned = Learned(readings, MarginModel(), None, on_gpu, load, None, margin_c)
    offsets = tuple(share * config.horizon_s for share in HORIZON_SHARES)
    forecast = Forecast(
        Basis.MODEL,
        None,
        None,
        None,
        offsets_s=offsets,
        path_c=tuple(margin_c + drift_c_per_s * h for h in offsets),
        response=RESPONSE,
        cost_c_per_w=step_costs(RESPONSE, offsets),
        headroom_w=max(0.0, limit_w - power_w),
        margin_at=lambda h: margin_c + drift_c_per_s * h,
    )
    return Outlook(learned, forecast)


class TestSlots:
    """Worked figures of the slots and what blocks them."""

    def test_one_job_costs_its_die_part_at_once_and_its_sink_part_over_the_horizon(self):
        room = headroom(outlook(20.0))
        # 200 W: 0.02 * 200 = 4 °C at once, 0.07 * 200 * (1 - e^-60/280) = 2.7 °C by 60 s.
        per_job_c = JOB_W * RESPONSE.step_response_c_per_w(60.0)
        assert per_job_c == pytest.approx(6.7, abs=0.1)
        assert room.schedule is not None
        assert room.schedule.jobs_fitting(3.0, None) == pytest.approx((20.0 - 3.0) / per_job_c)

    def test_slots_per_class_follow_the_guards(self):
        slots = headroom(outlook(20.0, power_w=100.0)).slots
        # 17, 19 and 12 °C of room at 6.7 °C a job.
        assert (slots.critical, slots.default, slots.sheddable) == (2, 2, 1)

    def test_reserved_jobs_come_off_the_slots_but_not_the_capacity(self):
        room = headroom(outlook(30.0, power_w=100.0, reserved=2))
        assert room.capacity.default == 4
        assert room.slots.default == 2
        assert room.pending == 2

    def test_a_gpu_safe_even_at_its_power_limit_gets_the_cap(self):
        room = headroom(outlook(40.0, power_w=650.0, limit_w=700.0))
        assert room.slots.sheddable == PolicyConfig().max_slots
        # The cap is not the heat's: a class offered it is told to ask again at the next sample.
        assert dict(room.waits_s)[PriorityClass.SHEDDABLE] == 1.0

    def test_reserved_jobs_come_off_the_cap_too(self):
        # The power limit keeps this GPU safe, but no more than max_slots jobs go unseen at once.
        most = PolicyConfig().max_slots
        room = headroom(outlook(40.0, power_w=650.0, limit_w=700.0, reserved=most - 3))
        assert (room.capacity.default, room.slots.default) == (most, 3)
        full = headroom(outlook(40.0, power_w=650.0, limit_w=700.0, reserved=most + 5))
        assert full.slots == Slots(0, 0, 0)

    def test_a_falling_path_leaves_fewer_slots(self):
        flat = headroom(outlook(20.0, power_w=100.0)).slots
        falling = headroom(outlook(20.0, power_w=100.0, drift_c_per_s=-0.1)).slots
        assert falling.default < flat.default

    def test_a_path_below_the_guard_leaves_none(self):
        room = headroom(outlook(10.0, drift_c_per_s=-0.2, power_w=100.0))
        assert room.slots.default == 0
        assert room.headroom_c is not None
        assert room.headroom_c < 0

    @pytest.mark.parametrize(
        ("kwargs", "code"),
        [
            ({"reasons_bits": int(ClockEventReason.SW_THERMAL_SLOWDOWN)}, reasons.SW_THERMAL_SLOWDOWN),
            ({"reasons_bits": int(ClockEventReason.HW_THERMAL_SLOWDOWN)}, reasons.HW_THERMAL_SLOWDOWN),
            ({"memory_margin_c": 0.0}, reasons.MEMORY_MARGIN_EXHAUSTED),
        ],
    )
    def test_slowdown_and_hbm_block_every_class(self, kwargs, code):
        room = headroom(outlook(30.0, **kwargs))
        assert room.slots.critical == 0
        assert room.blocked == code

    def test_waits_say_when_a_class_without_a_slot_gets_one(self):
        room = headroom(outlook(9.0, power_w=500.0))
        waits = dict(room.waits_s)
        assert room.slots.sheddable == 0
        assert waits[PriorityClass.SHEDDABLE] is not None
        assert 1.0 <= waits[PriorityClass.SHEDDABLE] <= 121.0


margins = st.floats(-5.0, 60.0, allow_nan=False)
drifts = st.floats(-0.3, 0.1, allow_nan=False)
powers = st.floats(90.0, 690.0, allow_nan=False)
reservations = st.integers(0, 6)


class TestProperties:
    """What must hold for every GPU state: the properties issue 13 names."""

    @settings(max_examples=300, deadline=None)
    @given(margin=margins, fall=st.floats(0.0, 20.0), drift=drifts, power=powers, reserved=reservations)
    def test_slots_never_increase_as_the_margin_falls(self, margin, fall, drift, power, reserved):
        warm = headroom(outlook(margin, drift_c_per_s=drift, power_w=power, reserved=reserved)).slots
        hot = headroom(outlook(margin - fall, drift_c_per_s=drift, power_w=power, reserved=reserved)).slots
        for cls in PriorityClass:
            assert hot.of(cls) <= warm.of(cls)

    @settings(max_examples=300, deadline=None)
    @given(margin=margins, drift=drifts, power=powers, low=st.floats(0.0, 10.0), rise=st.floats(0.0, 10.0))
    def test_slots_never_increase_as_the_guard_rises(self, margin, drift, power, low, rise):
        def slots_at(guard: float) -> int:
            config = PolicyConfig(critical_guard_c=0.0, default_guard_c=guard, sheddable_guard_c=guard)
            return headroom(outlook(margin, drift_c_per_s=drift, power_w=power, config=config)).slots.default

        assert slots_at(low + rise) <= slots_at(low)

    @settings(max_examples=300, deadline=None)
    @given(margin=st.floats(-20.0, 0.0), drift=drifts, power=powers)
    def test_never_a_slot_at_margin_zero_or_below(self, margin, drift, power):
        room = headroom(outlook(margin, drift_c_per_s=drift, power_w=power))
        assert room.slots.critical == 0

    @settings(max_examples=300, deadline=None)
    @given(margin=margins, drift=drifts, power=powers, reserved=reservations)
    def test_classes_are_ordered(self, margin, drift, power, reserved):
        slots = headroom(outlook(margin, drift_c_per_s=drift, power_w=power, reserved=reserved)).slots
        assert slots.critical >= slots.default >= slots.sheddable >= 0

    @settings(max_examples=200, deadline=None)
    @given(margin=margins, drift=drifts, power=powers, reserved=reservations)
    def test_slots_are_capped(self, margin, drift, power, reserved):
        slots = headroom(outlook(margin, drift_c_per_s=drift, power_w=power, reserved=reserved)).slots
        assert slots.critical <= PolicyConfig().max_slots
        assert not math.isnan(float(slots.critical))


class TestJobsEnd:
    """Slots plan with pulses of the class's duration and with each leased job's planned end (DESIGN §2)."""

    def test_a_pulse_costs_what_it_adds_until_it_ends(self):
        room = headroom(outlook(20.0, job_s=8.0))
        assert room.schedule is not None
        # The sink part of an 8 s pulse: 0.07 * 200 * (1 - e^-8/280) = 0.39 °C at its end; the die 4 °C.
        per_job_c = JOB_W * RESPONSE.step_response_c_per_w(8.0)
        assert room.schedule.jobs_fitting(3.0, 8.0) == pytest.approx((20.0 - 3.0) / per_job_c)

    def test_short_jobs_get_more_slots_than_jobs_that_never_end(self):
        steps = headroom(outlook(20.0, power_w=100.0)).slots
        pulses = headroom(outlook(20.0, power_w=100.0, job_s=8.0)).slots
        assert pulses.default > steps.default
        assert (steps.default, pulses.default) == (2, 3)  # 17 °C of room at 6.7 and at 4.4 °C a job

    def test_a_running_job_ending_soon_leaves_more_room_than_one_that_runs_on(self):
        on = headroom(outlook(12.0, drift_c_per_s=-0.1, power_w=500.0, running=(lease(1),))).slots
        ending = headroom(outlook(12.0, drift_c_per_s=-0.1, power_w=500.0, running=(lease(1, 5.0),))).slots
        # What comes back is the heat sink's share: the die's is counted once the readings show it.
        assert (on.critical, ending.critical) == (0, 1)

    def test_the_die_is_not_counted_on_to_cool_at_a_planned_end(self):
        room = headroom(outlook(12.0, power_w=500.0, running=(lease(1, 5.0),)))
        assert room.schedule is not None
        assert room.schedule.steps == ((4.0, -JOB_W),)
        # 0.07 °C/W of slow node with tau 280 s: 200 W gives back 14 * (1 - e^-10/280) by 10 s after.
        assert room.schedule.margin_c(14.0) == pytest.approx(12.0 + JOB_W * 0.07 * -math.expm1(-10 / 280))
        expected = Schedule(room.outlook.forecast, room.schedule.steps, JOB_W, safe=False)
        assert expected.margin_c(14.0) == pytest.approx(12.0 + JOB_W * RESPONSE.step_response_c_per_w(10.0))

    def test_a_job_still_to_show_counts_until_its_planned_end(self):
        free = headroom(outlook(20.0, power_w=100.0, job_s=8.0)).slots
        short = headroom(outlook(20.0, power_w=100.0, job_s=8.0, pending=(lease(1, 3.0),))).slots
        long = headroom(outlook(20.0, power_w=100.0, job_s=8.0, pending=(lease(1, 60.0),))).slots
        assert long.default <= short.default <= free.default
        assert long.default < free.default

    def test_an_overdue_job_is_not_counted_on_to_stop(self):
        overdue = Lease(1, NOW - 20.0, PriorityClass.DEFAULT, 10.0, NOW + 30.0)
        late = headroom(outlook(12.0, drift_c_per_s=-0.1, power_w=500.0, running=(overdue,), job_s=8.0)).slots
        on = headroom(outlook(12.0, drift_c_per_s=-0.1, power_w=500.0, running=(lease(1),), job_s=8.0)).slots
        assert late == on

    def test_the_wait_is_the_first_planned_end_that_gives_a_slot_back(self):
        # No default slot at 5 °C over a 3 °C guard with the GPU heating; a leased job ends in 7 s.
        blocked = outlook(5.0, drift_c_per_s=-0.02, power_w=600.0, job_s=8.0, running=(lease(1, 8.0),))
        room = headroom(blocked)
        waits = dict(room.waits_s)
        assert room.slots.default == 0
        assert waits[PriorityClass.DEFAULT] == pytest.approx(7.0 + 1.0)  # its end, then one interval

    def test_capped_safe_still_counts_the_jobs_to_show(self):
        most = PolicyConfig().max_slots
        room = headroom(outlook(40.0, power_w=650.0, limit_w=700.0, job_s=8.0, pending=(lease(1, 8.0),)))
        assert (room.capacity.default, room.slots.default) == (most, most - 1)

    def test_long_slots_count_jobs_that_last_the_horizon(self):
        pulses = headroom(outlook(20.0, power_w=100.0, job_s=8.0))
        assert (pulses.slots.default, pulses.long_slots.default) == (3, 2)  # 17 °C at 4.4 and at 6.7 °C a job
        steps = headroom(outlook(20.0, power_w=100.0))
        assert steps.long_slots == steps.slots

    def test_a_lease_never_seen_starting_stops_counting_after_its_end(self):
        free = headroom(outlook(20.0, power_w=100.0, job_s=8.0)).slots
        overdue = Lease(1, NOW - 30.0, PriorityClass.DEFAULT, 10.0, NOW + 10.0)
        late = headroom(outlook(20.0, power_w=100.0, job_s=8.0, pending=(overdue,))).slots
        unknown = headroom(outlook(20.0, power_w=100.0, job_s=8.0, pending=(lease(1),))).slots
        assert late == free
        assert unknown.default < free.default
