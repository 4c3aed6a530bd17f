"""Single nvidia-smi CSV values: placeholders, units, flags, masks, pstates, actions, timestamps."""

import pytest

from gpuwatch.sources.model import RecoveryAction
from gpuwatch.sources.replay.smi_values import (
    BadValueError,
    flag,
    is_missing,
    mask,
    number,
    pstate,
    recovery_action,
    timestamp,
    whole,
)


class TestIsMissing:
    """Every placeholder nvidia-smi writes instead of a value reads as missing; values do not."""

    @pytest.mark.parametrize(
        "text",
        [
            "[N/A]",
            "N/A",
            "[Not Supported]",
            "[Unknown Error]",
            "[Requested functionality has been deprecated]",
            "",
            "  ",
            "[GPU requires reset]",
        ],
    )
    def test_placeholders_are_missing(self, text):
        assert is_missing(text)
        assert number("W")(text) is None
        assert flag(text) is None
        assert mask(text) is None
        assert pstate(text) is None

    @pytest.mark.parametrize("text", ["0", "None", "Not Active", "P0", "0x0"])
    def test_values_are_not_missing(self, text):
        assert not is_missing(text)


class TestNumber:
    """Numbers parse with or without their unit, scaled to base units; a wrong unit is an error."""

    def test_value_with_unit(self):
        assert number("W")("700.00 W") == 700.0

    def test_value_without_unit(self):
        assert number("W")("631.95") == 631.95

    def test_percent_becomes_a_ratio(self):
        assert number("%", 0.01)("100.00 %") == pytest.approx(1.0)

    def test_microseconds_become_seconds(self):
        assert number("us", 1e-6)("2500000 us") == pytest.approx(2.5)

    def test_mib_become_bytes(self):
        assert whole("MiB", 1024 * 1024)("81559 MiB") == 81559 * 1024 * 1024

    def test_wrong_unit_is_an_error(self):
        with pytest.raises(BadValueError, match="MHz"):
            number("MHz")("1980 W")

    def test_text_is_an_error(self):
        with pytest.raises(BadValueError, match="number"):
            number("C")("hot")

    def test_fraction_where_a_whole_number_is_due(self):
        with pytest.raises(BadValueError, match="whole number"):
            whole()("1.5")


class TestFlag:
    """Active/Not Active, Enabled/Disabled and Yes/No read as booleans; other words are errors."""

    @pytest.mark.parametrize(("text", "expected"), [("Active", True), ("Not Active", False)])
    def test_active(self, text, expected):
        assert flag(text) is expected

    @pytest.mark.parametrize(("text", "expected"), [("Enabled", True), ("Disabled", False)])
    def test_enabled(self, text, expected):
        assert flag(text) is expected

    @pytest.mark.parametrize(("text", "expected"), [("Yes", True), ("No", False)])
    def test_yes_no(self, text, expected):
        assert flag(text) is expected

    def test_other_word(self):
        with pytest.raises(BadValueError, match="Active"):
            flag("Maybe")


class TestMask:
    """Hex bitmasks as nvidia-smi writes them (0x + 16 digits) and decimal ones parse to ints."""

    def test_hex(self):
        assert mask("0x00000000000001FF") == 0x1FF

    def test_decimal(self):
        assert mask("64") == 64

    def test_garbage(self):
        with pytest.raises(BadValueError, match="bitmask"):
            mask("0xZZ")


class TestPstate:
    """P0..P15 parse to their number."""

    @pytest.mark.parametrize(("text", "expected"), [("P0", 0), ("P8", 8), ("P15", 15)])
    def test_states(self, text, expected):
        assert pstate(text) == expected

    def test_not_a_state(self):
        with pytest.raises(BadValueError, match="performance state"):
            pstate("0")


class TestRecoveryAction:
    """nvidia-smi's recovery phrases and NVML's enum names map onto RecoveryAction."""

    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            ("None", RecoveryAction.NONE),
            ("Reset", RecoveryAction.GPU_RESET),
            ("Reboot", RecoveryAction.NODE_REBOOT),
            ("Drain P2P", RecoveryAction.DRAIN_P2P),
            ("Drain and Reset", RecoveryAction.DRAIN_AND_RESET),
            ("GPU_RESET", RecoveryAction.GPU_RESET),
        ],
    )
    def test_phrases(self, text, expected):
        assert recovery_action(text) is expected

    def test_unknown_phrase(self):
        with pytest.raises(BadValueError, match="recovery action"):
            recovery_action("Pray")


class TestTimestamp:
    """nvidia-smi timestamps parse to seconds whose differences are exact to the millisecond."""

    def test_difference_between_rows(self):
        earlier = timestamp("2025/07/26 23:32:09.703")
        later = timestamp("2025/07/26 23:32:10.818")
        assert later - earlier == pytest.approx(1.115, abs=1e-6)

    def test_without_milliseconds(self):
        assert timestamp("2025/07/26 23:32:10") - timestamp("2025/07/26 23:32:09") == pytest.approx(1.0)

    def test_across_midnight(self):
        assert timestamp("2025/07/27 00:00:00.100") - timestamp("2025/07/26 23:59:59.900") == pytest.approx(
            0.2
        )

    @pytest.mark.parametrize("text", ["2025-07-26 23:32:09", "2025/13/01 00:00:00.000", "[N/A]"])
    def test_malformed(self, text):
        with pytest.raises(BadValueError, match="timestamp"):
            timestamp(text)
