"""Server TLS for every listener: TLS 1.2 or newer, forward-secret AEAD suites only.

RFC 8314 §4.1 and RFC 8997 set the floor at TLS 1.2 (BSI TR-02102-2 agrees); we state
``minimum_version`` explicitly rather than trusting OpenSSL's build default. Without a
configured certificate a self-signed one is made once in <data dir>/tls/, so the
embedded default starts with working STARTTLS and implicit TLS.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import ssl
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from adapters.config import Settings

#: TLS 1.2 suites: ECDHE key exchange with AES-GCM or ChaCha20-Poly1305 (TLS 1.3 suites
#: are all AEAD and forward-secret and are not affected by this string).
TLS12_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20:!aNULL:!eNULL:!MD5:!DSS"


class TlsConfigError(Exception):
    """The configured certificate or key cannot be used; the message says which."""


def certificate_paths(settings: Settings) -> tuple[Path, Path]:
    """The configured pair, or the self-signed pair (created when missing)."""
    if settings.tls.cert_file or settings.tls.key_file:
        if not (settings.tls.cert_file and settings.tls.key_file):
            raise TlsConfigError("set both tls.cert_file and tls.key_file, or neither")
        return Path(settings.tls.cert_file), Path(settings.tls.key_file)
    directory = settings.data_dir / "tls"
    cert, key = directory / "selfsigned.crt", directory / "selfsigned.key"
    if not (cert.exists() and key.exists()):
        write_self_signed(cert, key, settings.hostname)
    return cert, key


def write_self_signed(cert_path: Path, key_path: Path, hostname: str) -> None:
    cert_path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname)])
    now = datetime.datetime.now(datetime.UTC)
    alt_names: list[x509.GeneralName] = [x509.DNSName(hostname), x509.DNSName("localhost"),
                                         x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=825))
        .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_bytes = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption())
    # Written beside and renamed, so a crash never leaves half a key behind.
    for path, data, mode in ((key_path, key_bytes, 0o600),
                             (cert_path, cert.public_bytes(serialization.Encoding.PEM), 0o644)):
        partial = path.with_suffix(path.suffix + ".tmp")
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(partial, path)


def server_context(settings: Settings) -> ssl.SSLContext:
    cert, key = certificate_paths(settings)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers(TLS12_CIPHERS)
    context.options |= ssl.OP_NO_COMPRESSION | ssl.OP_CIPHER_SERVER_PREFERENCE
    for path in (cert, key):
        if not path.is_file():
            raise TlsConfigError(f"TLS file not found: {path}")
    try:
        context.load_cert_chain(cert, key)
    except (ssl.SSLError, OSError, ValueError) as error:
        raise TlsConfigError(f"cannot load TLS certificate {cert} and key {key}: {error}") from None
    return context
