"""The sim's thermal step response beside the real board it was built from: `bench/step_response.py`.

Run: .venv/bin/python bench/step_response.py [--plot FILE.png]

Two tables (and, with --plot, the same as two panels):
- the step from idle to full load of a simulated H100 (two-node plant, the profile's own R and C,
  inlet 25 °C): the die's rise at times after the step as a share of its final rise, and the two
  time constants a two-exponential fit finds;
- a real A100 serving bursts (../shared/data/traces/a100_serving_250ms_excerpt.csv, copied to
  tests/data/traces/): its recorded power replayed through the two-node model for a grid of die
  resistances and time constants, with the RMS error against the recorded temperature.
  nvidia-smi's power column lags the temperature by one 250 ms sample (the averaged power.draw),
  so each temperature is compared with the model driven by power up to the next sample.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import math
from datetime import datetime
from pathlib import Path

from gpuwatch.sources.sim import physics
from gpuwatch.sources.sim.profiles import A100_SXM, H100_SXM, SkuProfile

TRACE = Path(__file__).resolve().parents[1] / "tests" / "data" / "traces" / "a100_serving_250ms_excerpt.csv"
STEP_TIMES_S = (0.25, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)
DIE_TAUS_S = (0.1, 0.25, 0.5, 1.0, 2.0, 4.0)
DIE_RESISTANCES_C_PER_W = (0.015, 0.02, 0.025, 0.03, 0.04)
READING_LEAD = 1  # samples by which the recorded temperature leads the recorded power


def step_path(
    profile: SkuProfile, jobs: int, seconds: float, dt_s: float
) -> list[tuple[float, float, float]]:
    """(t, die rise, sink rise) over `seconds` after a step from idle to `jobs` jobs, °C over idle."""
    idle_conditions = physics.Conditions(jobs=0, inlet_c=25.0, power_limit_w=profile.power_default_limit_w)
    busy = dataclasses.replace(idle_conditions, jobs=jobs)
    idle = physics.settled_state(profile, idle_conditions)
    state, t, out = idle, 0.0, [(0.0, 0.0, 0.0)]
    while t < seconds - 1e-9:
        state = physics.step(profile, state, busy, dt_s)
        t += dt_s
        out.append(
            (t, state.temperature_c - idle.temperature_c, state.sink_temperature_c - idle.sink_temperature_c)
        )
    return out


def fitted_time_constants(path: list[tuple[float, float, float]], final_c: float) -> tuple[float, float]:
    """(fast, slow) time constants, s: the slow from the tail's log slope, the fast from what it leaves."""
    tail = [(t, math.log(final_c - rise)) for t, rise, _ in path if 60.0 <= t <= 400.0]
    mean_t = sum(t for t, _ in tail) / len(tail)
    mean_y = sum(y for _, y in tail) / len(tail)
    slope = sum((t - mean_t) * (y - mean_y) for t, y in tail) / sum((t - mean_t) ** 2 for t, _ in tail)
    slow_amp = math.exp(mean_y - slope * mean_t)
    head = [(t, final_c - rise - slow_amp * math.exp(slope * t)) for t, rise, _ in path if 0 < t <= 1.0]
    head = [(t, math.log(v)) for t, v in head if v > 1e-9]
    fast = -(head[-1][0] - head[0][0]) / (head[-1][1] - head[0][1])
    return fast, -1.0 / slope


def load_trace(path: Path) -> tuple[list[float], list[float], list[float]]:
    """(seconds from the first row, power W, temperature °C) of an nvidia-smi CSV with units."""
    with path.open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    stamps = [datetime.strptime(r["timestamp"], "%Y/%m/%d %H:%M:%S.%f").timestamp() for r in rows]  # noqa: DTZ007 - differences only
    return (
        [s - stamps[0] for s in stamps],
        [float(r["power.draw [W]"]) for r in rows],
        [float(r["temperature.gpu"]) for r in rows],
    )


def replay(profile: SkuProfile, times: list[float], powers: list[float]) -> list[float]:
    """Die temperature at each sample, inlet 0 °C, power held from each sample to the next (exact)."""
    conditions = physics.Conditions(jobs=1, inlet_c=0.0, power_limit_w=profile.power_default_limit_w)
    thermal = profile.thermal
    mean_w = sum(powers) / len(powers)
    sink_c = thermal.sink_resistance_c_per_w * mean_w
    die_c = sink_c + thermal.die_resistance_c_per_w * powers[0]
    out = [die_c]
    for i in range(1, len(times)):
        response = physics.response(profile, conditions, die_c, sink_c, powers[i - 1])
        die_c, sink_c = response.at(times[i] - times[i - 1])
        out.append(die_c)
    return out


