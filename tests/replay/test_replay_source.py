"""The replay source: opening specs and files, frame timing against the clock, end and loop."""

import dataclasses
import logging

import pytest
from replay_helpers import H100_TRACE, csv_cells, snapshot, write

from gpuwatch.sources.base import SourceError, SourceExhaustedError
from gpuwatch.sources.clock import ManualClock
from gpuwatch.sources.model import SampleHealth
from gpuwatch.sources.replay import RecordingWriter, ReplaySource, open_replay
from gpuwatch.sources.replay.source import ReplayKind
from gpuwatch.sources.replay.spec import parse_spec

# Four polls of one GPU, one second apart, drawing 100, 200, 300 and 400 W.
FOUR_POLLS = "timestamp, index, power.draw [W]\n" + "".join(
    f"2025/07/26 23:32:0{second}.000, 0, {100 * (second + 1)}.00 W\n" for second in range(4)
)


def power(source):
    return source.read().gpus[0].reading.power_w


@pytest.fixture
def clock():
    return ManualClock(start_monotonic=500.0)


@pytest.fixture
def four_polls(tmp_path):
    return write(tmp_path / "four.csv", FOUR_POLLS)


class TestFrameTiming:
    """`read` returns the latest frame due by elapsed time times speed, stamped with the clock."""

    def test_first_read_is_the_first_frame(self, four_polls, clock):
        assert power(open_replay(str(four_polls), clock)) == 100.0

    def test_frame_changes_when_its_offset_is_reached(self, four_polls, clock):
        source = open_replay(str(four_polls), clock)
        clock.advance(0.99)
        assert power(source) == 100.0
        clock.advance(0.01)
        assert power(source) == 200.0

    def test_slow_reader_skips_to_the_latest_frame(self, four_polls, clock):
        source = open_replay(str(four_polls), clock)
        clock.advance(2.5)
        assert power(source) == 300.0

    def test_speed(self, four_polls, clock):
        source = open_replay(str(four_polls), clock, speed=2.0)
        clock.advance(1.0)
        assert power(source) == 300.0

    def test_speed_in_the_spec_wins(self, four_polls, clock):
        source = open_replay(f"{four_polls}?speed=0.5", clock, speed=2.0)
        clock.advance(1.0)
        assert power(source) == 100.0

    def test_readings_are_stamped_fresh(self, four_polls, clock):
        source = open_replay(str(four_polls), clock)
        clock.advance(1.25)
        reading = source.read().gpus[0].reading
        assert (reading.taken_at, reading.monotonic) == (clock.time(), clock.monotonic())


class TestEndOfReplay:
    """After the last frame's interval the source ends, or starts over when looping."""

    def test_last_frame_shows_for_one_interval(self, four_polls, clock):
        source = open_replay(str(four_polls), clock)
        clock.advance(3.99)
        assert power(source) == 400.0
        clock.advance(0.01)
        with pytest.raises(SourceExhaustedError, match="4 frames"):
            source.read()

    def test_loop(self, four_polls, clock):
        source = open_replay(str(four_polls), clock, loop=True)
        clock.advance(4.0)
        assert power(source) == 100.0
        clock.advance(1.0)
        assert power(source) == 200.0
        clock.advance(8.0)  # two more passes: 13 s is 1 s into the fourth
        assert power(source) == 200.0

    def test_loop_in_the_spec(self, four_polls, clock):
        source = open_replay(f"{four_polls}?loop=1", clock)
        clock.advance(6.0)
        assert power(source) == 300.0

    def test_read_after_close(self, four_polls, clock):
        source = open_replay(str(four_polls), clock)
        source.read()
        source.close()
        with pytest.raises(SourceError, match="closed"):
            source.read()


class TestOpenReplay:
    """Opening reads the file once, so bad files and specs fail at once with a clear sentence."""

    def test_source_protocol_and_summary(self, four_polls, clock):
        source = open_replay(f"{four_polls}?speed=1", clock)
        assert isinstance(source, ReplaySource)
        assert source.spec == f"replay:{four_polls}?speed=1"
        summary = source.summary
        assert (summary.kind, summary.frame_count, summary.gpu_count) == (ReplayKind.SMI_CSV, 4, 1)
        assert (summary.duration_s, summary.period_s) == (3.0, 4.0)

    def test_missing_file(self, tmp_path, clock):
        path = tmp_path / "nope.csv"
        with pytest.raises(SourceError, match=rf"{path} cannot be read: No such file"):
            open_replay(str(path), clock)

    def test_directory(self, tmp_path, clock):
        with pytest.raises(SourceError, match="cannot be read"):
            open_replay(str(tmp_path), clock)

    def test_empty_file(self, tmp_path, clock):
        with pytest.raises(SourceError, match="empty"):
            open_replay(str(write(tmp_path / "empty.csv", "\n")), clock)

    def test_not_text(self, tmp_path, clock):
        path = tmp_path / "binary.csv"
        path.write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe")
        with pytest.raises(SourceError, match="not UTF-8"):
            open_replay(str(path), clock)

    def test_bad_line_fails_at_open(self, tmp_path, clock):
        path = write(tmp_path / "bad.csv", FOUR_POLLS.replace("300.00 W", "hot"))
        with pytest.raises(SourceError, match=r"bad\.csv:4: column 3 \(power\.draw\)"):
            open_replay(str(path), clock)

    def test_noheader_needs_columns(self, tmp_path, clock):
        path = write(tmp_path / "nohdr.csv", "".join(FOUR_POLLS.splitlines(keepends=True)[1:]))
        with pytest.raises(SourceError, match=r"\?columns="):
            open_replay(str(path), clock)
        source = open_replay(f"{path}?columns=timestamp,index,power.draw", clock)
        assert power(source) == 100.0

    def test_gpu_count_in_the_spec(self, tmp_path, clock):
        path = write(tmp_path / "two.csv", "power.draw\n1 W\n2 W\n3 W\n4 W\n")
        source = open_replay(f"{path}?gpus=2&interval=0.5", clock)
        assert [gpu.reading.power_w for gpu in source.read().gpus] == [1.0, 2.0]
        clock.advance(0.5)
        assert [gpu.reading.power_w for gpu in source.read().gpus] == [3.0, 4.0]

    def test_path_with_question_mark(self, tmp_path, clock):
        path = write(tmp_path / "odd?name.csv", FOUR_POLLS)
        assert power(open_replay(str(path), clock)) == 100.0


