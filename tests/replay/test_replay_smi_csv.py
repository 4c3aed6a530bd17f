"""nvidia-smi --query-gpu CSV parsing against real captures and traces, and small inline files."""

import datetime as dt
import itertools
import statistics

import pytest
from replay_helpers import A100_TRACE, CAPTURE, DATA_DIR, H100_TRACE, csv_cells, query_gpu_csv

from gpuwatch.sources.base import SourceError
from gpuwatch.sources.model import ClockEventReason, GpuHealth, RecoveryAction, reason_words
from gpuwatch.sources.replay.smi_csv import parse_smi_csv

MIB = 1024 * 1024


def parse(text, **options):
    """Frames and warnings of an inline CSV."""
    warnings = []
    parsed = parse_smi_csv(text.splitlines(keepends=True), name="inline.csv", warn=warnings.append, **options)
    return list(parsed.frames), warnings


def only_reading(frames):
    """The reading of the single GPU in the single frame."""
    assert len(frames) == 1
    assert len(frames[0].gpus) == 1
    return frames[0].gpus[0].reading


@pytest.fixture(scope="module")
def capture():
    return (DATA_DIR / CAPTURE).read_text()


@pytest.fixture(scope="module")
def h100_trace_lines():
    return (DATA_DIR / H100_TRACE).read_text().splitlines(keepends=True)


@pytest.fixture(scope="module")
def h100_trace_frames(h100_trace_lines):
    return list(parse_smi_csv(h100_trace_lines, name=H100_TRACE).frames)


def capture_sample(capture, phase):
    parsed = parse_smi_csv(query_gpu_csv(capture, phase), name=f"{phase}.csv")
    frames = list(parsed.frames)
    assert len(frames) == 1
    assert len(frames[0].gpus) == 1
    return frames[0], parsed.layout


class TestH100CaptureIdle:
    """The idle `--query-gpu` CSV of a real H100 (units in values, ~220 columns) maps to base units."""

    def test_temperatures_and_margin(self, capture):
        frame, _ = capture_sample(capture, "idle")
        reading = frame.gpus[0].reading
        assert (reading.temperature_c, reading.margin_c, reading.memory_temperature_c) == (41.0, 46.0, 48.0)

    def test_power_and_limits(self, capture):
        frame, _ = capture_sample(capture, "idle")
        reading, identity = frame.gpus[0].reading, frame.gpus[0].identity
        assert reading.power_w == pytest.approx(69.85)  # power.draw, not .instant (69.62)
        assert reading.power_limit_w == 700.0
        assert (identity.power_default_limit_w, identity.power_min_limit_w, identity.power_max_limit_w) == (
            700.0,
            200.0,
            700.0,
        )

    def test_state_reasons_and_counters(self, capture):
        reading = capture_sample(capture, "idle")[0].gpus[0].reading
        assert reading.pstate == 0
        assert reading.clock_event_reasons == ClockEventReason.GPU_IDLE
        assert reason_words(reading.clock_event_reasons) == ("idle",)
        assert reading.slowdown_counters.sw_thermal_slowdown_s == 0.0
        assert reading.slowdown_counters.hw_power_brake_slowdown_s == 0.0
        assert reading.recovery_action is RecoveryAction.NONE
        assert (reading.ecc_corrected_volatile, reading.ecc_uncorrected_volatile) == (0, 0)

    def test_memory_and_clocks(self, capture):
        frame, _ = capture_sample(capture, "idle")
        reading, identity = frame.gpus[0].reading, frame.gpus[0].identity
        assert identity.memory_total_bytes == 81559 * MIB
        assert reading.memory_used_bytes == 0
        assert reading.memory_free_bytes == 81081 * MIB
        assert reading.sm_clock_hz == 345e6
        assert reading.memory_clock_hz == 2619e6
        assert (identity.sm_clock_max_hz, identity.memory_clock_max_hz) == (1980e6, 2619e6)

    def test_identity(self, capture):
        frame, _ = capture_sample(capture, "idle")
        identity = frame.gpus[0].identity
        assert identity.index == 0
        assert identity.name == "NVIDIA H100 80GB HBM3"
        assert identity.uuid == "GPU-00000000-0000-0000-0000-000000000000"
        assert identity.pci_bus_id == "00000000:00:09.0"
        assert identity.driver_version == frame.driver_version == "590.48.01"

    def test_unknown_columns_are_counted_not_used(self, capture):
        header = csv_cells(query_gpu_csv(capture, "idle")[0])
        _, layout = capture_sample(capture, "idle")
        assert len(layout.names) == len(header)
        assert "fan.speed" in layout.ignored
        assert "hostname" in layout.ignored
        assert "temperature.gpu" not in layout.ignored
        assert 0 < len(layout.ignored) < len(header)


