"""nginx `auth_request` in front of an app, asking a real `gpuwatch serve`: README's config, run."""

from __future__ import annotations

import json
import shutil
import socket
from pathlib import Path

import pytest
from int_apps import LeaseReleasingApp
from int_procs import Spawner, free_port, http_get
from int_readme import doc_block, with_addresses
from sim_nodes import cooling_fault

from gpuwatch.exposure.leases import well_formed

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
# The fault comes this long after gpuwatch starts: time to see the node cool and admitting, s.
FAULT_AT_S = 5.0


class Nginx:
    """nginx with README's server blocks in front of the app at `app_port`, on free loopback ports.

    Without `app_port`, nginx itself stands in for the app (`return 200 "generated"`).
    """

    def __init__(self, spawner: Spawner, gpuwatch_port: int, app_port: int | None = None) -> None:
        self.port = free_port()
        stand_in = app_port is None
        app_port = free_port() if app_port is None else app_port
        prefix: Path = spawner.log_dir / "nginx"
        prefix.mkdir()
        servers = with_addresses(
            doc_block("README.md", "Wire a gateway: nginx", "nginx"),
            {
                "127.0.0.1:9478": f"127.0.0.1:{gpuwatch_port}",
                "listen 8080;": f"listen 127.0.0.1:{self.port};",
                "127.0.0.1:8000": f"127.0.0.1:{app_port}",
            },
        )
        temp_paths = "\n".join(
            f"    {kind}_temp_path {prefix}/{kind};"
            for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
        )
        app = f'    server {{ listen 127.0.0.1:{app_port}; location / {{ return 200 "generated\\n"; }} }}\n'
        config = prefix / "nginx.conf"
        config.write_text(
            "worker_processes 1;\nevents { worker_connections 64; }\nhttp {\n    access_log off;\n"
            f"{temp_paths}\n{servers}\n{app if stand_in else ''}}}\n"
        )
        argv = [NGINX, "-p", str(prefix), "-e", str(prefix / "error.log"), "-c", str(config)]
        argv += ["-g", f"daemon off; pid {prefix}/nginx.pid;"]
        # Not through `location /`: every request there is an admission, and takes a lease.
        if stand_in:
            ready = lambda: http_get("127.0.0.1", app_port, "/").status == 200  # noqa: E731
        else:
            ready = lambda: listening(self.port)  # noqa: E731
        spawner.start(argv, name="nginx", ready=ready)

    def get(self, priority: str | None = None, headers: dict[str, str] | None = None):
        sent = dict(headers or {}) | ({} if priority is None else {"X-Priority-Class": priority})
        return http_get("127.0.0.1", self.port, "/v1/images", sent)


def listening(port: int) -> bool:
    """Whether something accepts connections on loopback `port` (raises OSError until then)."""
    with socket.create_connection(("127.0.0.1", port), timeout=1):
        return True


def assert_busy(answer, states: set[str]) -> None:
    """503 with a whole-second Retry-After and gpuwatch's headers carried over from the auth answer."""
    assert answer.status == 503, answer
    assert int(answer.headers["retry-after"]) >= 1
    assert answer.headers["x-gpuwatch-state"] in states
    assert answer.headers["x-gpuwatch-reason"]
    assert 0 <= float(answer.headers["x-gpuwatch-pressure"]) <= 1
    body = json.loads(answer.body)
    assert body == {"error": "gpu_busy", "state": answer.headers["x-gpuwatch-state"]}


class TestNginxAuthRequest:
    """Requests pass while the GPUs are cool; once gpuwatch sheds their class, clients get 503."""

    @pytest.mark.slow
    def test_cooling_fault_turns_200_into_503_with_retry_after(self, spawner, gpuwatch_serve):
        daemon = gpuwatch_serve(cooling_fault(FAULT_AT_S))
        daemon.wait_for_state("ok", timeout_s=FAULT_AT_S)
        nginx = Nginx(spawner, daemon.web_port)
        cool = nginx.get()
        assert (cool.status, cool.body) == (200, b"generated\n")
        # Polled through nginx, each 200 would be a job taking a slot: wait on /v1/state instead,
        # so the 503 comes from the heat, not from this test's own admissions.
        daemon.wait_for_state("hot", "critical", timeout_s=30.0)
        assert_busy(nginx.get(), {"hot", "critical"})

    def test_hot_node_holds_back_default_and_admits_critical(self, spawner, hot_node):
        nginx = Nginx(spawner, hot_node.web_port)
        assert_busy(nginx.get(), {"hot"})
        assert_busy(nginx.get("sheddable"), {"hot"})
        assert nginx.get("critical").status == 200

    def test_cool_node_admits_every_class(self, spawner, cool_node):
        nginx = Nginx(spawner, cool_node.web_port)
        assert [nginx.get(c).status for c in (None, "critical", "default", "sheddable")] == [200] * 4

    def test_unreachable_gpuwatch_fails_closed_with_500(self, spawner):
        nginx = Nginx(spawner, free_port())
        assert nginx.get().status == 500


def transcript(line: str) -> None:
    """One line of the test's printed summary (`pytest -s` shows it)."""
    print(f"  {line}", flush=True)  # noqa: T201 - the transcript is the test's report


class TestNginxPassesTheLease:
    """README's block passes each admission's lease upstream; the application's release ends it."""

    def test_the_application_releases_the_lease_nginx_passed_upstream(self, spawner, lease_node):
        app = LeaseReleasingApp(lease_node.url)
        try:
            nginx = Nginx(spawner, lease_node.web_port, app_port=app.port)
            answers = [nginx.get() for _ in range(3)]
            forged = nginx.get(headers={"X-GPUWatch-Lease": "ForgedByTheClient00000"})
        finally:
            app.close()
        transcript(
            "nginx auth_request -> gpuwatch /v1/admit/nginx; proxied to an app that releases the lease"
        )
        seen = [json.loads(answer.body) for answer in [*answers, forged]]
        for number, (answer, body) in enumerate(zip([*answers, forged], seen, strict=True), start=1):
            assert answer.status == 200
            assert body["lease"] is not None, "the app got no X-GPUWatch-Lease"
            assert well_formed(body["lease"]), body
            assert body["release"] == "released", body
            assert 0 <= body["held_s"] < 5
            transcript(
                f"request {number}: HTTP {answer.status}, upstream got X-GPUWatch-Lease {body['lease']}, "
                f"its release: {body['release']} after {body['held_s']:g} s"
            )
        leases = [body["lease"] for body in seen]
        assert len(set(leases)) == 4  # one lease per request
        assert leases[-1] != "ForgedByTheClient00000"  # nginx replaced the client's header
        transcript("request 4 sent its own X-GPUWatch-Lease: nginx replaced it with gpuwatch's")
        again = [lease_node.release(lease).status for lease in leases]
        assert again == [404] * 4
        transcript(f"gpuwatch, the same leases released again: {' '.join(map(str, again))}")
        assert lease_node.wait_open_leases(0) == 0
        transcript(f"gpuwatch /v1/state, open leases: {lease_node.open_leases()}")
