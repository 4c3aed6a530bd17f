"""Simulated nodes for the tests that run real daemons, as scenario TOML (gpuwatch/sources/sim/scenario.py).

One H100 at a steady load, no random arrivals, so every run heats the same way. An H100 sheds
its heat through R = 0.05 °C/W and hits max operating at 87 °C. The cooling fault runs on the
first-order plant (tau = 20 s): a real board's heat sink takes minutes, longer than a test waits.
"""

from __future__ import annotations

# `--config` for a fast step down of the shown state (DESIGN's hold is 10 s), so a mended node
# shows it in seconds; and no prior allowance for the forecast's errors, so a node's state is
# the one its readings give from the first decisions on (a new board's prior would hold a warm
# one back for its first minute: policy/calibration.py).
SHORT_HOLD_CONFIG = """
[policy]
state_hold_s = 0.5
forecast_error_prior_c = 0
start_error_prior_ratio = 0
"""

# 485 W at 25 °C inlet: about 49 °C, a margin near 38 °C: OK.
COOL_NODE = """
seed = 1
inlet_c = 25.0
[[gpus]]
sku = "H100"
count = 2
[load]
jobs = 2
arrival_per_s = 0.0
"""

# 685 W at 50 °C inlet settles near 84 °C: a margin near 3 °C, not CRITICAL, from the first sample
# on (the simulator settles before its first reading). 15 W under its 700 W cap, more jobs can add
# at most 0.75 °C: with HOT_GUARDS, `critical` (guard 0) has the capped count of slots, so tests
# sharing the node never run it out, and `default` (guard 10 °C) has none: HOT.
HOT_NODE = """
seed = 2
inlet_c = 50.0
[[gpus]]
sku = "H100"
count = 1
[load]
jobs = 3
arrival_per_s = 0.0
"""


# No prior allowance for the forecast's errors: the tests read the hot node's slots from its first
# decisions on, before a new board has earned its own (policy/calibration.py).
HOT_GUARDS = """
[policy]
critical_guard_c = 0
default_guard_c = 10
sheddable_guard_c = 20
forecast_error_prior_c = 0
start_error_prior_ratio = 0
"""


def cooling_fault(fault_at_s: float, recovered_at_s: float | None = None) -> str:
    """An OK node (685 W at 30 °C inlet: about 64 °C) whose fan fails at `fault_at_s`.

    R x20 leaves the heat almost nowhere to go: about +1.6 °C/s, so the policy sees
    time-to-slowdown under 30 s within a few samples (HOT). At `recovered_at_s` the cooling becomes
    ten times better than healthy (tau 2 s), so the GPU is cool again within seconds.
    """
    text = f"""
seed = 3
inlet_c = 30.0
plant = "first-order"
[[gpus]]
sku = "H100"
count = 1
[load]
jobs = 3
arrival_per_s = 0.0
[[events]]
at_s = {fault_at_s}
cooling_factor = 20.0
"""
    if recovered_at_s is not None:
        text += f"""
[[events]]
at_s = {recovered_at_s}
cooling_factor = 0.1
"""
    return text
