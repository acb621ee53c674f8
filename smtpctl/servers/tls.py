"""TLS for the submission server: given files, or a self-signed pair made once."""

from __future__ import annotations

import os
import ssl
from datetime import datetime, timedelta, timezone
from pathlib import Path

from smtpctl.core.model.errors import InvalidInput


def self_signed(folder: Path, hostname: str) -> tuple[Path, Path, bool]:
    """Return (cert, key, made_now): a self-signed pair in ``folder``, made on first use."""
    cert, key = folder / "selfsigned-cert.pem", folder / "selfsigned-key.pem"
    if cert.exists() and key.exists():
        return cert, key, False
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    private = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname)])
    now = datetime.now(timezone.utc)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name)
        .public_key(private.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=825))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(hostname), x509.DNSName("localhost")]),
                       critical=False)
        .sign(private, hashes.SHA256())
    )
    fd = os.open(key, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    cert.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    return cert, key, True


def server_context(cert: Path, key: Path) -> ssl.SSLContext:
    """A TLS 1.2+ server context; raises ``InvalidInput`` for unreadable or mismatched files."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(str(cert), str(key))
    except (OSError, ssl.SSLError) as exc:
        raise InvalidInput(f"cannot load the TLS certificate {cert} and key {key}: {exc}") from None
    return context