def trace_fit(profile: SkuProfile, die_tau_s: float) -> tuple[float, float, list[float]]:
    """(RMS °C, fitted inlet °C, modelled temperatures) of `profile` with its die time constant set."""
    thermal = profile.thermal
    board = dataclasses.replace(
        profile,
        thermal=dataclasses.replace(thermal, die_capacity_j_per_c=die_tau_s / thermal.die_resistance_c_per_w),
    )
    times, powers, temperatures = load_trace(TRACE)
    modelled = replay(board, times, powers)
    pairs = list(zip(temperatures[: len(temperatures) - READING_LEAD], modelled[READING_LEAD:], strict=True))
    inlet_c = sum(real - model for real, model in pairs) / len(pairs)
    rms = math.sqrt(sum((real - model - inlet_c) ** 2 for real, model in pairs) / len(pairs))
    return rms, inlet_c, [m + inlet_c for m in modelled]


def main() -> int:
    """Print both tables; draw them with --plot."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plot", type=Path, help="write both panels to this PNG (needs matplotlib)")
    args = parser.parse_args()

    jobs = 3
    fine = step_path(H100_SXM, jobs, 2.0, 0.05)
    coarse = step_path(H100_SXM, jobs, 900.0, 1.0)
    power_w = physics.demand_w(H100_SXM, jobs)
    final_c = H100_SXM.thermal.resistance_c_per_w * (power_w - H100_SXM.power_idle_w)
    path = fine + [p for p in coarse if p[0] > 2.0]
    fast_s, slow_s = fitted_time_constants(path, final_c)
    print(
        f"H100 two-node plant, idle ({H100_SXM.power_idle_w:.0f} W) to {jobs} jobs "
        f"({power_w:.0f} W), inlet 25 °C:"
    )
    print(f"final rise {final_c:.1f} °C; two-exponential fit: fast {fast_s:.2f} s, slow {slow_s:.0f} s")
    print(f"{'after s':>8} {'die rise °C':>12} {'of final':>9}")
    for at in STEP_TIMES_S:
        rise = min(path, key=lambda p, at=at: abs(p[0] - at))[1]
        print(f"{at:8.2f} {rise:12.1f} {rise / final_c:9.0%}")

    total = A100_SXM.thermal.resistance_c_per_w
    print(
        "\nA100 trace replayed through the two-node model: "
        f"RMS °C by R_ds (R_ds + R_sa = {total}) and die tau"
    )
    print(f"{'R_ds °C/W':>10} " + " ".join(f"{f'{tau:g} s':>7}" for tau in DIE_TAUS_S))
    for r_ds in DIE_RESISTANCES_C_PER_W:
        thermal = dataclasses.replace(
            A100_SXM.thermal, die_resistance_c_per_w=r_ds, sink_resistance_c_per_w=total - r_ds
        )
        board = dataclasses.replace(A100_SXM, thermal=thermal)
        print(f"{r_ds:10.3f} " + " ".join(f"{trace_fit(board, tau)[0]:7.2f}" for tau in DIE_TAUS_S))
    profile_tau = A100_SXM.thermal.die_time_constant_s
    print(
        f"profile: R_ds {A100_SXM.thermal.die_resistance_c_per_w} °C/W, die tau {profile_tau:.2f} s: "
        f"RMS {trace_fit(A100_SXM, profile_tau)[0]:.2f} °C"
    )
    if args.plot:
        draw(args.plot, path, final_c, profile_tau)
        print(f"plot: {args.plot}")
    return 0


def draw(out: Path, path: list[tuple[float, float, float]], final_c: float, profile_tau: float) -> None:
    """Two panels: the H100 step (with its first seconds inset), and the A100 trace beside its replay."""
    import matplotlib as mpl  # noqa: PLC0415 - optional, only for --plot

    mpl.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415 - as above

    fig, (step_ax, trace_ax) = plt.subplots(2, 1, figsize=(10, 8))
    t = [p[0] for p in path]
    step_ax.plot(t, [p[1] for p in path], label="die (what the sensor reads)")
    step_ax.plot(t, [p[2] for p in path], label="heat sink")
    step_ax.axhline(final_c, color="grey", linestyle=":", label="final rise")
    step_ax.set(
        xlabel="seconds after idle -> full load",
        ylabel="°C over idle",
        title="Simulated H100, two-node plant",
    )
    step_ax.legend(loc="center right")
    inset = step_ax.inset_axes((0.3, 0.12, 0.3, 0.45))
    early = [p for p in path if p[0] <= 10.0]
    inset.plot([p[0] for p in early], [p[1] for p in early])
    inset.set_title("first 10 s", fontsize=8)
    times, powers, temperatures = load_trace(TRACE)
    _, _, modelled = trace_fit(A100_SXM, profile_tau)
    shown = [x - 0.25 * READING_LEAD for x in times]
    trace_ax.step(times, temperatures, where="post", label="real A100 temperature.gpu")
    trace_ax.step(shown, modelled, where="post", label=f"two-node model, die tau {profile_tau:.2f} s")
    trace_ax.set(xlabel="seconds", ylabel="°C", title="A100 serving bursts (250 ms samples) and the model")
    power_ax = trace_ax.twinx()
    power_ax.plot(times, powers, color="grey", alpha=0.4, linewidth=0.8)
    power_ax.set_ylabel("power W (grey)")
    trace_ax.legend(loc="upper left")
    fig.tight_layout()
    fig.savefig(out, dpi=90)


if __name__ == "__main__":
    raise SystemExit(main())
