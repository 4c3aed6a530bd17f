"""Listen addresses as users write them in --web.listen-address and --agent.listen-address."""

from __future__ import annotations

import pytest

from gpuwatch.exposure.listen import ListenAddress, ListenAddressError, parse_listen_address


class TestParseListenAddress:
    """HOST:PORT forms, as Prometheus exporters take them."""

    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            (":9478", ListenAddress(None, 9478)),
            ("0.0.0.0:9478", ListenAddress("0.0.0.0", 9478)),  # noqa: S104 - parsing only
            ("127.0.0.1:0", ListenAddress("127.0.0.1", 0)),
            ("localhost:80", ListenAddress("localhost", 80)),
            ("[::1]:9478", ListenAddress("::1", 9478)),
            ("[::]:9479", ListenAddress("::", 9479)),
        ],
    )
    def test_valid_forms(self, text, expected):
        assert parse_listen_address(text) == expected

    @pytest.mark.parametrize("text", ["9478", "host", "host:http", ":70000", "::1:9478", "[::1]", ""])
    def test_invalid_forms_name_the_expected_form(self, text):
        with pytest.raises(ListenAddressError, match=r"HOST:PORT|brackets"):
            parse_listen_address(text)

    @pytest.mark.parametrize("text", [":9478", "127.0.0.1:9478", "[::1]:9478"])
    def test_round_trips_through_str(self, text):
        assert str(parse_listen_address(text)) == text
