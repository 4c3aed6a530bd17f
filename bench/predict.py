"""How well the policy predicts time to slowdown, on plants it was not fitted to: `bench/predict.py`.

Run: .venv/bin/python bench/predict.py [--verbose] [--plants profiles|wide] [--plant PLANT]


Each run is one simulated GPU (H100, H200, A100) at an inlet of 20-40 °C, sampled every second in
virtual time through the full `Policy`. Two plant kinds: the two-node sim (die and heat sink)
with every R, C and the power per job drawn within ±30 % of the SKU profile (a seed per run),
and the first-order plant (one RC node, the model's own family). After two minutes of sampled
history something pushes the GPU over the limit, to a steady state `overshoot` °C past max
operating (2 °C: a mild fault, 16 °C: a severe one):
- fault: the fan fails under full load (R_sa multiplied),
- jobs: a GPU whose cooling was already degraded goes from one job to full load,
- inlet: a loaded GPU with degraded cooling sees its inlet air 15 °C warmer;
- pulses (with `--plants wide`): a GPU with degraded cooling runs bursts of full load
  (PULSE_ON_S) between stretches of one job (PULSE_OFF_S), as a queue that fills and drains
  does. The forecast plans at present power, so a crossing is scored from the start of the burst
  it comes in, as one is from the event: one that comes under 35 s into its burst is not scored.
The cooling factor that gives the overshoot is solved from the drawn board's own R_ds and R_sa.
`--plants wide` runs the same heat-ups on each family of sources/sim/plants.py instead (a decade
either side of the profiles: wide two-node, three-node, a lagging noisy sensor, a fan curve, and
the first-order plant at ±30 %), and reports every family on its own.

The true crossing is when the exact die temperature reaches max operating (interpolated between
samples; the first reading of margin 0 is the sample after it). Every prediction made 25-35 s
before it is scored: |predicted - actual| / actual, a missing one counts as a miss. A run whose
crossing comes under 35 s after its event leaves nothing to score and is listed, not dropped.
Predictions made in the first REACTION_S seconds after the event are not scored either (they are
counted and shown): a forecast made one second after a fan failed has seen no reading that says
so, and no method can know of an event before a reading shows it.
Target, overall and on the two-node plants alone (with `--plants wide`: on every family): >= 90 %
of scored predictions within ±25 %, median error <= 10 %, none missing, over >= 60 runs. Also
shown: the earliest usable warning (how long before the crossing the prediction was published and
stayed within ±25 % until the scored window), and the error of the predictions made 10 s and 60 s
before the crossing.
"""

from __future__ import annotations

import argparse
import math
import statistics
from dataclasses import dataclass, field

from gpuwatch.policy.config import PolicyConfig
from gpuwatch.policy.engine import Policy
from gpuwatch.sources.clock import ManualClock
from gpuwatch.sources.model import SampleHealth, Snapshot
from gpuwatch.sources.sim import SimSource, physics
from gpuwatch.sources.sim.plants import FAMILIES
from gpuwatch.sources.sim.profiles import SkuProfile
from gpuwatch.sources.sim.scenario import LoadSettings, Scenario

SKUS = ("H100", "H200", "A100")
INLETS_C = (20.0, 25.0, 30.0, 35.0, 40.0)
KINDS = ("fault", "jobs", "inlet")
# With --plants wide also bursts of full load: on this long, then one job this long, s.
PULSES = "pulses"
PULSE_ON_S, PULSE_OFF_S = 90.0, 30.0
OVERSHOOTS_C = (2.0, 4.0, 8.0, 16.0)
PLANTS = ("two-node", "first-order")
PLANT_SPREAD = {"two-node": 0.3, "first-order": 0.0}
# With --plants wide: the plants.py families, which draw their own spread (the first-order one
# is the profile's first-order plant at ±30 %).
WIDE_SPREAD = {family: 0.3 if family == "first-order" else 0.0 for family in FAMILIES}
FULL_LOAD_JOBS = 4
PRE_EVENT_MARGIN_C = 3.0
INLET_STEP_C = 15.0
SETTLE_S = 2400.0  # unsampled virtual time for a degraded GPU to settle before sampling starts
HISTORY_S = 120.0  # sampled history before the event
SCORED_FROM_S, SCORED_TO_S = 25.0, 35.0  # predictions this long before the crossing are scored
REACTION_S = 5.0  # ...once this long after the event: five readings to see it by
LIMIT_S = 1800.0  # a run that has not crossed this long after its event is listed as such
TOLERANCE = 0.25
TARGET_SHARE = 0.9
TARGET_MEDIAN = 0.10
MIN_RUNS = 60


