"""Credentials of the embedded API server: a self-signed certificate and a random bearer token.

kubectl sends no credentials to an `http://` server, so the server speaks TLS. Go rejects a
certificate without a subjectAltName, hence SAN IP:127.0.0.1 (plus the listen address and
`localhost`). The certificate is its own CA; its PEM goes into the kubeconfig's
`certificate-authority-data`. The key never leaves memory and the state directory.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import secrets
import ssl
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass(frozen=True, slots=True)
class Credentials:
    cert_pem: bytes
    key_pem: bytes
    token: str


def new_token() -> str:
    return secrets.token_urlsafe(32)


def generate(*, hosts: tuple[str, ...] = ("127.0.0.1",), valid_days: int = 365) -> Credentials:
    """A fresh P-256 key, a self-signed serving certificate for `hosts`, and a bearer token."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kuberunner-apiserver")])
    sans: list[x509.GeneralName] = [x509.DNSName("localhost")]
    for host in dict.fromkeys(("127.0.0.1", *hosts)):
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            sans.append(x509.DNSName(host))
    now = dt.datetime.now(dt.UTC)
    public = key.public_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=valid_days))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )
    return Credentials(
        cert_pem=cert.public_bytes(serialization.Encoding.PEM),
        key_pem=key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ),
        token=new_token(),
    )


def server_context(creds: Credentials, directory: Path) -> ssl.SSLContext:
    """An SSLContext for the server. `load_cert_chain` wants files: they are written with mode 0600
    under `directory` and removed again at once."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    directory.mkdir(parents=True, exist_ok=True)
    cert_file = directory / "apiserver.crt"
    key_file = directory / "apiserver.key"
    try:
        for path, data in ((cert_file, creds.cert_pem), (key_file, creds.key_pem)):
            path.touch(mode=0o600)
            path.chmod(0o600)
            path.write_bytes(data)
        context.load_cert_chain(cert_file, key_file)
    finally:
        cert_file.unlink(missing_ok=True)
        key_file.unlink(missing_ok=True)
    context.set_alpn_protocols(["http/1.1"])
    return context
