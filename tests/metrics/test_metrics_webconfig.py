"""--web.config.file: exporter-toolkit's YAML read and checked, every problem naming file, line and key."""

from __future__ import annotations

import re
import ssl
from pathlib import Path

import pytest
from serve_helpers import run_serve
from tls_helpers import Authority, bcrypt_hash

from gpuwatch.exposure.webconfig import WebConfigError, load_web_config

QUICK = (
    "--source=sim:1xH100",
    "--interval=0.1",
    "--web.listen-address=127.0.0.1:0",
    "--agent.listen-address=",
)


@pytest.fixture
def certs(tmp_path) -> dict[str, Path]:
    server_ca, client_ca = Authority(tmp_path, "server-ca"), Authority(tmp_path, "client-ca")
    server = server_ca.issue("server", "gpuwatch-server", server=True)
    return {"cert": server.cert, "key": server.key, "client_ca": client_ca.issued.cert}


def write(folder: Path, text: str) -> Path:
    path = folder / "web.yml"
    path.write_text(text)
    return path


def refused(folder: Path, text: str) -> str:
    with pytest.raises(WebConfigError) as caught:
        load_web_config(write(folder, text))
    return str(caught.value)


class TestAccepted:
    """What exporter-toolkit accepts, gpuwatch accepts, with its defaults."""

    def test_empty_file_is_plain_http_without_users(self, tmp_path):
        config = load_web_config(write(tmp_path, ""))
        assert config.tls is None
        assert dict(config.users) == {}

    def test_full_config(self, tmp_path, certs):
        hashed = bcrypt_hash("s3cret")
        config = load_web_config(
            write(
                tmp_path,
                f"""# node_exporter's file works as it is
tls_server_config:
  cert_file: {certs["cert"].name}
  key_file: {certs["key"].name}
  client_auth_type: RequireAndVerifyClientCert
  client_ca_file: {certs["client_ca"]}
  min_version: TLS13
http_server_config:
  http2: true
basic_auth_users:
  prometheus: {hashed}
""",
            )
        )
        assert config.tls is not None
        assert config.tls.cert_file == tmp_path / "server.crt"  # relative to the config file
        assert config.tls.client_auth_type == "RequireAndVerifyClientCert"
        assert config.tls.min_version is ssl.TLSVersion.TLSv1_3
        context = config.tls.context()
        assert context.verify_mode is ssl.CERT_REQUIRED
        assert context.minimum_version is ssl.TLSVersion.TLSv1_3
        assert dict(config.users) == {"prometheus": hashed.encode()}

    def test_tls_defaults(self, tmp_path, certs):
        config = load_web_config(
            write(tmp_path, f"tls_server_config:\n  cert_file: {certs['cert']}\n  key_file: {certs['key']}\n")
        )
        assert config.tls is not None
        context = config.tls.context()
        assert context.verify_mode is ssl.CERT_NONE
        assert context.minimum_version is ssl.TLSVersion.TLSv1_2