@dataclass(frozen=True)
class Run:
    """One heat-up to predict."""

    plant: str
    spread: float
    sku: str
    inlet_c: float
    kind: str
    overshoot_c: float
    seed: int
    phase_s: float  # when the event falls between two samples


@dataclass
class Outcome:
    """What happened in one run: the crossing, and every prediction made after the event."""

    run: Run
    cooling_factor: float
    lead_s: float = math.inf  # event (for pulses, the start of the last burst) to crossing
    # (seconds before the crossing, predicted time to slowdown or None), after the event
    predictions: list[tuple[float, float | None]] = field(default_factory=list)
    bases: set[str] = field(default_factory=set)

    @property
    def scored(self) -> bool:
        """Whether the crossing came late enough after the event to score predictions."""
        return math.isfinite(self.lead_s) and self.lead_s >= SCORED_TO_S

    def errors(self, low_s: float = SCORED_FROM_S, high_s: float = SCORED_TO_S) -> list[float]:
        """|predicted - actual| / actual of the predictions made `low_s`-`high_s` before the crossing.

        Those made within REACTION_S of the event are left out (`unseen` counts them).
        """
        return [
            math.inf if predicted is None else abs(predicted - ahead) / ahead
            for ahead, predicted in self.predictions
            if low_s <= ahead <= min(high_s, self.lead_s - REACTION_S)
        ]

    @property
    def unseen(self) -> int:
        """Predictions in the scored window made before REACTION_S of readings followed the event."""
        return sum(
            1
            for ahead, _ in self.predictions
            if SCORED_FROM_S <= ahead <= SCORED_TO_S and ahead > self.lead_s - REACTION_S
        )

    def error_at(self, ahead_s: float) -> float | None:
        """The error of the prediction made nearest `ahead_s` before the crossing (None: none that early)."""
        near = [
            (abs(ahead - ahead_s), ahead, p) for ahead, p in self.predictions if abs(ahead - ahead_s) <= 0.5
        ]
        if not near:
            return None
        _, ahead, predicted = min(near)
        return math.inf if predicted is None else abs(predicted - ahead) / ahead

    @property
    def warning_s(self) -> float:
        """How long before the crossing the prediction was published and stayed within ±25 %.

        Counted back from the scored window (35 s before the crossing): 0 if the prediction was
        not good from there on.
        """
        earliest = 0.0
        for ahead, predicted in sorted(self.predictions, reverse=False):
            if ahead < SCORED_TO_S:
                continue
            if predicted is None or abs(predicted - ahead) / ahead > TOLERANCE:
                break
            earliest = ahead
        return earliest


def board(source: SimSource) -> SkuProfile:
    """The simulated GPU's own drawn profile."""
    return source.physics_now()[0].profile


def full_power_w(profile: SkuProfile, jobs: int) -> float:
    """Board power of `jobs` jobs at full clocks, capped at the default limit, W."""
    return min(profile.power_idle_w + jobs * profile.job.power_w, profile.power_default_limit_w)


