"""`static`: per GPU, pause new work above a fixed temperature and resume below another.

This is what the temperature-guard extensions of image UIs do (stable-diffusion-webui's
"GPU temperature protection", and its ComfyUI port): read the GPU's temperature as nvidia-smi
prints it (whole °C), pause while it is above the sleep temperature, and wait until it is back at
the wake temperature. Their defaults (75/75 °C, for desktop cards) are set here to 83/75 °C by
default, 4 °C and 12 °C below an H100's 87 °C max-operating limit. Unlike them, this pauses the
GPU's *new* jobs only: the jobs it runs carry on.
"""

from __future__ import annotations

import math

from gpuwatch.simulate.cluster import Cluster
from gpuwatch.simulate.controllers.base import FULL, Decision, Hold
from gpuwatch.simulate.controllers.none import least_busy
from gpuwatch.simulate.scenario import StaticSettings
from gpuwatch.simulate.workload import Job


class StaticController:
    """Pauses each GPU from above `pause_c` until it reads `resume_c` or less."""

    def __init__(self, cluster: Cluster, settings: StaticSettings) -> None:
        self._cluster = cluster
        self._settings = settings
        self._paused = dict.fromkeys(cluster.gpus(), False)
        self._next_check_s = 0.0

    def observe(self, now_s: float) -> None:
        """Read every GPU's whole-degree temperature, once per poll period."""
        if now_s < self._next_check_s:
            return
        self._next_check_s = now_s + self._settings.poll_s
        for node, gpu in self._paused:
            reading_c = math.floor(self._cluster.nodes[node].views[gpu].temperature_c)
            if reading_c > self._settings.pause_c:
                self._paused[node, gpu] = True
            elif reading_c <= self._settings.resume_c:
                self._paused[node, gpu] = False

    def decide(self, job: Job, now_s: float) -> Decision:  # noqa: ARG002 - every job is treated alike
        """The least busy running GPU; if every GPU is paused, ask again after the poll period."""
        running = [gpu for gpu, paused in self._paused.items() if not paused]
        if not running:
            return Hold(self._settings.poll_s)
        return least_busy(self._cluster, running) or FULL

    def ended(self, job: Job, now_s: float) -> None:
        """Nothing to settle: it hands out nothing that a job holds."""

    def levels(self) -> tuple[int, ...]:
        """Per node: 0 none paused, 2 some, 3 all."""
        levels = []
        for node in self._cluster.nodes:
            paused = sum(self._paused[node.index, gpu] for gpu in range(len(node.running)))
            levels.append(0 if paused == 0 else (3 if paused == len(node.running) else 2))
        return tuple(levels)

    def close(self) -> None:
        """Nothing to release."""
