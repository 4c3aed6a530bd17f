"""The files in systemd/: the unit verifies, is hardened (exposure <= 3.0), the user and env file work."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from gpuwatch.cli.serve import serve

SYSTEMD = Path(__file__).resolve().parents[2] / "systemd"
UNIT = SYSTEMD / "gpuwatch.service"
INSTALLED_BINARY = "/opt/gpuwatch/bin/gpuwatch"
MAX_EXPOSURE = 3.0


def _tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is missing: tests/run installs Debian's systemd package")
    return found


def _directives(text: str) -> dict[str, list[str]]:
    """Every `Key=value` of a unit file, values in order of appearance."""
    found: dict[str, list[str]] = {}
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            found.setdefault(key.strip(), []).append(value.strip())
    return found


def _installed_copy(tmp_path: Path, text: str | None = None) -> Path:
    """The unit with ExecStart pointing at this checkout's gpuwatch instead of /opt (absent here)."""
    entry = Path(sys.executable).parent / "gpuwatch"
    assert entry.exists(), "the gpuwatch entry point of the venv (pip install -e .)"
    copy = tmp_path / "gpuwatch.service"
    copy.write_text((text or UNIT.read_text()).replace(INSTALLED_BINARY, str(entry)))
    return copy


def _verify(unit: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [_tool("systemd-analyze"), "verify", "--man=no", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


class TestUnit:
    """gpuwatch.service as DESIGN §5 asks, checked by systemd's own tools (no running systemd)."""

    def test_directives_the_design_asks_for(self):
        unit = _directives(UNIT.read_text())
        assert unit["Type"] == ["notify"]
        assert unit["NotifyAccess"] == ["main"]
        assert unit["Restart"] == ["on-failure"]
        assert unit["EnvironmentFile"] == ["-/etc/default/gpuwatch"]
        assert unit["User"] == ["gpuwatch"]
        assert re.fullmatch(r"\d+s", unit["WatchdogSec"][0])
        assert unit["ExecStart"][0].startswith(f"{INSTALLED_BINARY} serve")
        assert unit["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
        assert "/dev/nvidiactl rw" in unit["DeviceAllow"]
        assert "char-nvidia* rw" in unit["DeviceAllow"]
        assert unit["DevicePolicy"] == ["closed"]
        # These would hide /dev/nvidia* or /proc/driver/nvidia from NVML.
        assert "PrivateDevices" not in unit
        assert "ProcSubset" not in unit

    def test_systemd_analyze_verify_is_clean(self, tmp_path):
        result = _verify(_installed_copy(tmp_path))
        assert result.returncode == 0, result.stderr
        assert result.stderr.strip() == ""

    def test_verify_would_catch_a_mistake(self, tmp_path):
        broken = UNIT.read_text().replace("Restart=on-failure", "Restart=on-failure\nWatchdogSecs=30s")
        result = _verify(_installed_copy(tmp_path, broken))
        assert "WatchdogSecs" in result.stderr

    def test_security_exposure_is_at_most_3(self, tmp_path):
        result = subprocess.run(
            [
                _tool("systemd-analyze"),
                "security",
                "--offline=true",
                "--no-pager",
                str(_installed_copy(tmp_path)),
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        found = re.search(r"Overall exposure level for gpuwatch\.service: (\d+\.\d+)", result.stdout)
        assert found, result.stdout + result.stderr
        assert float(found.group(1)) <= MAX_EXPOSURE, result.stdout


class TestUserAndEnvironment:
    """The sysusers.d entry creates the user; the env example names only real variables."""

    def test_sysusers_creates_a_system_user_without_login(self, tmp_path):
        (tmp_path / "etc").mkdir()
        result = subprocess.run(
            [_tool("systemd-sysusers"), f"--root={tmp_path}", str(SYSTEMD / "gpuwatch.sysusers")],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        users = {
            line.split(":")[0]: line.split(":") for line in (tmp_path / "etc/passwd").read_text().splitlines()
        }
        name, _, uid, _gid, _gecos, _home, shell = users["gpuwatch"]
        assert name == "gpuwatch"
        assert 0 < int(uid) < 1000  # a system user
        assert shell == "/usr/sbin/nologin"

    def test_every_variable_in_the_example_is_read_by_serve(self):
        text = (SYSTEMD / "gpuwatch.default").read_text()
        named = set(re.findall(r"^#?(GPUWATCH_[A-Z_]+)=", text, flags=re.MULTILINE))
        read = {p.envvar for p in serve.params if isinstance(p.envvar, str)}
        read |= {"GPUWATCH_AGENT_LISTEN_ADDRESS", "GPUWATCH_STATE_DIR"}  # read by callbacks (empty disables)
        read.add("GPUWATCH_ARGS")  # expanded by the unit's ExecStart
        assert named, "the example names no variable"
        assert named <= read, named - read
        assert "$GPUWATCH_ARGS" in UNIT.read_text()