def cooling_factor(run: Run, profile: SkuProfile) -> float | None:
    """The factor on R_sa putting the final steady state `overshoot_c` past max operating (None: cf < 1)."""
    power_w = full_power_w(profile, FULL_LOAD_JOBS)
    rise_c = profile.max_operating_temperature_c + run.overshoot_c - run.inlet_c
    if run.kind == "inlet":
        rise_c -= INLET_STEP_C
    model = profile.thermal
    fixed = model.fixed_resistance_c_per_w  # die to sink, which no fault changes
    factor = (rise_c - fixed * power_w) / (model.sink_resistance_c_per_w * power_w)
    if factor < 1.0:
        return None
    # Before the event the GPU must sit at least PRE_EVENT_MARGIN_C below the limit.
    before_w = full_power_w(profile, 1) if run.kind in {"jobs", PULSES} else power_w
    before_c = run.inlet_c + (fixed + factor * model.sink_resistance_c_per_w) * before_w
    if run.kind == "fault":  # healthy before: a fan curve is where it settles at this power
        healthy = physics.Conditions(FULL_LOAD_JOBS, run.inlet_c, profile.power_default_limit_w)
        before_c = physics.steady_temperature_c(profile, healthy, power_w)
    return factor if before_c <= profile.max_operating_temperature_c - PRE_EVENT_MARGIN_C else None


def simulate(run: Run, config: PolicyConfig) -> Outcome | None:
    """Sample the run every second through the policy until the exact margin crosses 0."""
    clock = ManualClock()
    start_jobs = 1 if run.kind in {"jobs", PULSES} else FULL_LOAD_JOBS
    scenario = Scenario(
        skus=(run.sku,),
        seed=run.seed,
        inlet_c=run.inlet_c,
        load=LoadSettings(jobs=start_jobs, arrival_per_s=0.0),
        spread=run.spread,
        plant=run.plant,
    )
    source = SimSource(scenario, clock)
    profile = board(source)
    factor = cooling_factor(run, profile)
    if factor is None:
        return None
    if run.kind != "fault":
        source.set_cooling(factor)
    clock.advance(SETTLE_S)
    policy = Policy(config, interval_s=1.0)
    outcome = Outcome(run, factor)
    limit_c = profile.max_operating_temperature_c
    sample_at = clock.monotonic()
    event_at = sample_at + HISTORY_S + run.phase_s
    event_done = False
    made: list[tuple[float, float | None]] = []  # (monotonic, predicted), after the event
    last: tuple[float, float] | None = None  # (monotonic, exact margin)
    burst_at = event_at  # pulses: when the last burst began
    switches = _pulse_switches(event_at) if run.kind == PULSES else []
    for sequence in range(1, int(HISTORY_S + LIMIT_S) + 2):
        if not event_done and event_at <= sample_at:
            clock.advance(event_at - clock.monotonic())
            _event(run, source, factor)
            event_done = True
        while switches and switches[0][0] <= sample_at:
            at, jobs = switches.pop(0)
            clock.advance(at - clock.monotonic())
            source.set_jobs(0, jobs)
            if jobs == FULL_LOAD_JOBS:
                burst_at = at
        clock.advance(sample_at - clock.monotonic())
        decision = policy.update(_snapshot(source, clock, sequence)).gpus[0]
        margin_c = limit_c - source.physics_now()[0].state.temperature_c
        if event_done:
            made.append((sample_at, decision.time_to_slowdown_s))
            outcome.bases.add(decision.prediction_basis)
            if margin_c <= 0 and last is not None:
                crossing = last[0] + last[1] / (last[1] - margin_c) * (sample_at - last[0])
                outcome.lead_s = crossing - burst_at
                outcome.predictions = [(crossing - at, predicted) for at, predicted in made if at < crossing]
                return outcome
        last = (sample_at, margin_c)
        sample_at += 1.0
    return outcome


def _pulse_switches(event_at: float) -> list[tuple[float, int]]:
    """(monotonic, jobs) of every switch between a burst and a lull after the event's first burst."""
    switches = []
    at = event_at
    while at < event_at + LIMIT_S:
        switches += [(at + PULSE_ON_S, 1), (at + PULSE_ON_S + PULSE_OFF_S, FULL_LOAD_JOBS)]
        at += PULSE_ON_S + PULSE_OFF_S
    return switches


