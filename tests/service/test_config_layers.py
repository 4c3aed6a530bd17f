"""Settings: the TOML file's keys, its errors (file:line key value), and flags > env > file > defaults."""

from __future__ import annotations

import re

import pytest
from service_helpers import EPHEMERAL, Serve, gpuwatch, wait_for_state

from gpuwatch.service import config_file
from gpuwatch.service.config_file import ConfigFileError, FileConfig, parse_file_config
from gpuwatch.service.settings import CommandLine, ServeConfig, SettingsError, resolve


def _docstring_example() -> str:
    """The commented example at the top of gpuwatch/service/config_file.py, as a TOML file."""
    doc = config_file.__doc__ or ""
    block = doc.split("keeps its default:\n", 1)[1].split("\nSIGHUP", 1)[0]
    return "\n".join(line[4:] for line in block.splitlines())


class TestFile:
    """Every documented key parses; each wrong one is named with its line and value."""

    def test_the_documented_example_is_valid_and_sets_every_setting(self):
        config = parse_file_config(_docstring_example(), "example.toml")
        file_keys = {f for f in ServeConfig.__dataclass_fields__ if f != "policy"}
        assert set(config.values) == file_keys
        assert config.values["web_listen_addresses"] == (":9478",)
        assert config.values["agent_listen_address"] == ":9479"
        assert config.policy == {"fail_open": False}

    def test_values_are_converted_and_absent_keys_left_out(self):
        config = parse_file_config('interval_s = 2\n[log]\nformat = "json"\n[policy]\nhorizon_s = 90\n')
        assert config.values == {"interval_s": 2.0, "log_format": "json"}
        assert config.policy == {"horizon_s": 90}

    @pytest.mark.parametrize(
        ("text", "message"),
        [
            ("interval_s = 0\n", r"^f\.toml:1: interval_s: must be a number from 0\.01 to 3600 \(got 0\)"),
            ('\nsource = "gpus"\n', r"^f\.toml:2: source: unknown source 'gpus'"),
            ('[web]\nlisten_addresses = ":9478"\n', r"^f\.toml:2: web\.listen_addresses: must be an array"),
            (
                '[web]\nlisten_addresses = ["9478"]\n',
                r"^f\.toml:2: web\.listen_addresses: listen address '9478'",
            ),
            ("[web]\nlisten_addresses = []\n", r"^f\.toml:2: web\.listen_addresses: needs at least one"),
            (
                '[web]\ntelemetry_path = "/v1/state"\n',
                r"^f\.toml:2: web\.telemetry_path: /v1/state is a route",
            ),
            (
                "[web]\nmax_requests = 1.5\n",
                r"^f\.toml:2: web\.max_requests: must be a whole number .*\(got 1\.5\)",
            ),
            ("[web]\nport = 1\n", r"^f\.toml:2: web\.port: unknown key; expected one of listen_addresses"),
            ('[agent]\nlisten_address = "::1:9479"\n', r"^f\.toml:2: agent\.listen_address: .*brackets"),
            (
                '[metrics]\ndcgm_compat = "yes"\n',
                r'^f\.toml:2: metrics\.dcgm_compat: must be true or false \(got "yes"\)',
            ),
            (
                '[log]\nlevel = "loud"\n',
                r'^f\.toml:2: log\.level: must be one of debug, info, warn, error \(got "loud"\)',
            ),
            ("[policy]\n\nstate_hold_s = -1\n", r"^f\.toml:3: policy\.state_hold_s: must be >= 0, got -1"),
            (
                "[policy]\n\njob_seconds = {default = 10, premium = 3}\n",
                r"^f\.toml:3: policy\.job_seconds\.premium: unknown class; valid classes: critical",
            ),
            (
                "[policy.job_seconds]\ndefault = 10\ncritical = -3\n",
                r"^f\.toml:3: policy\.job_seconds\.critical: must be a number of seconds > 0, got -3",
            ),
            ("log = 3\n", r"^f\.toml:1: log: must be a table \[log\] \(got 3\)"),
            (
                "interval = 1\n",
                r"^f\.toml:1: interval: unknown table or key; expected one of: source, interval_s",
            ),
        ],
    )
    def test_errors_name_file_line_key_and_value(self, text, message):
        with pytest.raises(ConfigFileError, match=message):
            parse_file_config(text, "f.toml")

    def test_an_error_carries_the_key_and_line_for_programs(self):
        with pytest.raises(ConfigFileError) as caught:
            parse_file_config("[web]\n\nmax_requests = -1\n", "f.toml")
        assert (caught.value.key, caught.value.line) == ("web.max_requests", 3)


class TestPrecedence:
    """resolve(): the command line over the file over the defaults, policy key by key."""

    def test_defaults_without_file_or_flags(self):
        assert resolve(CommandLine(), FileConfig()) == ServeConfig()

    def test_file_over_defaults_and_command_line_over_file(self):
        file = FileConfig(
            "f.toml", {"interval_s": 2.0, "source": "sim:1xA100"}, {"state_hold_s": 5, "horizon_s": 90}
        )
        command_line = CommandLine(
            {"source": "sim:1xH200", "interval_s": None},
            {"horizon_s": 30.0},
            {"horizon_s": "--policy.horizon"},
        )
        config = resolve(command_line, file)
        assert config.source == "sim:1xH200"  # the command line
        assert config.interval_s == 2.0  # the file: the command line left it unset
        assert config.max_requests == ServeConfig().max_requests  # neither: the default
        assert (config.policy.state_hold_s, config.policy.horizon_s) == (5.0, 30.0)  # layered per key

    def test_a_policy_flag_that_clashes_with_the_file_is_named(self):
        file = FileConfig("f.toml", {}, {"sheddable_guard_c": 6})
        command_line = CommandLine({}, {"default_guard_c": 7}, {"default_guard_c": "--policy.set"})
        with pytest.raises(
            SettingsError,
            match=(
                r"policy\.sheddable_guard_c: must be at least default_guard_c "
                r".*f\.toml's \[policy\] with --policy\.set"
            ),
        ):
            resolve(command_line, file)


