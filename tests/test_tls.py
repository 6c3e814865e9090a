"""TLS on the SMTP listeners: 1.2 or newer only, forward-secret AEAD suites, a private
self-signed key by default, and a clear refusal of unusable certificate settings."""

from __future__ import annotations

import smtplib
import socket
import ssl
import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest

from adapters.config import Settings
from adapters.tls import TlsConfigError, certificate_paths, server_context
from tests.conftest import make_settings
from tests.smtp_support import client_context, running_smtp
from tests.test_cli import LEDGERMAIL, command_env, free_port


def handshake(port: int, context: ssl.SSLContext) -> ssl.SSLSocket:
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    return context.wrap_socket(raw, server_hostname="localhost")


def old_protocol_client(version: ssl.TLSVersion) -> ssl.SSLContext:
    context = client_context()
    context.minimum_version = version
    context.maximum_version = version
    context.set_ciphers("ALL:@SECLEVEL=0")  # let the client offer what it would
    return context


pytestmark = [
    pytest.mark.parametrize("backend", ["sqlite"], indirect=True),
    # The point is to offer the deprecated versions and watch the server refuse them.
    pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1:DeprecationWarning"),
]


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1])
def test_tls_10_and_11_handshakes_are_refused_on_implicit_tls(store: Any, version: ssl.TLSVersion) -> None:
    with running_smtp(store) as server, pytest.raises((ssl.SSLError, ConnectionResetError)):
        handshake(server.submissions, old_protocol_client(version)).close()


def test_tls_12_gets_an_ecdhe_aead_suite_and_tls_13_works(store: Any) -> None:
    with running_smtp(store) as server:
        context = client_context()
        context.maximum_version = ssl.TLSVersion.TLSv1_2
        with handshake(server.submissions, context) as tls:
            name, version, _ = tls.cipher()
            assert version == "TLSv1.2"
            assert name.startswith("ECDHE-") and ("GCM" in name or "CHACHA20" in name), name
            assert tls.recv(100).startswith(b"220 ")
        with handshake(server.submissions, client_context()) as tls:
            assert tls.version() == "TLSv1.3"


def test_starttls_refuses_tls_11_too(store: Any) -> None:
    with running_smtp(store) as server, smtplib.SMTP("127.0.0.1", server.submission, timeout=10) as client:
        client.ehlo("t.test")
        with pytest.raises((ssl.SSLError, smtplib.SMTPServerDisconnected, ConnectionResetError)):
            client.starttls(context=old_protocol_client(ssl.TLSVersion.TLSv1_1))


def test_the_self_signed_key_is_private_and_made_once(settings: Settings) -> None:
    cert, key = certificate_paths(settings)
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert key.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    first = cert.read_bytes()
    assert certificate_paths(settings) == (cert, key)
    assert cert.read_bytes() == first
    assert server_context(settings).minimum_version == ssl.TLSVersion.TLSv1_2


def test_a_configured_certificate_that_cannot_load_is_refused(tmp_path: Path, backend: str) -> None:
    only_cert = make_settings(tmp_path / "a", backend, tls={"cert_file": str(tmp_path / "x.pem")})
    with pytest.raises(TlsConfigError, match="both tls.cert_file and tls.key_file"):
        server_context(only_cert)
    missing = make_settings(tmp_path / "b", backend,
                            tls={"cert_file": str(tmp_path / "x.pem"), "key_file": str(tmp_path / "x.key")})
    with pytest.raises(TlsConfigError, match="not found"):
        server_context(missing)
    (tmp_path / "junk.pem").write_text("not a certificate")
    junk_file = str(tmp_path / "junk.pem")
    junk = make_settings(tmp_path / "c", backend, tls={"cert_file": junk_file, "key_file": junk_file})
    with pytest.raises(TlsConfigError, match="cannot load"):
        server_context(junk)


def test_serve_with_a_missing_certificate_is_a_one_line_error(settings: Settings, tmp_path: Path) -> None:
    config = tmp_path / "tls.toml"
    config.write_text(f'[tls]\ncert_file = "{tmp_path}/none.pem"\nkey_file = "{tmp_path}/none.key"\n')
    env = command_env(settings)
    for name in ("http", "smtp", "submission", "submissions"):
        env[f"LEDGERMAIL_LISTEN__{name.upper()}"] = f"127.0.0.1:{free_port()}"
    result = subprocess.run([str(LEDGERMAIL), "--config", str(config), "serve"], env=env,
                            capture_output=True, timeout=60, check=False)
    assert result.returncode == 1
    assert result.stderr.decode() == f"ledgermail: error: TLS file not found: {tmp_path}/none.pem\n"
    assert b"Traceback" not in result.stderr
    assert len(result.stderr.decode().strip().splitlines()) == 1
