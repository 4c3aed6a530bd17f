"""The tls_server_config of a web config: its settings and the server SSLContext built from them."""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

# exporter-toolkit's client_auth_type values that gpuwatch implements: each verifies what it asks for.
CLIENT_AUTH_TYPES = {
    "NoClientCert": ssl.CERT_NONE,
    "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
    "RequireAndVerifyClientCert": ssl.CERT_REQUIRED,
}
TLS_VERSIONS = {
    "TLS10": ssl.TLSVersion.TLSv1,
    "TLS11": ssl.TLSVersion.TLSv1_1,
    "TLS12": ssl.TLSVersion.TLSv1_2,
    "TLS13": ssl.TLSVersion.TLSv1_3,
}


@dataclass(frozen=True, slots=True)
class TlsSettings:
    """Where the server's certificate, key and client CAs are, and which clients and versions it takes."""

    cert_file: Path
    key_file: Path
    client_auth_type: str = "NoClientCert"
    client_ca_file: Path | None = None
    min_version: ssl.TLSVersion = ssl.TLSVersion.TLSv1_2
    max_version: ssl.TLSVersion | None = None
    prefer_server_cipher_suites: bool = False

    def files(self) -> tuple[Path, ...]:
        """The files the context is built from."""
        return (
            self.cert_file,
            self.key_file,
            *(() if self.client_ca_file is None else (self.client_ca_file,)),
        )

    def context(self) -> ssl.SSLContext:
        """A new server context; raises ssl.SSLError or OSError when a file does not load."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = self.min_version
        if self.max_version is not None:
            context.maximum_version = self.max_version
        context.load_cert_chain(self.cert_file, self.key_file)
        if self.client_ca_file is not None:
            context.load_verify_locations(cafile=self.client_ca_file)
        context.verify_mode = CLIENT_AUTH_TYPES[self.client_auth_type]
        if self.prefer_server_cipher_suites:
            context.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
        context.set_alpn_protocols(["http/1.1"])
        return context

    def problem(self) -> tuple[str, str] | None:
        """(key, sentence) for the first setting that cannot be used, else None."""
        expected = (
            ("cert_file", self.cert_file, b"-----BEGIN CERTIFICATE-----", "PEM certificate"),
            ("key_file", self.key_file, b"PRIVATE KEY-----", "PEM private key"),
            ("client_ca_file", self.client_ca_file, b"-----BEGIN CERTIFICATE-----", "PEM CA certificate"),
        )
        for key, path, marker, what in expected:
            if path is None:
                continue
            try:
                content = path.read_bytes()
            except OSError as exc:
                return key, f"cannot read {path}: {exc.strerror or exc}"
            if marker not in content:
                return key, f"{path} holds no {what}"
        if self.max_version is not None and self.max_version < self.min_version:
            return "max_version", "is below min_version"
        scratch = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        try:
            scratch.load_cert_chain(self.cert_file, self.key_file)
        except ssl.SSLError as exc:
            return "key_file", f"{self.key_file} does not load as the key of {self.cert_file}: {exc}"
        if self.client_ca_file is not None:
            try:
                scratch.load_verify_locations(cafile=self.client_ca_file)
            except ssl.SSLError as exc:
                return "client_ca_file", f"{self.client_ca_file} does not load as CA certificates: {exc}"
        return None
