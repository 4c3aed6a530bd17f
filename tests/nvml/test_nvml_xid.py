"""XID events: counted per GPU per code on their own thread, bounded under a storm, stopped by close."""

from __future__ import annotations

import threading
import time

from fake_nvml.profiles import H100_SXM
from nvml_helpers import wait_until

from gpuwatch.sources.nvml.xid import MAX_CATALOGUE_XID, MAX_DISTINCT_XIDS, OTHER_XIDS, XidCounts


def xid_threads() -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name == "gpuwatch-xid"]


def total(counts) -> int:
    return sum(counts.values())


class TestXidEvents:
    """Each XID lands on the GPU that raised it, with its code and the last code seen."""

    def test_events_are_counted_per_gpu_and_code(self, fake_nvml, make_source):
        fake_nvml.install([H100_SXM] * 3)
        source = make_source()
        source.read()
        fake_nvml.inject_xid(1, 79, count=3)
        fake_nvml.inject_xid(1, 48)
        fake_nvml.inject_xid(0, 13)
        wait_until(lambda: total(source.read().gpus[1].xid_errors) == 4, what="four XIDs on GPU 1")
        gpus = source.read().gpus
        assert dict(gpus[1].xid_errors) == {"79": 3, "48": 1}
        assert gpus[1].last_xid == 48
        assert dict(gpus[0].xid_errors) == {"13": 1}
        assert dict(gpus[2].xid_errors) == {}
        assert gpus[2].last_xid is None

    def test_storm_is_counted_without_unbounded_growth(self, fake_nvml, make_source):
        fake_nvml.install([H100_SXM] * 2)
        source = make_source()
        source.read()
        codes = 500
        per_code = 6  # 3,000 events at once: well past 1,000/s, within the fake's 4,096-event ring
        for code in range(codes):
            fake_nvml.inject_xid(0, code, count=per_code)
        wait_until(
            lambda: total(source.read().gpus[0].xid_errors) == codes * per_code,
            timeout_s=10,
            what="the storm",
        )
        gpu = source.read().gpus[0]
        # Codes 1-255 (the catalogue's range) each keep a count; of the 245 others (0 and
        # 256-499), the first MAX_DISTINCT_XIDS do, and the rest share OTHER_XIDS.
        uncatalogued = codes - MAX_CATALOGUE_XID
        assert len(gpu.xid_errors) == MAX_CATALOGUE_XID + MAX_DISTINCT_XIDS + 1
        assert gpu.xid_errors[OTHER_XIDS] == (uncatalogued - MAX_DISTINCT_XIDS) * per_code
        assert gpu.xid_errors["0"] == per_code
        assert gpu.xid_errors["255"] == per_code
        assert gpu.last_xid == codes - 1
        assert total(source.read().gpus[1].xid_errors) == 0

    def test_gpu_without_xid_support_is_skipped(self, fake_nvml, make_source):
        fake_nvml.install([H100_SXM] * 2)
        fake_nvml.set(0, "supported_events", 0)
        source = make_source()
        reading = source.read()
        assert all(gpu.reading is not None for gpu in reading.gpus)
        fake_nvml.inject_xid(1, 94)
        wait_until(lambda: source.read().gpus[1].last_xid == 94, what="XID 94 on GPU 1")

    def test_close_stops_the_thread_promptly(self, fake_nvml, make_source):
        fake_nvml.install([H100_SXM])
        source = make_source()
        source.read()
        assert len(xid_threads()) == 1
        started = time.monotonic()
        source.close()
        assert time.monotonic() - started < 1.0
        assert xid_threads() == []

    def test_counts_survive_reinitialisation(self, fake_nvml, make_source, clock):
        fake_nvml.install([H100_SXM])
        source = make_source()
        source.read()
        fake_nvml.inject_xid(0, 31)
        wait_until(lambda: source.read().gpus[0].last_xid == 31, what="XID 31")
        fake_nvml.set_global_return("DRIVER_NOT_LOADED")
        source.read()
        fake_nvml.set_global_return("SUCCESS")
        clock.advance(1.0)
        assert dict(source.read().gpus[0].xid_errors) == {"31": 1}


class TestXidCounts:
    """The store counts catalogue codes always, caps distinct others per GPU, and copies under its lock."""

    def test_cap_and_copy(self):
        counts = XidCounts(max_distinct=2)
        for xid in (13, 9000, 13, 9001, 9002, 9003, 79):
            counts.record("GPU-a", xid)
        snapshot, last = counts.of("GPU-a")
        assert dict(snapshot) == {"13": 2, "9000": 1, "9001": 1, OTHER_XIDS: 2, "79": 1}
        assert last == 79
        counts.record("GPU-a", 13)
        assert snapshot["13"] == 2  # the copy handed out does not change
        assert counts.of("GPU-b") == ({}, None)
