"""Maintenance drains through `gpuwatch serve`: only an enabled, authenticated admin API changes them."""

from __future__ import annotations

import base64
import json
import os
import stat
import time
from pathlib import Path

import bcrypt
import pytest
from serve_helpers import ServeProcess, get, run_serve

PASSWORD = "s3cret"  # noqa: S105 - a test login for a daemon on loopback
GPUS = 4


def login(password: str = PASSWORD) -> dict[str, str]:
    token = base64.b64encode(f"admin:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def web_config(folder: Path) -> Path:
    """basic_auth_users with one user, hashed at the lowest bcrypt cost so tests stay fast."""
    hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()
    path = folder / "web.yml"
    path.write_text(f"basic_auth_users:\n  admin: {hashed}\n")
    path.chmod(0o600)
    return path


def serve(folder: Path, *extra: str) -> ServeProcess:
    return ServeProcess(
        "--source", f"sim:{GPUS}xH100", "--interval", "0.2",
        "--web.listen-address", "127.0.0.1:0", "--agent.listen-address", "",
        "--state-dir", str(folder / "state"), *extra,
    )  # fmt: skip


@pytest.fixture
def admin(tmp_path):
    """A daemon with the admin API on behind basic auth; yields (process, port)."""
    process = serve(tmp_path, "--web.enable-admin-api", "--web.config.file", str(web_config(tmp_path)))
    try:
        port = process.port("HTTP")
        wait_admitting(port)
        yield process, port
    finally:
        process.stop()
        process.kill()


def wait_admitting(port: int, headers: dict[str, str] | None = None) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        answer = get(port, "/v1/admit?class=critical", headers or login())
        if answer.status == 200 and answer.json()["gpu"] is not None:  # sampled, not just UNKNOWN
            return
        time.sleep(0.05)
    raise AssertionError("the daemon never admitted critical work on a GPU")


class TestWithoutTheAdminApi:
    """By default nothing changes state: the drains can be read, never set."""

    def test_post_and_delete_are_refused_and_change_nothing(self, tmp_path):
        process = serve(tmp_path)
        try:
            port = process.port("HTTP")
            wait_admitting(port, {})
            for method in ("POST", "DELETE"):
                answer = get(port, "/v1/drain?gpu=1", method=method)
                assert answer.status == 403
                assert answer.json()["error"] == "admin_disabled"
            assert get(port, "/v1/drain").json() == {"drains": {"node": None, "gpus": {}}, "admin": False}
            assert get(port, "/v1/admit?gpu=1&class=critical").status == 200
        finally:
            process.stop()
            process.kill()

    def test_the_admin_api_without_logins_is_refused_at_start(self, tmp_path):
        empty = tmp_path / "web.yml"
        empty.write_text("{}\n")
        done = run_serve("--source", "sim:1xH100", "--web.enable-admin-api", "--web.config.file", str(empty))
        assert done.returncode == 2
        assert "--web.enable-admin-api needs basic_auth_users" in done.stderr


class TestWithTheAdminApi:
    """Authenticated POST drains at once; DELETE ends it; anonymous callers get 401."""

    def test_anonymous_callers_are_refused(self, admin):
        _, port = admin
        assert get(port, "/v1/drain", method="POST").status == 401
        assert get(port, "/v1/drain", login("wrong"), method="POST").status == 401
        assert get(port, "/v1/drain", login()).json()["drains"]["node"] is None

    def test_a_drained_gpu_is_never_named_and_refuses_when_pinned(self, admin):
        _, port = admin
        answer = get(port, "/v1/drain?gpu=0&reason=fan+swap", login(), method="POST")
        assert answer.status == 200
        assert answer.json()["drains"]["gpus"]["0"]["reason"] == "fan swap"
        pinned = get(port, "/v1/admit?gpu=0&class=critical", login())
        assert pinned.status == 503
        assert pinned.headers["x-gpuwatch-reason"] == "drained"
        assert "fan swap" in pinned.json()["sentence"]
        chosen = {get(port, "/v1/admit?class=critical", login()).json()["gpu"]["index"] for _ in range(20)}
        assert chosen
        assert 0 not in chosen
        state = get(port, "/v1/state", login()).json()
        gpu0 = next(g for g in state["gpus"] if g["index"] == 0)
        assert gpu0["reasons"][0] == "drained"
        assert gpu0["state"] == "ok"  # a drain holds work back; it does not change what is measured

    def test_a_drained_node_admits_nothing_until_undrained(self, admin):
        _, port = admin
        assert get(port, "/v1/drain", login(), method="POST").status == 200
        held = get(port, "/v1/admit?class=critical", login())
        assert held.status == 503
        assert held.headers["x-gpuwatch-reason"] == "drained"
        assert int(held.headers["retry-after"]) >= 90  # nobody can predict a drain's end: the longest
        assert get(port, "/v1/admit/nginx?class=critical", login()).status == 403
        assert get(port, "/readyz", login()).status == 503
        ended = get(port, "/v1/drain", login(), method="DELETE")
        assert ended.json()["drains"] == {"node": None, "gpus": {}}
        assert get(port, "/v1/admit?class=critical", login()).status == 200

    def test_drains_survive_a_restart_in_a_state_file_readable_by_all(self, tmp_path):
        config = str(web_config(tmp_path))
        first = serve(tmp_path, "--web.enable-admin-api", "--web.config.file", config)
        try:
            port = first.port("HTTP")
            wait_admitting(port)
            assert get(port, "/v1/drain?gpu=2&reason=rma", login(), method="POST").status == 200
        finally:
            first.stop()
            first.kill()
        saved = tmp_path / "state" / "drains.json"
        assert stat.S_IMODE(saved.stat().st_mode) == 0o644
        assert json.loads(saved.read_text())["gpus"]["2"]["reason"] == "rma"
        second = serve(tmp_path)  # the admin API off: the drain still holds
        try:
            port = second.port("HTTP")
            wait_admitting(port, {})
            assert get(port, "/v1/admit?gpu=2&class=critical").status == 503
            assert get(port, "/v1/drain").json()["drains"]["gpus"]["2"]["reason"] == "rma"
        finally:
            second.stop()
            second.kill()

    @pytest.mark.parametrize(
        ("query", "status", "code"),
        [
            ("?gpu=9", 404, "unknown_gpu"),
            ("?gpu=x", 400, "bad_gpu"),
            ("?node=1", 400, "unknown_parameter"),
            ("?gpu=1&gpu=2", 400, "repeated_parameter"),
            ("?reason=" + "x" * 201, 400, "bad_reason"),
            ("?reason=%07bell", 400, "bad_reason"),
        ],
    )
    def test_bad_requests_change_nothing(self, admin, query, status, code):
        _, port = admin
        answer = get(port, "/v1/drain" + query, login(), method="POST")
        assert (answer.status, answer.json()["error"]) == (status, code)
        assert get(port, "/v1/drain", login()).json()["drains"] == {"node": None, "gpus": {}}

    def test_other_methods_get_405(self, admin):
        _, port = admin
        answer = get(port, "/v1/drain", login(), method="PUT")
        assert answer.status == 405
        assert answer.headers["allow"] == "GET, HEAD, POST, DELETE"


def test_state_directory_stays_private_to_writers(tmp_path):
    """Files others read are 0644 in a directory only the service user writes (umask 022 or not)."""
    old = os.umask(0)
    try:
        process = serve(tmp_path)
        try:
            wait_admitting(process.port("HTTP"), {})
        finally:
            process.stop()
            process.kill()
    finally:
        os.umask(old)
    state = tmp_path / "state"
    assert stat.S_IMODE(state.stat().st_mode) & 0o022 == 0
    for name in ("state.json", "pressure"):
        assert stat.S_IMODE((state / name).stat().st_mode) == 0o644
