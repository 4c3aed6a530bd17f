"""TLS, mutual TLS and basic auth from --web.config.file on every HTTP route, and their reload."""

from __future__ import annotations

import asyncio
import base64
import http.client
import socket
import ssl
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from serve_helpers import TIMEOUT_S, ServerThread, get, gpu, node, split_responses
from tls_helpers import Authority, bcrypt_hash, client_context, peer_common_name

from gpuwatch.exposure.http.auth import BasicAuth, Verdict, credentials
from gpuwatch.exposure.http.server import WebOptions
from gpuwatch.exposure.webconfig import load_web_config
from gpuwatch.exposure.webwatch import WebSecurity


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def https_get(port: int, path: str, context: ssl.SSLContext, headers: dict[str, str] | None = None):
    connection = http.client.HTTPSConnection("127.0.0.1", port, timeout=TIMEOUT_S, context=context)
    try:
        connection.request("GET", path, headers=headers or {})
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        connection.close()


def serving(config_path: Path) -> ServerThread:
    security = WebSecurity(config_path, load_web_config(config_path))
    return ServerThread(node(gpu(0)), web=WebOptions(security=security))


@pytest.fixture
def pki(tmp_path):
    server_ca, client_ca, stranger = (
        Authority(tmp_path, name) for name in ("server-ca", "client-ca", "stranger")
    )
    return {
        "server_ca": server_ca,
        "server": server_ca.issue("server", "gpuwatch-1", server=True),
        "client_ca": client_ca,
        "client": client_ca.issue("client", "prometheus", server=False),
        "stranger": stranger.issue("stranger-client", "mallory", server=False),
    }


def tls_config(folder: Path, pki, extra: str = "") -> Path:
    path = folder / "web.yml"
    path.write_text(
        f"tls_server_config:\n  cert_file: {pki['server'].cert}\n  key_file: {pki['server'].key}\n{extra}"
    )
    return path


class TestTls:
    """HTTPS with the configured certificate on every route; plain HTTP is not spoken."""

    def test_https_with_a_generated_certificate(self, tmp_path, pki):
        context = client_context(pki["server_ca"].issued.cert)
        with serving(tls_config(tmp_path, pki)) as server:
            status, headers, body = https_get(server.http_port, "/metrics", context)
            assert status == 200
            assert headers["content-type"].startswith("text/plain; version=0.0.4")
            assert b"gpuwatch_node_state" in body
            assert https_get(server.http_port, "/v1/admit?class=default", context)[0] == 200
            assert peer_common_name(context, server.http_port) == "gpuwatch-1"

    def test_plain_http_is_refused(self, tmp_path, pki):
        with (
            serving(tls_config(tmp_path, pki)) as server,
            pytest.raises((http.client.HTTPException, OSError)),
        ):
            get(server.http_port, "/healthz")

    def test_min_version(self, tmp_path, pki):
        context = client_context(pki["server_ca"].issued.cert, maximum=ssl.TLSVersion.TLSv1_2)
        with serving(tls_config(tmp_path, pki, "  min_version: TLS13\n")) as server:
            with pytest.raises(ssl.SSLError):
                https_get(server.http_port, "/healthz", context)
            assert (
                https_get(server.http_port, "/healthz", client_context(pki["server_ca"].issued.cert))[0]
                == 200
            )

    def test_certificate_rotates_without_a_restart(self, tmp_path, pki):
        context = client_context(pki["server_ca"].issued.cert)
        with serving(tls_config(tmp_path, pki)) as server:
            assert peer_common_name(context, server.http_port) == "gpuwatch-1"
            renewed = pki["server_ca"].issue("renewed", "gpuwatch-1-renewed", server=True)
            # As certbot or cert-manager do: new files renamed over the old ones.
            renewed.key.replace(pki["server"].key)
            renewed.cert.replace(pki["server"].cert)
            deadline = time.monotonic() + 5.0
            while peer_common_name(context, server.http_port) != "gpuwatch-1-renewed":
                assert time.monotonic() < deadline, "the renewed certificate was not picked up within 5 s"
                time.sleep(0.1)


class TestMutualTls:
    """RequireAndVerifyClientCert: only clients with a certificate from the client CA get in."""

    @pytest.fixture
    def server(self, tmp_path, pki):
        extra = "  client_auth_type: RequireAndVerifyClientCert\n"
        extra += f"  client_ca_file: {pki['client_ca'].issued.cert}\n"
        with serving(tls_config(tmp_path, pki, extra)) as running:
            yield running

    def test_client_certificate_from_the_client_ca(self, server, pki):
        context = client_context(pki["server_ca"].issued.cert, pki["client"])
        assert https_get(server.http_port, "/metrics", context)[0] == 200

    def test_client_ca_rotates_without_a_restart(self, server, pki, tmp_path):
        server_ca = pki["server_ca"].issued.cert
        newcomer = Authority(tmp_path, "new-client-ca").issue("newcomer", "prometheus-2", server=False)
        (tmp_path / "new-client-ca.crt").replace(pki["client_ca"].issued.cert)
        deadline = time.monotonic() + 5.0
        while True:
            try:
                if https_get(server.http_port, "/healthz", client_context(server_ca, newcomer))[0] == 200:
                    break
            except (ssl.SSLError, ConnectionError, http.client.RemoteDisconnected):
                pass
            assert time.monotonic() < deadline, "the new client CA was not picked up within 5 s"
            time.sleep(0.1)
        with pytest.raises((ssl.SSLError, ConnectionError, http.client.RemoteDisconnected)):
            https_get(server.http_port, "/healthz", client_context(server_ca, pki["client"]))

    @pytest.mark.parametrize("client", [None, "stranger"])
    def test_no_or_foreign_certificate_is_refused(self, server, pki, client):
        context = client_context(pki["server_ca"].issued.cert, pki[client] if client else None)
        # TLS 1.3 reports the refused client certificate on the first read, not in the handshake.
        with pytest.raises((ssl.SSLError, ConnectionError, http.client.RemoteDisconnected)):
            https_get(server.http_port, "/metrics", context)