def _event(run: Run, source: SimSource, factor: float) -> None:
    if run.kind == "fault":
        source.set_cooling(factor)
    elif run.kind in {"jobs", PULSES}:
        source.set_jobs(0, FULL_LOAD_JOBS)
    else:
        source.set_inlet(run.inlet_c + INLET_STEP_C)


def _snapshot(source: SimSource, clock: ManualClock, sequence: int) -> Snapshot:
    """A snapshot as the sampler would publish it, without its thread."""
    reading = source.read()
    now = clock.monotonic()
    return Snapshot(
        sequence=sequence,
        taken_at=clock.time(),
        monotonic=now,
        source=source.spec,
        gpus=reading.gpus,
        health=SampleHealth(attempts=sequence, last_success=clock.time(), last_success_monotonic=now),
    )


@dataclass(frozen=True)
class Summary:
    """The figures of one group of runs."""

    runs: int
    scored: int
    within: float
    median: float
    missing: int
    unseen: int  # in the scored window but within REACTION_S of the event: not scored
    warning_s: float
    at_10s: float
    at_60s: float

    @property
    def passed(self) -> bool:
        """Whether the group meets the target."""
        return self.within >= TARGET_SHARE and self.median <= TARGET_MEDIAN and self.missing == 0


def summarise(outcomes: list[Outcome]) -> Summary:
    """Pool every scored prediction of `outcomes`."""
    scored = [o for o in outcomes if o.scored]
    errors = [e for o in scored for e in o.errors()]
    at_10 = [e for o in scored if (e := o.error_at(10.0)) is not None]
    at_60 = [e for o in scored if (e := o.error_at(60.0)) is not None]
    return Summary(
        runs=len(outcomes),
        scored=len(errors),
        within=sum(1 for e in errors if e <= TOLERANCE) / len(errors) if errors else 0.0,
        median=statistics.median(errors) if errors else math.inf,
        missing=sum(1 for e in errors if math.isinf(e)),
        unseen=sum(o.unseen for o in scored),
        warning_s=statistics.median(o.warning_s for o in scored) if scored else 0.0,
        at_10s=statistics.median(at_10) if at_10 else math.inf,
        at_60s=statistics.median(at_60) if at_60 else math.inf,
    )


HEADER = (
    f"{'group':24} {'runs':>4} {'scored':>6} {'±25%':>6} {'median':>6} {'miss':>4} "
    f"{'unseen':>6} {'warn s':>6} {'@10s':>6} {'@60s':>6}"
)


def row(name: str, s: Summary) -> str:
    """One table row."""
    return (
        f"{name:24} {s.runs:4} {s.scored:6} {s.within:6.1%} {_pct(s.median):>6} {s.missing:4} "
        f"{s.unseen:6} {s.warning_s:6.0f} {_pct(s.at_10s):>6} {_pct(s.at_60s):>6}"
    )


