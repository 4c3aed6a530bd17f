"""One GPU through one snapshot: the policy's stages in order, each reading only the one before it.

    readings -> forecast -> slots -> states -> decision
    (readings.py, forecast.py, slots.py, states.py, verdict.py)

The forecast stage runs the GPU's model (policy/model/) once: what the readings teach it, and
the forecast it makes from that.

Each stage is a pure function of the previous stage's output (and of its own memory, kept in
the GPU's track); the sample flows through once.
"""

from __future__ import annotations

from gpuwatch.policy.decision import GpuDecision
from gpuwatch.policy.forecast import outlook
from gpuwatch.policy.leases import Ledger
from gpuwatch.policy.readings import Moment, read
from gpuwatch.policy.slots import headroom
from gpuwatch.policy.states import standing
from gpuwatch.policy.track import GpuTrack
from gpuwatch.policy.verdict import decide
from gpuwatch.sources.model import GpuSample


def assess(
    track: GpuTrack, sample: GpuSample, ledger: Ledger, moment: Moment
) -> tuple[GpuTrack, GpuDecision]:
    """The GPU's decision for a snapshot judged at `moment`, and its memory for the next one."""
    readings, xids = read(sample, track.xids, moment)
    seen = outlook(readings, track, ledger)
    stood = standing(headroom(seen), track.shown)
    learned = seen.learned
    return GpuTrack(xids, learned.model, learned.leases.memory, stood.shown, seen.calibration), decide(stood)
