"""The state files: written on each decision, world-readable, and swapped atomically."""

from __future__ import annotations

import json
import logging
import re
import stat
import threading
import time

import pytest
from serve_helpers import gpu, node

from gpuwatch.exposure.board import Board
from gpuwatch.exposure.publication import Publication
from gpuwatch.exposure.state_files import PRESSURE_FILE, STATE_FILE, StateDirError, StateFiles
from gpuwatch.policy.decision import ThermalState


def _publication(pressure: float, sequence: int = 1, gpus: int = 8) -> Publication:
    decisions = [gpu(i, pressure=pressure) for i in range(gpus)]
    return Publication(node(*decisions, sequence=sequence), "sim:test")


class TestStateFiles:
    """What lands in the directory."""

    def test_files_hold_the_state_body_and_the_pressure(self, tmp_path):
        files = StateFiles(tmp_path / "run" / "gpuwatch")
        publication = _publication(0.42, sequence=9)
        files.write(publication)
        state = json.loads((files.directory / STATE_FILE).read_bytes())
        assert (files.directory / STATE_FILE).read_bytes() == publication.state_body
        assert state["sequence"] == 9
        assert (files.directory / PRESSURE_FILE).read_text() == "0.4200"

    def test_files_are_world_readable_and_no_temporary_is_left(self, tmp_path):
        files = StateFiles(tmp_path)
        for sequence in range(5):
            files.write(_publication(0.1, sequence))
        assert sorted(p.name for p in tmp_path.iterdir()) == [PRESSURE_FILE, STATE_FILE]
        for name in (STATE_FILE, PRESSURE_FILE):
            assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o644

    @pytest.mark.parametrize(("pressure", "text"), [(0.0, "0.0000"), (1.0, "1.0000"), (0.12345, "0.1235")])
    def test_pressure_is_one_float_in_0_1(self, tmp_path, pressure, text):
        files = StateFiles(tmp_path)
        files.write(_publication(pressure))
        assert (tmp_path / PRESSURE_FILE).read_text() == text

    def test_an_uncreatable_directory_is_a_clear_error(self, tmp_path):
        blocker = tmp_path / "file"
        blocker.write_text("")
        with pytest.raises(StateDirError, match=r"cannot create the state directory .*/file/gpuwatch"):
            StateFiles(blocker / "gpuwatch")

    def test_a_failing_write_is_logged_once_and_not_raised(self, tmp_path, caplog):
        files = StateFiles(tmp_path / "state")
        (tmp_path / "state").rmdir()
        with caplog.at_level(logging.WARNING):
            for _ in range(3):
                files.write_logged(_publication(0.3))
        assert len([r for r in caplog.records if "cannot write the state files" in r.message]) == 1


class TestAtomicSwap:
    """A reader never sees a partial file while decisions are published as fast as possible."""

    def test_readers_see_whole_files_only(self, tmp_path):
        files = StateFiles(tmp_path)
        board = Board("sim:test", lambda d, _now: d)
        board.observe(lambda _old, new: files.write(new))
        board.publish(node(gpu(0)))
        stop = threading.Event()
        problems: list[str] = []
        reads = [0]

        def read() -> None:
            while not stop.is_set():
                try:
                    body = (tmp_path / STATE_FILE).read_bytes()
                    json.loads(body)
                    pressure = (tmp_path / PRESSURE_FILE).read_text()
                except (ValueError, OSError) as exc:
                    problems.append(repr(exc))
                    continue
                if not re.fullmatch(r"[01]\.\d{4}", pressure):
                    problems.append(f"pressure file held {pressure!r}")
                reads[0] += 1

        reader = threading.Thread(target=read)
        reader.start()
        deadline, sequence = time.monotonic() + 1.5, 1
        while time.monotonic() < deadline:
            sequence += 1
            state = ThermalState.OK if sequence % 2 else ThermalState.ELEVATED
            board.publish(
                node(*(gpu(i, state, pressure=(sequence % 100) / 100) for i in range(16)), sequence=sequence)
            )
        stop.set()
        reader.join(5)
        assert problems == []
        assert reads[0] > 100
        assert sequence > 100
        assert json.loads((tmp_path / STATE_FILE).read_bytes())["sequence"] == sequence