def report(outcomes: list[Outcome], *, verbose: bool, plants: tuple[str, ...] = PLANTS) -> bool:
    """Print the tables; True when the target is met overall and on two-node plants (wide: every family)."""
    if verbose:
        for o in outcomes:
            r = o.run
            errs = o.errors()
            worst = max(errs) if errs else None
            print(
                f"{r.plant:11} {r.sku:4} {r.inlet_c:4.0f} {r.kind:5} {r.overshoot_c:4.0f} "
                f"cf {o.cooling_factor:5.2f} "
                f"lead {o.lead_s:6.0f} worst {_pct(worst):>6} warn {o.warning_s:4.0f} {sorted(o.bases)}"
            )
        print()
    print(HEADER)
    kinds = (*KINDS, PULSES) if any(o.run.kind == PULSES for o in outcomes) else KINDS
    for plant in plants:
        for kind in kinds:
            group = [o for o in outcomes if o.run.plant == plant and o.run.kind == kind]
            print(row(f"{plant} {kind}", summarise(group)))
    for sku in SKUS:
        print(row(f"{sku}", summarise([o for o in outcomes if o.run.sku == sku])))
    overall = summarise(outcomes)
    by_plant = {plant: summarise([o for o in outcomes if o.run.plant == plant]) for plant in plants}
    for plant, summary in by_plant.items():
        print(row(plant, summary))
    print(row("overall", overall))
    two_node = by_plant.get("two-node", overall)
    unscored = [o for o in outcomes if not o.scored]
    print(f"\nnot scored ({len(unscored)}: crossing under {SCORED_TO_S:.0f} s after the event, or none):")
    for o in unscored:
        r = o.run
        lead = "never" if math.isinf(o.lead_s) else f"{o.lead_s:.0f} s"
        print(f"  {r.plant} {r.sku} inlet {r.inlet_c:.0f} {r.kind} +{r.overshoot_c:.0f} °C: crossed {lead}")
    counted = sum(1 for o in outcomes if o.scored)
    judged = (
        [s for plant, s in by_plant.items() if plant != "first-order"] if plants != PLANTS else [two_node]
    )
    passed = overall.passed and all(s.passed for s in judged) and counted >= MIN_RUNS
    failing = [plant for plant, s in by_plant.items() if not s.passed]
    verdict = "PASS" if passed else "FAIL"
    two_node_part = (
        f"two-node {two_node.within:.1%}, median {_pct(two_node.median)}, {two_node.missing} missing; "
        if "two-node" in by_plant
        else ""
    )
    print(
        f"\n{verdict}: overall {overall.within:.1%} within ±{TOLERANCE:.0%}, median {_pct(overall.median)}, "
        f"{overall.missing} missing; {two_node_part}{counted} runs scored (target >= {TARGET_SHARE:.0%}, "
        f"median <= {TARGET_MEDIAN:.0%}, none missing, >= {MIN_RUNS} runs); plants short of it: "
        f"{', '.join(failing) or 'none'}"
    )
    return passed


def _pct(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.0%}" if math.isfinite(value) else "inf"


def runs(spreads: dict[str, float] = PLANT_SPREAD, *, pulses: bool = False) -> list[Run]:
    """Every combination of the plants in `spreads`, each with its own seed and event phase.

    `pulses`: the bursts too, numbered after the rest (the others keep their seeds).
    """
    out = []
    combinations = [
        (p, s, i, k, o) for p in spreads for s in SKUS for i in INLETS_C for k in KINDS for o in OVERSHOOTS_C
    ]
    if pulses:
        combinations += [
            (p, s, i, PULSES, o) for p in spreads for s in SKUS for i in INLETS_C for o in OVERSHOOTS_C
        ]
    for index, (plant, sku, inlet, kind, overshoot) in enumerate(combinations):
        run = Run(
            plant, spreads[plant], sku, inlet, kind, overshoot, seed=1000 + index, phase_s=0.5 * (index % 2)
        )
        out.append(run)
    return out


def main() -> int:
    """Run every combination and print the tables; exit 0 when the target is met."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--verbose", action="store_true", help="print every run")
    parser.add_argument(
        "--plants",
        choices=("profiles", "wide"),
        default="profiles",
        help="the profiles' plants, or the wide family",
    )
    parser.add_argument("--plant", choices=(*PLANTS, *FAMILIES), help="only this plant kind or family")
    args = parser.parse_args()
    config = PolicyConfig()
    spreads = WIDE_SPREAD if args.plants == "wide" else PLANT_SPREAD
    wide = args.plants == "wide"
    selected = [r for r in runs(spreads, pulses=wide) if args.plant is None or r.plant == args.plant]
    outcomes = [o for o in (simulate(r, config) for r in selected) if o is not None]
    plants = tuple(p for p in spreads if args.plant is None or p == args.plant)
    return 0 if report(outcomes, verbose=args.verbose, plants=plants) else 1


if __name__ == "__main__":
    raise SystemExit(main())
