"""gpuwatch's recording format: writing, reading back, and the errors a damaged file gives."""

import json

import pytest
from replay_helpers import snapshot, write

from gpuwatch.sources.base import SourceError
from gpuwatch.sources.codec import snapshot_to_dict
from gpuwatch.sources.replay import RecordingWriter
from gpuwatch.sources.replay.recording import FORMAT_NAME, FORMAT_VERSION, read_snapshots, recording_frames


def read_back(path):
    warnings = []
    with path.open(newline="") as handle:
        snapshots = list(read_snapshots(handle, name=path.name, warn=warnings.append))
    return snapshots, warnings


def header_line(**changes):
    header = {"format": FORMAT_NAME, "version": FORMAT_VERSION, "source": "nvml", "started_at": 1.0}
    return json.dumps({**header, **changes}) + "\n"


class TestRecordingWriter:
    """The writer puts a header then one flushed JSON line per snapshot."""

    def test_header_then_snapshots(self, tmp_path):
        path = tmp_path / "rec.jsonl"
        with RecordingWriter(path) as writer:
            writer.write(snapshot(1, 10.0, 300.0))
            writer.write(snapshot(2, 11.0, 310.0))
        lines = path.read_text().splitlines()
        assert json.loads(lines[0]) == {
            "format": "gpuwatch-recording",
            "version": 1,
            "source": "sim:2xH100",
            "started_at": snapshot(1, 10.0, 300.0).taken_at,
        }
        assert [json.loads(line) for line in lines[1:]] == [
            snapshot_to_dict(snapshot(1, 10.0, 300.0)),
            snapshot_to_dict(snapshot(2, 11.0, 310.0)),
        ]

    def test_each_line_is_on_disk_before_close(self, tmp_path):
        path = tmp_path / "rec.jsonl"
        writer = RecordingWriter(path)
        writer.write(snapshot(1, 10.0, 300.0))
        try:
            assert len(path.read_text().splitlines()) == 2
        finally:
            writer.close()

    def test_source_given_by_the_recorder(self, tmp_path):
        path = tmp_path / "rec.jsonl"
        with RecordingWriter(path, source="replay:x.csv", started_at=5.0) as writer:
            writer.write(snapshot(1, 10.0, 300.0))
        header = json.loads(path.read_text().splitlines()[0])
        assert (header["source"], header["started_at"]) == ("replay:x.csv", 5.0)

    def test_write_after_close(self, tmp_path):
        writer = RecordingWriter(tmp_path / "rec.jsonl")
        writer.close()
        with pytest.raises(ValueError, match="closed"):
            writer.write(snapshot(1, 10.0, 300.0))

    def test_unwritable_path(self, tmp_path):
        with pytest.raises(OSError, match="missing"):
            RecordingWriter(tmp_path / "missing" / "rec.jsonl")


class TestReadSnapshots:
    """Reading gives back equal snapshots; a cut last line is skipped, other bad lines are errors."""

    def test_round_trip(self, tmp_path):
        written = [snapshot(n, 10.0 + n, 300.0 + n) for n in range(1, 4)]
        path = tmp_path / "rec.jsonl"
        with RecordingWriter(path) as writer:
            for item in written:
                writer.write(item)
        assert read_back(path) == (written, [])

    def test_cut_last_line_is_skipped(self, tmp_path):
        path = tmp_path / "rec.jsonl"
        with RecordingWriter(path) as writer:
            writer.write(snapshot(1, 10.0, 300.0))
            writer.write(snapshot(2, 11.0, 310.0))
        text = path.read_text()
        write(path, text[: len(text) - 40])  # a recorder killed mid-line
        snapshots, warnings = read_back(path)
        assert snapshots == [snapshot(1, 10.0, 300.0)]
        assert len(warnings) == 1
        assert "rec.jsonl:3" in warnings[0]

    def test_bad_middle_line_names_its_number(self, tmp_path):
        good = json.dumps(snapshot_to_dict(snapshot(1, 10.0, 300.0))) + "\n"
        path = write(tmp_path / "rec.jsonl", header_line() + good + "{not json\n" + good)
        with pytest.raises(SourceError, match=r"rec\.jsonl:3: not JSON"):
            read_back(path)

    def test_line_that_is_not_a_snapshot(self, tmp_path):
        path = write(tmp_path / "rec.jsonl", header_line() + '{"schema_version": 1}\n')
        with pytest.raises(SourceError, match=r"rec\.jsonl:2: not a snapshot"):
            read_back(path)

    def test_other_format(self, tmp_path):
        path = write(tmp_path / "rec.jsonl", header_line(format="something-else"))
        with pytest.raises(SourceError, match="not a gpuwatch recording"):
            read_back(path)

    def test_newer_version(self, tmp_path):
        path = write(tmp_path / "rec.jsonl", header_line(version=2))
        with pytest.raises(SourceError, match="version 2 is not supported"):
            read_back(path)

    def test_empty(self, tmp_path):
        with pytest.raises(SourceError, match="empty"):
            read_back(write(tmp_path / "rec.jsonl", ""))


class TestRecordingFrames:
    """Frames are timed by the snapshots' monotonic clock and screened for implausible values."""

    def test_offsets_from_first_snapshot(self):
        frames = list(recording_frames([snapshot(1, 10.0, 300.0), snapshot(2, 10.5, 300.0)]))
        assert [frame.offset_s for frame in frames] == [0.0, 0.5]
        assert frames[0].driver_version == "590.48.01"

    def test_implausible_value_dropped(self):
        bad = snapshot(1, 10.0, 9_999_999.0, gpus=1)
        frames = list(recording_frames([bad]))
        assert frames[0].gpus[0].reading.power_w is None
        assert frames[0].dropped == {"power_w": 1}
