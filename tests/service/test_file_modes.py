"""Files that steer admission are refused when others may write them: config, web config, state directory."""

from __future__ import annotations

import subprocess
import sys

import pytest

from gpuwatch.exposure.filemodes import others_may_write


def gpuwatch(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gpuwatch", *args], capture_output=True, text=True, timeout=30, check=False
    )


@pytest.mark.parametrize(
    ("mode", "words"),
    [
        (0o664, "group-writable (mode 0664)"),
        (0o646, "world-writable (mode 0646)"),
        (0o666, "group- and world-"),
    ],
)
def test_check_refuses_a_config_others_may_write(tmp_path, mode, words):
    config = tmp_path / "gpuwatch.toml"
    config.write_text("interval_s = 1.0\n")
    config.chmod(mode)
    done = gpuwatch("check", "--config", str(config))
    assert done.returncode == 2
    assert words in done.stderr
    assert f"chmod go-w {config}" in done.stderr


def test_serve_refuses_a_config_others_may_write_with_the_same_words(tmp_path):
    config = tmp_path / "gpuwatch.toml"
    config.write_text('source = "sim:1xH100"\n')
    config.chmod(0o666)
    done = gpuwatch("serve", "--config", str(config), "--web.listen-address", "127.0.0.1:0")
    assert done.returncode == 2
    assert "the config file is group- and world-writable" in done.stderr


def test_a_private_config_is_accepted(tmp_path):
    config = tmp_path / "gpuwatch.toml"
    config.write_text("interval_s = 1.0\n")
    config.chmod(0o640)
    assert gpuwatch("check", "--config", str(config)).returncode == 0


def test_serve_refuses_a_web_config_others_may_write(tmp_path):
    web = tmp_path / "web.yml"
    web.write_text("{}\n")
    web.chmod(0o666)
    done = gpuwatch("serve", "--source", "sim:1xH100", "--web.config.file", str(web))
    assert done.returncode == 2
    assert "the web config is group- and world-writable" in done.stderr


def test_serve_refuses_a_state_directory_others_may_write(tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    done = gpuwatch(
        "serve", "--source", "sim:1xH100", "--web.listen-address", "127.0.0.1:0", "--state-dir", str(shared)
    )
    assert done.returncode == 2
    assert "the state directory is group- and world-writable (mode 0777)" in done.stderr


def test_a_path_that_cannot_be_stated_is_left_to_its_reader(tmp_path):
    assert others_may_write(tmp_path / "missing", "config file") is None
