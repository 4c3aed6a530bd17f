"""Thermal policy: states, prediction, pressure and admission, as pure functions of history."""

from gpuwatch.policy.admission import Admission, UnknownGpuError, UnknownPriorityError, admit, parse_priority
from gpuwatch.policy.config import PolicyConfig, PolicyConfigError
from gpuwatch.policy.decision import GpuDecision, NodeDecision, PriorityClass, ThermalState, admitted_classes
from gpuwatch.policy.engine import Policy, expire

__all__ = [
    "Admission",
    "GpuDecision",
    "NodeDecision",
    "Policy",
    "PolicyConfig",
    "PolicyConfigError",
    "PriorityClass",
    "ThermalState",
    "UnknownGpuError",
    "UnknownPriorityError",
    "admit",
    "admitted_classes",
    "expire",
    "parse_priority",
]
