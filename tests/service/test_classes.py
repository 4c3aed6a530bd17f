"""Class names: the default class and aliases, from flags, GPUWATCH_* and the [classes] table."""

from __future__ import annotations

import pytest
from exposure.serve_helpers import get
from service_helpers import EPHEMERAL, Serve, gpuwatch, wait_for_state

from gpuwatch.policy.admission import UnknownPriorityError
from gpuwatch.policy.classes import ClassNames, ClassNamesError
from gpuwatch.policy.decision import PriorityClass


class TestClassNames:
    def test_aliases_and_names_in_any_case(self):
        names = ClassNames.parse("sheddable", {"Free": "sheddable", "pro": "CRITICAL"})
        assert names.default is PriorityClass.SHEDDABLE
        assert names.resolve(" FREE ") is PriorityClass.SHEDDABLE
        assert names.resolve("Pro") is PriorityClass.CRITICAL
        assert names.resolve("default") is PriorityClass.DEFAULT

    def test_an_unknown_name_lists_the_aliases_too(self):
        with pytest.raises(UnknownPriorityError, match="critical, default, sheddable, free"):
            ClassNames.parse("default", {"free": "sheddable"}).resolve("gold")

    @pytest.mark.parametrize(
        ("default", "aliases", "words"),
        [
            ("gold", {}, "default: unknown priority class 'gold'"),
            ("default", {"free": "gold"}, "alias 'free': unknown priority class 'gold'"),
            ("default", {"critical": "sheddable"}, "already the name of a class"),
            ("default", {"a b": "sheddable"}, "use letters, digits"),
        ],
    )
    def test_bad_settings_name_what_is_wrong(self, default, aliases, words):
        with pytest.raises(ClassNamesError, match=words):
            ClassNames.parse(default, aliases)


def admitted_class(port: int, query: str = "", headers: dict[str, str] | None = None) -> str:
    return get(port, f"/v1/admit{query}", headers).json()["class"]


class TestServe:
    def test_flags_set_the_default_and_aliases_for_query_and_header(self):
        serve = Serve(
            "--source=sim:1xH100", *EPHEMERAL, "--classes.default=critical",
            "--classes.alias", "free=sheddable", "--classes.alias", "pro=critical",
        )  # fmt: skip
        try:
            port = serve.http_port()
            wait_for_state(port, lambda doc: doc["gpus"])
            assert admitted_class(port) == "critical"
            assert admitted_class(port, "?class=free") == "sheddable"
            assert admitted_class(port, "", {"X-GPUWatch-Class": "Pro"}) == "critical"
            refused = get(port, "/v1/admit?class=gold")
            assert refused.status == 400
            assert "free, pro" in refused.json()["message"]
            document = get(port, "/openapi.json").json()
            assert {"free", "pro"} <= set(document["components"]["parameters"]["class"]["schema"]["enum"])
        finally:
            serve.stop()
            serve.kill()

    def test_the_file_sets_them_and_a_flag_overrides_the_default(self, tmp_path):
        config = tmp_path / "gpuwatch.toml"
        config.write_text(
            '[classes]\ndefault = "sheddable"\naliases = { batch = "sheddable", paid = "critical" }\n'
        )
        serve = Serve(
            "--source=sim:1xH100",
            *EPHEMERAL,
            "--config",
            str(config),
            env={"GPUWATCH_CLASSES_DEFAULT": "default"},
        )
        try:
            port = serve.http_port()
            wait_for_state(port, lambda doc: doc["gpus"])
            assert admitted_class(port) == "default"  # GPUWATCH_CLASSES_DEFAULT beats the file
            assert admitted_class(port, "?class=paid") == "critical"
        finally:
            serve.stop()
            serve.kill()

    def test_check_names_a_bad_alias_with_its_line(self, tmp_path):
        config = tmp_path / "gpuwatch.toml"
        config.write_text('interval_s = 1.0\n[classes]\naliases = { free = "gold" }\n')
        done = gpuwatch("check", "--config", str(config))
        assert done.returncode == 2
        assert f"{config}:3: classes.aliases" in done.stderr
        assert "unknown priority class 'gold'" in done.stderr

    def test_a_flag_without_equals_is_a_usage_error(self):
        done = gpuwatch("serve", "--source=sim:1xH100", *EPHEMERAL, "--classes.alias", "free")
        assert done.returncode == 2
        assert "expected NAME=CLASS" in done.stderr
