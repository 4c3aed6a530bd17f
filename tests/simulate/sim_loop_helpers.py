"""Small scenarios for the simulate tests, built in code or as TOML text."""

from __future__ import annotations

from gpuwatch.simulate.scenario import ArrivalProfile, JobSpec, NodeSpec, Scenario

# One node of two H100s in a hot aisle, dense chassis, more work than it can take: a GPU that
# takes every job it can settles near 97 °C, past the 87 °C limit. Ten virtual minutes.
HOT_TOML = """\
title = "two hot H100s"
seed = 5
duration_s = 600

[[nodes]]
gpus = "2xH100"
inlet_c = 35.0
cooling_factor = 2.33

[arrivals]
per_s = 0.4

[jobs]
work_s = 20.0
work_cv = 0.5
per_gpu = 3
deadline_s = 90.0
"""


def one_gpu(*, inlet_c: float = 25.0, cooling_factor: float = 1.0, duration_s: float = 600.0) -> Scenario:
    """One H100 and no arrivals: tests start jobs themselves."""
    return Scenario(
        name="one-gpu",
        nodes=(NodeSpec("node0", ("H100",), inlet_c, cooling_factor),),
        arrivals=ArrivalProfile(0.0),
        duration_s=duration_s,
        jobs=JobSpec(per_gpu=8),
    )