def _started(daemon: Serve) -> str:
    return daemon.wait_for_log(r"event=starting .*").group(0)


class TestServeLayers:
    """The same precedence in a running `gpuwatch serve`."""

    def test_flag_over_environment_over_file(self, tmp_path):
        config = tmp_path / "gpuwatch.toml"
        config.write_text('source = "sim:1xA100"\ninterval_s = 0.3\n[policy]\nhorizon_s = 45\n')
        env = {"GPUWATCH_SOURCE": "sim:2xA100", "GPUWATCH_INTERVAL": "0.2", "GPUWATCH_CONFIG": str(config)}
        daemon = Serve("--source=sim:1xH200", *EPHEMERAL, env=env)
        try:
            line = _started(daemon)
            assert "source=sim:1xH200 " in line  # flag beats env and file
            assert "interval_s=0.2 " in line  # env beats file
            assert f"config={config}" in line
            port = daemon.http_port()
            document = wait_for_state(port, lambda d: d["sequence"] >= 1)
            assert [g["name"] for g in document["gpus"]] == ["NVIDIA H200"] or "H200" in document["gpus"][0][
                "name"
            ]
            assert daemon.stop()[0] == 0
        finally:
            daemon.kill()

    def test_file_settings_take_effect_when_nothing_overrides_them(self, tmp_path):
        config = tmp_path / "gpuwatch.toml"
        config.write_text(
            'source = "sim:2xA100"\ninterval_s = 0.1\n'
            '[web]\nlisten_addresses = ["127.0.0.1:0"]\n[agent]\nlisten_address = ""\n'
        )
        daemon = Serve(f"--config={config}", f"--state-dir={tmp_path / 'state'}")
        try:
            port = daemon.http_port()
            document = wait_for_state(port, lambda d: d["sequence"] >= 1)
            assert document["source"] == "sim:2xA100"
            assert not any("HAProxy agent" in line for line in daemon.lines)
            assert daemon.stop()[0] == 0
        finally:
            daemon.kill()

    def test_missing_explicit_config_is_refused(self, tmp_path):
        result = gpuwatch("serve", "--source=sim:1xH100", *EPHEMERAL, f"--config={tmp_path / 'nope.toml'}")
        assert result.returncode == 2
        assert f"{tmp_path / 'nope.toml'}: cannot read the config file" in result.stderr

    def test_bad_file_is_refused_at_start_with_the_check_message(self, tmp_path):
        config = tmp_path / "gpuwatch.toml"
        config.write_text('[log]\nformat = "xml"\n')
        served = gpuwatch("serve", "--source=sim:1xH100", *EPHEMERAL, f"--config={config}")
        checked = gpuwatch("check", f"--config={config}")
        assert served.returncode == checked.returncode == 2
        expected = f'gpuwatch: {config}:2: log.format: must be one of logfmt, json (got "xml")'
        assert served.stderr.strip() == checked.stderr.strip() == expected

    def test_bad_policy_flag_is_refused_naming_it(self):
        result = gpuwatch(
            "serve", "--source=sim:1xH100", *EPHEMERAL, "--config=/dev/null", "--policy.set=state_hold=5"
        )
        assert result.returncode == 2
        assert "policy.state_hold: unknown key; did you mean 'state_hold_s'?" in result.stderr
        assert "--policy.set" in result.stderr


class TestCheckConfig:
    """`gpuwatch check --config FILE` validates without a daemon."""

    def test_a_good_file(self, tmp_path):
        config = tmp_path / "gpuwatch.toml"
        config.write_text(_docstring_example().replace('config_file = "/etc/gpuwatch/web.yml"', ""))
        result = gpuwatch("check", f"--config={config}")
        assert result.returncode == 0, result.stderr
        assert re.fullmatch(rf"OK: {re.escape(str(config))}: \d+ settings, all valid\n", result.stdout)

    def test_names_key_value_and_line(self, tmp_path):
        config = tmp_path / "gpuwatch.toml"
        config.write_text("# node 17\n[policy]\nstate_hold_s = 5\n\n[web]\nmax_requests = -3\n")
        result = gpuwatch("check", f"--config={config}")
        assert result.returncode == 2
        assert (
            result.stderr.strip()
            == f"gpuwatch: {config}:6: web.max_requests: must be a whole number from 0 to 100000 (got -3)"
        )

    def test_a_web_config_file_that_does_not_load(self, tmp_path):
        config = tmp_path / "gpuwatch.toml"
        config.write_text(f'[web]\nconfig_file = "{tmp_path / "web.yml"}"\n')
        result = gpuwatch("check", f"--config={config}")
        assert result.returncode == 2
        assert f"{config}: web.config_file:" in result.stderr

    def test_a_missing_file(self, tmp_path):
        result = gpuwatch("check", f"--config={tmp_path / 'nope.toml'}")
        assert result.returncode == 2
        assert "cannot read the config file" in result.stderr

    def test_without_config_it_still_asks_the_daemon(self):
        result = gpuwatch("check", "--url=http://127.0.0.1:9", "--timeout=0.5")
        assert result.returncode == 2
        assert result.stdout.startswith("UNKNOWN: ")