class TestRefused:
    """A malformed config is refused with the file, the line and the key."""

    def test_unknown_top_level_key(self, tmp_path):
        message = refused(tmp_path, "basic_auth_users: {}\ntls_config:\n  cert_file: x\n")
        assert message.startswith(f"{tmp_path / 'web.yml'}:2: tls_config: unknown key")

    def test_not_yaml(self, tmp_path):
        assert refused(tmp_path, "tls_server_config:\n  cert_file: [oops\n").startswith(
            f"{tmp_path / 'web.yml'}:"
        )

    def test_missing_key_file(self, tmp_path, certs):
        message = refused(tmp_path, f"tls_server_config:\n  cert_file: {certs['cert']}\n")
        assert "tls_server_config.key_file: missing" in message

    def test_unreadable_certificate(self, tmp_path, certs):
        message = refused(
            tmp_path, f"tls_server_config:\n  cert_file: nope.crt\n  key_file: {certs['key']}\n"
        )
        assert f"web.yml:2: tls_server_config.cert_file: cannot read {tmp_path / 'nope.crt'}" in message

    def test_key_that_is_not_a_key(self, tmp_path, certs):
        message = refused(
            tmp_path, f"tls_server_config:\n  cert_file: {certs['cert']}\n  key_file: {certs['client_ca']}\n"
        )
        assert "web.yml:3: tls_server_config.key_file:" in message
        assert message.endswith(f"{certs['client_ca']} holds no PEM private key")

    def test_key_of_another_certificate(self, tmp_path, certs):
        other = Authority(tmp_path, "other").issue("other", "other", server=True)
        message = refused(
            tmp_path, f"tls_server_config:\n  cert_file: {certs['cert']}\n  key_file: {other.key}\n"
        )
        assert "tls_server_config.key_file: " in message
        assert "does not load as the key of" in message

    @pytest.mark.parametrize("value", ["RequestClientCert", "RequireAnyClientCert"])
    def test_client_certificates_asked_for_but_not_verified(self, tmp_path, certs, value):
        text = f"tls_server_config:\n  cert_file: {certs['cert']}\n  key_file: {certs['key']}\n"
        message = refused(tmp_path, text + f"  client_auth_type: {value}\n")
        assert (
            f"web.yml:4: tls_server_config.client_auth_type: {value} asks for a client certificate" in message
        )

    def test_unknown_client_auth_type(self, tmp_path, certs):
        text = f"tls_server_config:\n  cert_file: {certs['cert']}\n  key_file: {certs['key']}\n"
        assert "unknown value 'Always'" in refused(tmp_path, text + "  client_auth_type: Always\n")

    def test_verifying_without_a_client_ca(self, tmp_path, certs):
        text = f"tls_server_config:\n  cert_file: {certs['cert']}\n  key_file: {certs['key']}\n"
        message = refused(tmp_path, text + "  client_auth_type: RequireAndVerifyClientCert\n")
        assert "tls_server_config.client_ca_file: missing" in message

    def test_client_ca_that_would_be_ignored(self, tmp_path, certs):
        text = f"tls_server_config:\n  cert_file: {certs['cert']}\n  key_file: {certs['key']}\n"
        message = refused(tmp_path, text + f"  client_ca_file: {certs['client_ca']}\n")
        assert "tls_server_config.client_auth_type: is NoClientCert although client_ca_file is set" in message

    def test_unknown_tls_version(self, tmp_path, certs):
        text = f"tls_server_config:\n  cert_file: {certs['cert']}\n  key_file: {certs['key']}\n"
        assert "web.yml:4: tls_server_config.min_version: unknown TLS version 'TLS1.2'" in refused(
            tmp_path, text + "  min_version: TLS1.2\n"
        )

    def test_toolkit_keys_gpuwatch_does_not_implement(self, tmp_path, certs):
        text = f"tls_server_config:\n  cert_file: {certs['cert']}\n  key_file: {certs['key']}\n"
        message = refused(tmp_path, text + "  cipher_suites: [TLS_AES_128_GCM_SHA256]\n")
        assert "web.yml:4: tls_server_config.cipher_suites: not supported by gpuwatch" in message

    def test_password_instead_of_a_hash(self, tmp_path):
        message = refused(tmp_path, "basic_auth_users:\n  alice: $2b$12$ok\n  bob: hunter2\n")
        assert "web.yml:2: basic_auth_users.alice: expected a bcrypt hash" in message

    def test_users_not_a_mapping(self, tmp_path):
        assert "web.yml:1: basic_auth_users: expected a mapping" in refused(
            tmp_path, "basic_auth_users: [alice]\n"
        )


class TestServeRefusesAtStart:
    """`gpuwatch serve` with a bad web config exits 2 at once, naming the key."""

    def test_bad_key(self, tmp_path):
        config = write(tmp_path, "basic_auth_users:\n  prometheus: not-a-hash\n")
        result = run_serve(*QUICK, f"--state-dir={tmp_path}", f"--web.config.file={config}")
        assert result.returncode == 2
        assert (
            f"gpuwatch: --web.config.file: {config}:2: basic_auth_users.prometheus: expected a bcrypt hash"
            in (result.stderr)
        )

    def test_missing_file(self, tmp_path):
        result = run_serve(*QUICK, f"--state-dir={tmp_path}", f"--web.config.file={tmp_path / 'absent.yml'}")
        assert result.returncode == 2
        assert "cannot read the web config" in result.stderr

    def test_environment_variable(self, tmp_path, monkeypatch):
        monkeypatch.setenv(
            "GPUWATCH_WEB_CONFIG_FILE", str(write(tmp_path, "tls_server_config:\n  cert_file: a\n"))
        )
        result = run_serve(*QUICK, f"--state-dir={tmp_path}")
        assert result.returncode == 2
        assert "tls_server_config.key_file: missing" in result.stderr


class TestReadmeExample:
    """The web config shown in docs/metrics.md loads (with real certificate files in its paths)."""

    def test_readme_example_loads(self, tmp_path, certs):
        page = (Path(__file__).resolve().parents[2] / "docs" / "metrics.md").read_text()
        blocks = re.findall(r"```yaml\n(.*?)```", page, re.DOTALL)
        example = next(
            block for block in blocks if "basic_auth_users" in block and "tls_server_config" in block
        )
        for name, path in (
            ("tls.crt", certs["cert"]),
            ("tls.key", certs["key"]),
            ("clients-ca.crt", certs["client_ca"]),
        ):
            example = example.replace(f"/etc/gpuwatch/{name}", str(path))
        config = load_web_config(write(tmp_path, example))
        assert config.tls is not None
        assert config.tls.client_auth_type == "RequireAndVerifyClientCert"
        assert set(config.users) == {"prometheus"}
