"""The daemon freezes what start-up made once the first decision is out, so full collections stay short."""

from __future__ import annotations

import gc

from gpuwatch.service import daemon as daemon_module
from gpuwatch.service.daemon import Daemon, DaemonSettings
from gpuwatch.sources.clock import SystemClock
from gpuwatch.sources.spec import open_source


def test_the_first_decision_freezes_the_start_up_objects_once(monkeypatch):
    freezes: list[int] = []
    monkeypatch.setattr(daemon_module.gc, "freeze", lambda: freezes.append(gc.get_count()[0]))
    node = Daemon(open_source("sim:2xH100", SystemClock()), DaemonSettings(interval_s=0.1))
    try:
        assert freezes == []  # built, nothing decided yet
        node.sampler.sample_once()
        assert len(freezes) == 1
        for _ in range(3):
            node.sampler.sample_once()
        assert len(freezes) == 1  # once only: what later samples make stays collectable
    finally:
        node.sampler.stop()


def test_freezing_moves_objects_out_of_the_collectors_generations():
    gc.unfreeze()
    node = Daemon(open_source("sim:2xH100", SystemClock()), DaemonSettings(interval_s=0.1))
    try:
        node.sampler.sample_once()
        assert gc.get_freeze_count() > 0
    finally:
        node.sampler.stop()
        gc.unfreeze()
