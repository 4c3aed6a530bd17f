"""The ways of admitting jobs compared by `gpuwatch simulate`: none, static, gpuwatch, oracle."""

from __future__ import annotations

from gpuwatch.simulate.cluster import Cluster
from gpuwatch.simulate.controllers.base import Controller
from gpuwatch.simulate.controllers.gpuwatch import GpuwatchController
from gpuwatch.simulate.controllers.none import NoneController
from gpuwatch.simulate.controllers.oracle import OracleController
from gpuwatch.simulate.controllers.static import StaticController
from gpuwatch.simulate.scenario import Scenario

CONTROLLERS = ("none", "static", "gpuwatch", "oracle")
# The oracle told of a scheduled event (a fan failing) only when it comes: the slowdown it still
# has is what jobs already running when the event came cause, which no admission controller that
# cannot see a fault coming avoids. bench/targets.py prints it beside the others.
CAUSAL_ORACLE = "oracle-causal"


def make_controller(name: str, scenario: Scenario, cluster: Cluster, *, tick_s: float) -> Controller:
    """The controller called `name` (one of CONTROLLERS, or CAUSAL_ORACLE) for a fresh cluster."""
    if name == "none":
        return NoneController(cluster)
    if name == "static":
        return StaticController(cluster, scenario.static)
    if name == "gpuwatch":
        return GpuwatchController(
            cluster,
            scenario.policy,
            scenario.interval_s,
            seed=scenario.seed,
            releases=scenario.releases,
            release_delay_s=scenario.release_delay_s,
        )
    if name == "oracle":
        return OracleController(
            cluster, scenario.oracle, scenario.events, tick_s=tick_s, interval_s=scenario.interval_s
        )
    if name == CAUSAL_ORACLE:
        return OracleController(cluster, scenario.oracle, (), tick_s=tick_s, interval_s=scenario.interval_s)
    raise ValueError(f"unknown controller {name!r}; choose from {', '.join(CONTROLLERS)}")


__all__ = ["CAUSAL_ORACLE", "CONTROLLERS", "Controller", "make_controller"]
