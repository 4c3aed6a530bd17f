"""SIGHUP: the policy and log settings change live, connections and fitted models stay, the rest waits."""

from __future__ import annotations

import http.client
import json
import signal
import time

import pytest
from service_helpers import TIMEOUT_S, NotifySocket, Serve, state, wait_for_state

ADDRESSES = ("--agent.listen-address=", "--state-dir=")
START = '[web]\nlisten_addresses = ["127.0.0.1:0"]\n[policy]\nstate_hold_s = 5\n'
# A cool simulated H100 keeps about 40 °C of margin: `sheddable` guarding 100 °C has no slot, so
# the GPU is ELEVATED.
ELEVATED_BELOW_100 = START + "sheddable_guard_c = 100\n"


@pytest.fixture
def daemon(tmp_path):
    config = tmp_path / "gpuwatch.toml"
    config.write_text(START)
    listener = NotifySocket(tmp_path / "notify.sock")
    process = Serve(
        "--source=sim:1xH100",
        "--interval=0.1",
        f"--config={config}",
        *ADDRESSES,
        env={"NOTIFY_SOCKET": listener.address},
    )
    process.config = config
    process.notify = listener
    yield process
    process.kill()
    listener.close()


def _basis(document: dict) -> str:
    return document["gpus"][0]["prediction_basis"]


class TestReload:
    """What a reload applies, keeps and reports."""

    def test_policy_applies_at_once_on_the_same_connection_keeping_the_fitted_model(self, daemon):
        port = daemon.http_port()
        wait_for_state(port, lambda d: d["gpus"] and _basis(d) == "model")
        kept = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT_S)
        assert state(port, kept)["state"] == "ok"
        daemon.config.write_text(ELEVATED_BELOW_100)
        sent_at = time.monotonic()
        mark = daemon.signal(signal.SIGHUP)
        line = daemon.wait_for_log(r"event=reloaded .*", after=mark).group(0)
        assert "applied=policy.sheddable_guard_c" in line
        documents = []
        deadline = time.monotonic() + TIMEOUT_S
        while time.monotonic() < deadline and (not documents or documents[-1]["state"] != "elevated"):
            documents.append(state(port, kept))  # the connection opened before the reload still answers
            time.sleep(0.05)
        kept.close()
        assert documents[-1]["state"] == "elevated", documents[-1]
        assert documents[-1]["reasons"] not in ([], ["within_limits"])
        # A policy rebuilt from scratch would predict from nothing ("none") for its first samples.
        assert {_basis(d) for d in documents} == {"model"}
        reloading_at = daemon.notify.wait_for("RELOADING", "1", after=sent_at)[0]
        daemon.notify.wait_for("READY", "1", after=reloading_at)
        assert daemon.stop()[0] == 0

    def test_settings_that_need_a_restart_are_named_and_logging_changes_live(self, daemon):
        port = daemon.http_port()
        wait_for_state(port, lambda d: d["sequence"] >= 1)
        daemon.config.write_text(
            'interval_s = 0.5\n[web]\nlisten_addresses = ["127.0.0.1:1"]\n[log]\nformat = "json"\n'
            "[metrics]\ndcgm_compat = true\n[policy]\nstate_hold_s = 5\n"
        )
        mark = daemon.signal(signal.SIGHUP)
        found = daemon.wait_for_log(r'"event": "reload_needs_restart".*', after=mark)
        warning = json.loads(found.string)
        assert warning["level"] == "warn"
        # interval_s changed in the file too, but --interval overrides it: nothing to restart for.
        assert warning["settings"] == ["web.listen_addresses", "metrics.dcgm_compat"]
        reloaded = json.loads(daemon.wait_for_log(r'"event": "reloaded".*', after=mark).string)
        assert reloaded["applied"] == ["log.format"]
        # Still on the old port and interval: those changes wait for a restart.
        assert state(port)["state"] == "ok"
        assert daemon.stop()[0] == 0

    def test_a_bad_file_keeps_the_running_settings(self, daemon):
        port = daemon.http_port()
        wait_for_state(port, lambda d: d["sequence"] >= 1)
        daemon.config.write_text(ELEVATED_BELOW_100 + "[log]\nlevel = 7\n")
        mark = daemon.signal(signal.SIGHUP)
        line = daemon.wait_for_log(r"event=reload_failed .*", after=mark).group(0)
        assert f"{daemon.config}:7: log.level: must be a string in quotes (got 7)" in line
        time.sleep(0.5)
        assert state(port)["state"] == "ok"  # the elevated thresholds in the bad file were not applied
        assert daemon.stop()[0] == 0