class TestParseSpec:
    """Spec query parameters are checked and name what is wrong."""

    def test_all_parameters(self):
        options = parse_spec("f.csv?columns=index,power.draw&gpus=8&speed=2.5&loop=yes&interval=0.1")
        assert options.columns == ("index", "power.draw")
        assert (options.gpus, options.speed, options.loop, options.interval_s) == (8, 2.5, True, 0.1)
        assert str(options.path) == "f.csv"

    def test_keyword_defaults(self):
        options = parse_spec("f.csv", speed=3.0, loop=True)
        assert (options.speed, options.loop, options.gpus, options.columns) == (3.0, True, None, None)

    @pytest.mark.parametrize(
        ("query", "message"),
        [
            ("colour=red", "unknown parameter 'colour'"),
            ("gpus=0", "gpus='0'"),
            ("speed=0", "speed='0'"),
            ("speed=fast", "expected a number"),
            ("loop=sometimes", "loop='sometimes'"),
            ("columns=", "column names"),
        ],
    )
    def test_bad_parameter(self, query, message):
        with pytest.raises(SourceError, match=message):
            parse_spec(f"f.csv?{query}")

    def test_no_file(self):
        with pytest.raises(SourceError, match="no file"):
            parse_spec("?gpus=2")


class TestReplayRecording:
    """A gpuwatch recording replays with the recorded values, freshly stamped, at recorded pace."""

    @pytest.fixture
    def recorded(self, tmp_path):
        snapshots = [snapshot(n, 100.0 + 0.5 * n, 300.0 + 10 * n) for n in range(4)]
        path = tmp_path / "rec.jsonl"
        with RecordingWriter(path) as writer:
            for item in snapshots:
                writer.write(item)
        return path, snapshots

    def test_equal_data(self, recorded, clock):
        path, snapshots = recorded
        source = open_replay(str(path), clock)
        assert source.summary.kind is ReplayKind.RECORDING
        for recorded_snapshot in snapshots:
            reading = source.read()
            assert reading.driver_version == recorded_snapshot.driver_version
            assert [unstamped(gpu) for gpu in reading.gpus] == [
                unstamped(gpu) for gpu in recorded_snapshot.gpus
            ]
            assert {gpu.reading.monotonic for gpu in reading.gpus} == {clock.monotonic()}
            clock.advance(0.5)
        with pytest.raises(SourceExhaustedError):
            source.read()

    def test_cut_last_line_is_skipped_with_a_warning(self, recorded, clock, caplog):
        path, snapshots = recorded
        text = path.read_text()
        write(path, text[: len(text) - 25])
        with caplog.at_level(logging.WARNING):
            source = open_replay(str(path), clock)
        assert source.summary.frame_count == len(snapshots) - 1
        warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1
        assert warnings[0].startswith(f"{path}:{len(snapshots) + 1}: last line is cut short")

    def test_source_error_is_replayed(self, tmp_path, clock):
        down = dataclasses.replace(
            snapshot(1, 1.0, 0.0), gpus=(), health=SampleHealth(source_error="NVML gone")
        )
        path = tmp_path / "down.jsonl"
        with RecordingWriter(path) as writer:
            writer.write(down)
        reading = open_replay(str(path), clock).read()
        assert (reading.gpus, reading.error) == ((), "NVML gone")


def unstamped(sample):
    """A GPU sample with its reading's times zeroed, to compare data only."""
    return dataclasses.replace(
        sample, reading=dataclasses.replace(sample.reading, taken_at=0.0, monotonic=0.0)
    )


class TestReplayEightH100Trace:
    """The real 8-GPU trace replays poll by poll, 100 ms apart, with the file's power values."""

    def test_first_polls(self, data_dir, clock):
        path = data_dir / H100_TRACE
        rows = path.read_text().splitlines()[1:]
        source = open_replay(str(path), clock)
        assert (source.summary.gpu_count, source.summary.frame_count) == (8, len(rows) // 8)
        for poll in range(3):
            expected = [float(csv_cells(row)[1].removesuffix(" W")) for row in rows[8 * poll : 8 * poll + 8]]
            assert [gpu.reading.power_w for gpu in source.read().gpus] == expected
            clock.advance(0.12)  # polls are ~100 ms apart (100-108 ms in this file)
