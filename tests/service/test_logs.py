"""Logs: one structured line per event on stderr, logfmt or JSON, at the chosen level; root is warned."""

from __future__ import annotations

import json
import logging
import os
import sys

import pytest
from service_helpers import EPHEMERAL, QUICK, NotifySocket, Serve

from gpuwatch.service.logs import JsonFormatter, LogfmtFormatter, fields, level_number, logfmt_value


def _record(message: str, *args: object, extra: dict | None = None, exc: bool = False) -> logging.LogRecord:
    exc_info = None
    if exc:
        try:
            raise ValueError("boom\nsecond line")  # noqa: TRY301 - a real traceback to format
        except ValueError:
            exc_info = sys.exc_info()
    record = logging.LogRecord("gpuwatch.test", logging.WARNING, __file__, 1, message, args, exc_info)
    for key, value in (extra or {}).items():
        setattr(record, key, value)
    return record


class TestFormatters:
    """The formatters on their own."""

    @pytest.mark.parametrize(
        ("value", "written"),
        [
            ("ok", "ok"),
            ("", '""'),
            ("two words", '"two words"'),
            ('say "hi"', '"say \\"hi\\""'),
            ("a=b", '"a=b"'),
            ("line\nbreak", '"line\\nbreak"'),
            (True, "true"),
            (("margin_low", "power_capped"), "margin_low,power_capped"),
            (3.5, "3.5"),
        ],
    )
    def test_logfmt_values(self, value, written):
        assert logfmt_value(value) == written

    def test_logfmt_line_orders_keys_and_keeps_one_line(self):
        extra = fields(
            "state_change", scope="gpu", gpu=3, reasons=("a", "b"), sentence="GPU 3 is hot.", skip=None
        )
        line = LogfmtFormatter().format(_record("gpu %d %s -> %s", 3, "ok", "hot", extra=extra, exc=True))
        assert "\n" not in line
        assert line.startswith("ts=")
        body = line.split(" ", 1)[1]
        assert body.startswith(
            'level=warn logger=gpuwatch.test event=state_change msg="gpu 3 ok -> hot" scope=gpu gpu=3 '
            'reasons=a,b sentence="GPU 3 is hot." exc="Traceback'
        )
        assert "skip=" not in line
        assert "boom\\nsecond line" in line

    def test_json_line_has_the_same_keys(self):
        extra = fields("reloaded", applied=("policy.state_hold_s",))
        document = json.loads(JsonFormatter().format(_record("reloaded %s", "f.toml", extra=extra)))
        assert document["event"] == "reloaded"
        assert document["msg"] == "reloaded f.toml"
        assert document["applied"] == ["policy.state_hold_s"]
        assert document["level"] == "warn"
        assert document["ts"].endswith("Z")

    def test_levels(self):
        assert level_number("warn") == level_number("WARNING") == logging.WARNING
        with pytest.raises(ValueError, match="expected one of debug, info, warn, error"):
            level_number("loud")


class TestServeLogs:
    """What `gpuwatch serve` writes."""

    def test_json_lines_with_structured_state_changes(self):
        daemon = Serve(*QUICK, *EPHEMERAL, "--log.format=json", "--config=/dev/null")
        try:
            daemon.wait_for_log(r'"event": "state_change"')
            assert daemon.stop()[0] == 0
        finally:
            daemon.kill()
        documents = [json.loads(line) for line in daemon.lines]  # every line is one JSON object
        node = next(d for d in documents if d.get("event") == "state_change" and d["scope"] == "node")
        assert (node["from"], node["to"]) == ("unknown", "ok")
        assert node["reasons"] == ["within_limits"]
        assert node["sentence"].startswith("All 1 GPUs")
        gpu = next(d for d in documents if d.get("event") == "state_change" and d["scope"] == "gpu")
        assert (gpu["gpu"], gpu["from"], gpu["to"]) == (0, "new", "ok")
        assert gpu["uuid"].startswith("GPU-")
        events = [d.get("event") for d in documents]
        assert events.index("signal") < events.index("stopping") < events.index("stopped")

    def test_level_warn_leaves_out_info_and_root_is_warned(self, tmp_path):
        ready = NotifySocket(tmp_path / "notify.sock")  # the info lines that say it is up are hidden
        daemon = Serve(
            *QUICK, *EPHEMERAL, "--log.level=warn", "--config=/dev/null", env={"NOTIFY_SOCKET": ready.address}
        )
        try:
            ready.wait_for("READY", "1")
            assert daemon.stop()[0] == 0
        finally:
            daemon.kill()
            ready.close()
        assert not any("level=info" in line for line in daemon.lines)
        root_warned = any("event=running_as_root" in line and "level=warn" in line for line in daemon.lines)
        assert root_warned == (os.geteuid() == 0)
