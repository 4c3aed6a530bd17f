"""nginx `auth_request` in front of an app, asking a real `gpuwatch serve`: README's config, run."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from int_procs import Spawner, free_port, http_get
from int_readme import doc_block, with_addresses
from sim_nodes import cooling_fault

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
# The fault comes this long after gpuwatch starts: time to see the node cool and admitting, s.
FAULT_AT_S = 5.0


class Nginx:
    """nginx with README's server blocks and a stand-in app, on free loopback ports."""

    def __init__(self, spawner: Spawner, gpuwatch_port: int) -> None:
        self.port, app_port = free_port(), free_port()
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
        config = prefix / "nginx.conf"
        config.write_text(
            "worker_processes 1;\nevents { worker_connections 64; }\nhttp {\n    access_log off;\n"
            f"{temp_paths}\n{servers}\n"
            f'    server {{ listen 127.0.0.1:{app_port}; location / {{ return 200 "generated\\n"; }} }}\n}}\n'
        )
        argv = [NGINX, "-p", str(prefix), "-e", str(prefix / "error.log"), "-c", str(config)]
        argv += ["-g", f"daemon off; pid {prefix}/nginx.pid;"]
        ready = lambda: http_get("127.0.0.1", app_port, "/").status == 200  # noqa: E731
        spawner.start(argv, name="nginx", ready=ready)

    def get(self, priority: str | None = None):
        headers = {} if priority is None else {"X-Priority-Class": priority}
        return http_get("127.0.0.1", self.port, "/v1/images", headers)


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