class TestBasicAuth:
    """basic_auth_users guards every route; a bcrypt check runs off the event loop."""

    @pytest.fixture
    def config(self, tmp_path):
        path = tmp_path / "web.yml"
        path.write_text(f"basic_auth_users:\n  prometheus: {bcrypt_hash('s3cret')}\n")
        return path

    @pytest.mark.parametrize("path", ["/metrics", "/v1/admit?class=default", "/v1/state", "/healthz", "/"])
    def test_accepted(self, config, path):
        with serving(config) as server:
            assert get(server.http_port, path, {"Authorization": basic("prometheus", "s3cret")}).status == 200

    @pytest.mark.parametrize(
        "authorization",
        [None, basic("prometheus", "wrong"), basic("nobody", "s3cret"), "Basic !!!", "Bearer abc"],
        ids=["none", "wrong-password", "unknown-user", "not-base64", "other-scheme"],
    )
    def test_refused(self, config, authorization):
        with serving(config) as server:
            answer = get(
                server.http_port,
                "/v1/admit?class=default",
                {"Authorization": authorization} if authorization else {},
            )
        assert answer.status == 401
        assert answer.headers["www-authenticate"].startswith("Basic")
        assert answer.json()["error"] == "unauthorized"

    def test_refused_admissions_are_not_counted(self, config):
        with serving(config) as server:
            get(server.http_port, "/v1/admit?class=default")
            assert sum(server.board.tally.counts) == 0

    def test_pipelined_answers_keep_their_order(self, config):
        login = basic("prometheus", "s3cret")
        requests = b"".join(
            f"GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: {login}\r\n\r\n".encode()
            for path in ("/v1/state", "/healthz", "/nope", "/readyz")
        )
        with (
            serving(config) as server,
            socket.create_connection(("127.0.0.1", server.http_port), TIMEOUT_S) as sock,
        ):
            sock.sendall(requests)
            received = b""
            while len(split_responses(received)) < 4:
                chunk = sock.recv(65536)
                assert chunk, "connection closed early"
                received += chunk
        statuses = [status.split()[1] for status, _headers, _body in split_responses(received)]
        assert statuses == [b"200", b"200", b"404", b"200"]

    def test_users_reload_when_the_file_changes(self, config):
        with serving(config) as server:
            assert (
                get(server.http_port, "/healthz", {"Authorization": basic("prometheus", "s3cret")}).status
                == 200
            )
            config.write_text(f"basic_auth_users:\n  prometheus: {bcrypt_hash('rotated')}\n")
            deadline = time.monotonic() + 5.0
            while (
                get(server.http_port, "/healthz", {"Authorization": basic("prometheus", "s3cret")}).status
                != 401
            ):
                assert time.monotonic() < deadline, "the new users were not picked up within 5 s"
                time.sleep(0.1)
            assert (
                get(server.http_port, "/healthz", {"Authorization": basic("prometheus", "rotated")}).status
                == 200
            )


class TestCredentialCheck:
    """The check itself: parsing, remembering verified headers, forgetting them on reload."""

    def test_credentials(self):
        assert credentials(basic("a", "b:c").encode()) == ("a", b"b:c")
        assert credentials(b"basic " + base64.b64encode(b"user:")) == ("user", b"")
        assert credentials(b"Basic " + base64.b64encode(b"no-colon")) is None
        assert credentials(None) is None

    def test_verified_header_is_remembered_until_reload(self, tmp_path):
        path = tmp_path / "web.yml"
        path.write_text(f"basic_auth_users:\n  prometheus: {bcrypt_hash('s3cret')}\n")
        security = WebSecurity(path, load_web_config(path))
        header = basic("prometheus", "s3cret").encode()

        async def scenario() -> list[object]:
            with ThreadPoolExecutor(1) as threads:
                auth = BasicAuth(security, threads)
                first = auth.check(header)
                verified = await first if isinstance(first, asyncio.Future) else first
                second = auth.check(header)
                path.write_text(f"basic_auth_users:\n  prometheus: {bcrypt_hash('other')}\n")
                security.refresh()
                third = auth.check(header)
                after_reload = await third if isinstance(third, asyncio.Future) else third
                return [verified, second, after_reload]

        assert asyncio.run(scenario()) == [True, Verdict.ALLOW, False]

    def test_unknown_user_takes_a_bcrypt_check_too(self, tmp_path):
        path = tmp_path / "web.yml"
        path.write_text(f"basic_auth_users:\n  prometheus: {bcrypt_hash('s3cret')}\n")
        security = WebSecurity(path, load_web_config(path))

        async def check() -> object:
            with ThreadPoolExecutor(1) as threads:
                return BasicAuth(security, threads).check(basic("mallory", "s3cret").encode())

        outcome = asyncio.run(check())
        assert isinstance(outcome, asyncio.Future)  # not refused at once: timing does not reveal users