class TestH100CaptureLoad:
    """The load `--query-gpu` CSV of the same H100 gives its ~630 W load values."""

    def test_load_values(self, capture):
        reading = capture_sample(capture, "load")[0].gpus[0].reading
        assert reading.power_w == pytest.approx(631.95)
        assert (reading.temperature_c, reading.margin_c, reading.memory_temperature_c) == (59.0, 26.0, 54.0)
        assert reading.utilization_ratio == pytest.approx(1.0)
        assert reading.memory_utilization_ratio == pytest.approx(0.11)
        assert reading.memory_used_bytes == 19818 * MIB
        assert reading.sm_clock_hz == 1980e6

    def test_no_reason_active(self, capture):
        reading = capture_sample(capture, "load")[0].gpus[0].reading
        assert reading.clock_event_reasons == 0
        assert not reading.has_reason(ClockEventReason.SW_POWER_CAP)


class TestEightH100Trace:
    """A real 8-GPU `-lms 100` trace with no index column splits into polls of 8 by position."""

    def test_eight_gpus_every_frame(self, h100_trace_lines, h100_trace_frames):
        rows = len(h100_trace_lines) - 1
        assert len(h100_trace_frames) == rows // 8
        assert {len(frame.gpus) for frame in h100_trace_frames} == {8}
        assert [gpu.identity.uuid for gpu in h100_trace_frames[0].gpus] == [
            f"replay-gpu-{n}" for n in range(8)
        ]
        assert {gpu.identity.name for gpu in h100_trace_frames[0].gpus} == {"unknown"}

    def test_polls_are_100_ms_apart(self, h100_trace_frames):
        gaps = [b.offset_s - a.offset_s for a, b in itertools.pairwise(h100_trace_frames)]
        assert statistics.median(gaps) == pytest.approx(0.1, abs=0.005)
        assert min(gaps) >= 0.0

    def test_every_power_value_lands_on_its_gpu(self, h100_trace_lines, h100_trace_frames):
        # Rows are GPU 0..7 in turn; a drift in grouping (e.g. at a stalled poll) would misplace them.
        expected = [float(csv_cells(line)[1].removesuffix(" W")) for line in h100_trace_lines[1:]]
        got = [gpu.reading.power_w for frame in h100_trace_frames for gpu in frame.gpus]
        assert got == expected

    def test_first_poll_values(self, h100_trace_lines, h100_trace_frames):
        first_row = csv_cells(h100_trace_lines[1])
        gpu0 = h100_trace_frames[0].gpus[0].reading
        assert gpu0.power_w == float(first_row[1].removesuffix(" W"))
        assert gpu0.utilization_ratio == float(first_row[2].removesuffix(" %")) / 100
        assert gpu0.memory_used_bytes == int(first_row[3].removesuffix(" MiB")) * MIB

    def test_explicit_gpu_count_gives_the_same_frames(self, h100_trace_lines, h100_trace_frames):
        head = h100_trace_lines[: 1 + 8 * 50]
        frames = list(parse_smi_csv(head, name=H100_TRACE, gpus=8).frames)
        assert [f.gpus for f in frames] == [f.gpus for f in h100_trace_frames[:50]]


class TestA100Trace:
    """A real A100 excerpt (index+uuid, units only in the header) gives one GPU every 250 ms."""

    @pytest.fixture
    def lines(self, data_dir):
        return (data_dir / A100_TRACE).read_text().splitlines(keepends=True)

    def test_frames_and_values(self, lines):
        frames = list(parse_smi_csv(lines, name=A100_TRACE).frames)
        assert len(frames) == len(lines) - 1
        cells = csv_cells(lines[1])
        gpu = frames[0].gpus[0]
        assert gpu.identity.uuid == cells[2]
        assert gpu.identity.index == int(cells[1])
        assert gpu.reading.power_w == float(cells[3])
        assert gpu.reading.sm_clock_hz == float(cells[4]) * 1e6
        assert gpu.reading.memory_used_bytes == int(cells[8]) * MIB
        assert gpu.reading.temperature_c == float(cells[9])
        assert frames[1].offset_s == pytest.approx(0.25, abs=1e-3)

    def test_cut_last_line_is_skipped_with_a_warning(self, lines):
        cut = [*lines[:-1], lines[-1][:30]]  # as `head -c` leaves an excerpt
        warnings = []
        frames = list(parse_smi_csv(cut, name=A100_TRACE, warn=warnings.append).frames)
        assert len(frames) == len(lines) - 2
        assert len(warnings) == 1
        assert f"{A100_TRACE}:{len(lines)}" in warnings[0]


