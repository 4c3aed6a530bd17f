"""The --config TOML file: a [policy] table, refused at start naming file, line and key."""

from __future__ import annotations

import pytest

from gpuwatch.policy.config import PolicyConfig
from gpuwatch.service.config_file import ConfigFileError, load_config, parse_config


class TestConfigFile:
    """Valid files configure the policy; bad ones say where and what."""

    def test_policy_table_sets_values_and_keeps_other_defaults(self, tmp_path):
        path = tmp_path / "gpuwatch.toml"
        path.write_text("[policy]\nstate_hold_s = 2\nfail_open = true\n")
        config = load_config(path)
        assert (config.state_hold_s, config.fail_open) == (2.0, True)
        assert config.default_guard_c == PolicyConfig().default_guard_c

    def test_empty_file_is_all_defaults(self):
        assert parse_config("") == PolicyConfig()

    @pytest.mark.parametrize(
        ("text", "message"),
        [
            (
                "[policy]\nstate_hold_s = 1\nstate_hold = 2\n",
                r"^f\.toml:3: policy\.state_hold: unknown key; did you mean",
            ),
            ("[policy]\n\nstate_hold_s = -5\n", r"^f\.toml:3: policy\.state_hold_s: must be >= 0"),
            (
                "[policy]\nhorizon_s = 60\nhot_dwell_s = 30\n",
                r"^f\.toml:3: policy\.hot_dwell_s: retired: .*state_hold_s",
            ),
            ("# comment\n[polcy]\nx = 1\n", r"^f\.toml:2: polcy: unknown table or key"),
            ("[policy]\nfail_open = 1\n", r"^f\.toml:2: policy\.fail_open: must be true or false"),
            ("[policy\n", r"^f\.toml:1: not valid TOML"),
            ("policy = 3\n", r"^f\.toml:1: policy: must be a table"),
        ],
    )
    def test_errors_name_file_line_and_key(self, text, message):
        with pytest.raises(ConfigFileError, match=message):
            parse_config(text, "f.toml")

    def test_unreadable_file_is_an_error_naming_it(self, tmp_path):
        with pytest.raises(ConfigFileError, match=r"missing\.toml: cannot read"):
            load_config(tmp_path / "missing.toml")
