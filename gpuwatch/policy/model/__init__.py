"""The GPU's thermal model, behind one face: `step`, which the forecast stage calls once per sample.

Inside, each module one job: which readings the model can use (screen.py), whole degrees undone
(dequantise.py; a noisy sensor's readings averaged in bins, smoothing.py), the RC fit
(thermal_model.py, on linear.py's least squares), the trajectory through the latest crossings
(trajectory.py), the power a job adds (job_power.py), the model's memory and what one reading
teaches it (learning.py, history.py), the forecast made from it (prediction.py), the allowance
for its own recent errors (calibration.py), and the power schedule of the leased jobs that the
slots are counted on (schedule.py). The stages outside read only what this face exports, so the
inside can change without touching them.
"""

from gpuwatch.policy.leases import LeaseMemory, Ledger
from gpuwatch.policy.model.calibration import CHECK_SHARES, Calibration
from gpuwatch.policy.model.learning import Learned, Load, MarginModel, learn
from gpuwatch.policy.model.prediction import Basis, Forecast, Outlook, predicted
from gpuwatch.policy.model.schedule import Schedule, lease_steps
from gpuwatch.policy.model.screen import NOT_A_NUMBER
from gpuwatch.policy.readings import Readings

__all__ = [
    "CHECK_SHARES",
    "NOT_A_NUMBER",
    "Basis",
    "Calibration",
    "Forecast",
    "Learned",
    "Load",
    "MarginModel",
    "Outlook",
    "Schedule",
    "lease_steps",
    "step",
]


def step(
    readings: Readings, model: MarginModel, leases: LeaseMemory, calibration: Calibration, ledger: Ledger
) -> Outlook:
    """The model after one sample's `readings` (its leases from `ledger`), and the forecast it makes.

    `model`, `leases` and `calibration` are its memory from the sample before; the Outlook
    carries them on (`learned.model`, `learned.leases.memory`, `calibration`).
    """
    return predicted(learn(readings, model, ledger, leases), calibration)