class TestNoHeader:
    """Files written with `noheader` need the column list, and say so when it is missing."""

    TEXT = "2025/07/26 23:32:09.703, 0, 45, 300.00\n2025/07/26 23:32:09.704, 1, 47, 310.50\n"

    def test_columns_given(self):
        frames, _ = parse(self.TEXT, columns=["timestamp", "index", "temperature.gpu", "power.draw"])
        assert [(g.identity.index, g.reading.temperature_c, g.reading.power_w) for g in frames[0].gpus] == [
            (0, 45.0, 300.0),
            (1, 47.0, 310.5),
        ]

    def test_columns_missing_is_a_clear_error(self):
        with pytest.raises(SourceError, match=r"inline\.csv:1: no header line.*\?columns="):
            parse(self.TEXT)

    def test_columns_given_for_a_file_with_a_header(self):
        with pytest.raises(SourceError, match="has a header line"):
            parse("index, power.draw [W]\n0, 1 W\n", columns=["index", "power.draw"])

    def test_no_known_column(self):
        with pytest.raises(SourceError, match="none of the given columns"):
            parse(self.TEXT, columns=["a", "b", "c", "d"])


class TestClockEventReasons:
    """Both spellings of the reasons parse, and per-reason columns build the mask without `.active`."""

    def test_throttle_spelling(self):
        frames, _ = parse("index, clocks_throttle_reasons.active\n0, 0x0000000000000040\n")
        assert only_reading(frames).clock_event_reasons == ClockEventReason.HW_THERMAL_SLOWDOWN

    def test_mask_from_per_reason_columns(self):
        text = (
            "index, clocks_event_reasons.sw_power_cap, clocks_throttle_reasons.sw_thermal_slowdown, "
            "clocks_event_reasons.gpu_idle\n0, Active, Active, Not Active\n"
        )
        frames, _ = parse(text)
        reasons = only_reading(frames).clock_event_reasons
        assert reasons == ClockEventReason.SW_POWER_CAP | ClockEventReason.SW_THERMAL_SLOWDOWN

    def test_per_reason_columns_all_missing(self):
        frames, _ = parse("index, clocks_event_reasons.gpu_idle\n0, [N/A]\n")
        assert only_reading(frames).clock_event_reasons is None

    def test_counters_in_microseconds(self):
        text = "index, clocks_event_reasons_counters.sw_thermal_slowdown [us]\n0, 1500000 us\n"
        frames, _ = parse(text)
        assert only_reading(frames).slowdown_counters.sw_thermal_slowdown_s == pytest.approx(1.5)


class TestPlaceholders:
    """Unsupported values are None and other columns fill in where nvidia-smi has a fallback."""

    def test_not_supported(self):
        frames, _ = parse("index, temperature.memory, power.draw [W]\n0, [Not Supported], 250.00 W\n")
        reading = only_reading(frames)
        assert reading.memory_temperature_c is None
        assert reading.power_w == 250.0

    def test_power_falls_back_to_instant(self):
        frames, _ = parse("index, power.draw, power.draw.instant\n0, [N/A], 123.40 W\n")
        assert only_reading(frames).power_w == pytest.approx(123.4)

    def test_lost_gpu(self):
        frames, _ = parse("index, power.draw\n0, [GPU is lost]\n")
        gpu = frames[0].gpus[0]
        assert gpu.health is GpuHealth.LOST
        assert gpu.reading is None

    def test_implausible_value_is_dropped_and_counted(self):
        frames, _ = parse("index, temperature.gpu, power.draw\n0, 4294967295, 100 W\n")
        assert only_reading(frames).temperature_c is None
        assert frames[0].dropped == {"temperature_c": 1}


class TestMalformedLines:
    """A malformed line names file, line and column; only a cut final line is skipped."""

    def test_bad_value_in_a_middle_line(self):
        text = "index, temperature.gpu, power.draw\n0, 40, 100 W\n0, warm, 100 W\n0, 41, 100 W\n"
        with pytest.raises(SourceError, match=r"inline\.csv:3: column 2 \(temperature\.gpu\)"):
            parse(text)

    def test_short_middle_line(self):
        text = "index, temperature.gpu, power.draw\n0, 40, 100 W\n0, 40\n0, 41, 100 W\n"
        with pytest.raises(SourceError, match=r"inline\.csv:3: expected 3 values"):
            parse(text)

    def test_cut_final_line_without_line_end(self):
        frames, warnings = parse("index, temperature.gpu, power.draw\n0, 40, 100 W\n0, 4")
        assert len(frames) == 1
        assert "inline.csv:3" in warnings[0]

    def test_bad_final_line_with_line_end_is_an_error(self):
        with pytest.raises(SourceError, match=r"inline\.csv:3"):
            parse("index, temperature.gpu\n0, 40\n0, warm\n")

    def test_repeated_header_is_skipped(self):
        frames, warnings = parse("index, power.draw [W]\n0, 1 W\nindex, power.draw [W]\n0, 2 W\n")
        assert [f.gpus[0].reading.power_w for f in frames] == [1.0, 2.0]
        assert warnings == []

    def test_empty_file(self):
        with pytest.raises(SourceError, match="no CSV lines"):
            parse("")


class TestGrouping:
    """Rows group into polls by GPU key, by timestamp pattern, or by an explicit GPU count."""

    def test_uuid_without_index_numbers_gpus_in_order(self):
        text = "uuid, power.draw\nGPU-b, 1 W\nGPU-a, 2 W\nGPU-b, 3 W\nGPU-a, 4 W\n"
        frames, _ = parse(text)
        assert [[(g.identity.index, g.identity.uuid, g.reading.power_w) for g in f.gpus] for f in frames] == [
            [(0, "GPU-b", 1.0), (1, "GPU-a", 2.0)],
            [(0, "GPU-b", 3.0), (1, "GPU-a", 4.0)],
        ]

    def test_last_poll_missing_gpus_is_skipped(self):
        text = "index, power.draw\n0, 1 W\n1, 2 W\n0, 3 W\n"
        frames, warnings = parse(text)
        assert len(frames) == 1
        assert "1 of 2 GPUs" in warnings[0]

    def test_no_key_and_no_timestamp_needs_a_count(self):
        with pytest.raises(SourceError, match=r"\?gpus=8"):
            parse("power.draw\n1 W\n2 W\n")

    def test_count_from_timestamp_bursts(self):
        rows = [
            f"2025/07/26 23:32:{10 + poll:02d}.00{gpu}, {10 * poll + gpu} W\n"
            for poll in range(4)
            for gpu in range(2)
        ]
        frames, _ = parse("timestamp, power.draw\n" + "".join(rows))
        assert [[g.reading.power_w for g in f.gpus] for f in frames] == [[0, 1], [10, 11], [20, 21], [30, 31]]
        assert [f.offset_s for f in frames] == pytest.approx([0.0, 1.0, 2.0, 3.0])

    def test_single_gpu_from_even_timestamps(self):
        rows = [f"2025/07/26 23:32:09.{250 * n:03d}, {n} W\n" for n in range(4)]
        frames, _ = parse("timestamp, power.draw\n" + "".join(rows))
        assert [len(f.gpus) for f in frames] == [1, 1, 1, 1]

    def test_irregular_rows_are_not_taken_for_bursts(self):
        # Gaps of 1.0, 1.0, 0.3 s repeat: every third gap is short, but rows come one by one.
        seconds = [0.0]
        for n in range(11):
            seconds.append(seconds[-1] + (0.3 if n % 3 == 2 else 1.0))
        start = dt.datetime(2025, 7, 26, 23, 0, 0, tzinfo=dt.UTC)
        rows = [f"{start + dt.timedelta(seconds=s):%Y/%m/%d %H:%M:%S.%f}"[:-3] + ", 1 W\n" for s in seconds]
        with pytest.raises(SourceError, match="timestamps do not show"):
            parse("timestamp, power.draw\n" + "".join(rows))

    def test_one_poll_of_several_gpus_is_ambiguous(self):
        rows = "".join(f"2025/07/26 23:32:09.000, {n} W\n" for n in range(3))
        with pytest.raises(SourceError, match=r"timestamps do not show.*\?gpus=8"):
            parse("timestamp, power.draw\n" + rows)

    def test_explicit_count(self):
        frames, _ = parse("power.draw\n1 W\n2 W\n3 W\n4 W\n", gpus=2, interval_s=0.5)
        assert [[g.reading.power_w for g in f.gpus] for f in frames] == [[1.0, 2.0], [3.0, 4.0]]
        assert [f.offset_s for f in frames] == [0.0, 0.5]

    def test_count_change_after_the_first_polls_is_caught(self):
        start = dt.datetime(2025, 7, 26, 23, 0, 0, tzinfo=dt.UTC)

        def row(poll, gpu):
            moment = start + dt.timedelta(seconds=poll * 0.1 + gpu * 0.001)
            return f"{moment:%Y/%m/%d %H:%M:%S.%f}"[:-3] + f", {gpu + 1} W\n"

        two_gpu_polls = 2100  # past the rows read ahead to work out the count
        rows = [row(p, g) for p in range(two_gpu_polls) for g in range(2)]
        rows += [row(two_gpu_polls, g) for g in range(3)]  # a third GPU appears
        bad_line = 1 + len(rows)  # the header is line 1
        with pytest.raises(SourceError, match=rf"inline\.csv:{bad_line}: .*GPU count seems to change"):
            parse("timestamp, power.draw\n" + "".join(rows))

    def test_clock_step_back_does_not_rewind(self):
        text = (
            "timestamp, index, power.draw\n2025/07/26 23:32:09.000, 0, 1 W\n2025/07/26 23:32:08.000, 0, 2 W\n"
        )
        frames, _ = parse(text)
        assert [f.offset_s for f in frames] == [0.0, 0.0]
