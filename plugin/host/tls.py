"""AutoMTLS for the plugin link.

The server's client certificate is ECDSA P-521/SHA-512, which BoringSSL (PyPI grpcio) never requests, so
the whole link runs on Python's `ssl` (OpenSSL) under our own HTTP/2 layer. Each start makes a fresh key and a
short-lived self-signed certificate; the same certificate is our client certificate when we dial the
server's brokered services, hence SAN localhost and both TLS EKUs.
"""
from __future__ import annotations

import base64
import datetime as dt
import os
import ssl
import tempfile
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass(frozen=True)
class Identity:
    cert_pem: bytes
    key_pem: bytes
    cert_der: bytes

    @property
    def handshake_cert(self) -> str:
        """Base64 of the DER without padding: the server decodes it with Go's RawStdEncoding."""
        return base64.b64encode(self.cert_der).decode().rstrip("=")


def make_identity() -> Identity:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.timezone.utc)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost"),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, "python-pki plugin")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(seconds=30))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_encipherment=False, content_commitment=False,
                                     data_encipherment=False, key_agreement=True, key_cert_sign=True,
                                     crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                       critical=False)
        .sign(key, hashes.SHA256())
    )
    return Identity(
        cert_pem=cert.public_bytes(serialization.Encoding.PEM),
        key_pem=key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()),
        cert_der=cert.public_bytes(serialization.Encoding.DER),
    )


def _load_chain(ctx: ssl.SSLContext, ident: Identity) -> None:
    # load_cert_chain only reads files; keep the key file private and gone right after loading.
    fd, path = tempfile.mkstemp(prefix="python-pki-", suffix=".pem")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(ident.key_pem + ident.cert_pem)
        ctx.load_cert_chain(path)
    finally:
        os.unlink(path)


def server_context(ident: Identity, client_ca_pem: str) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    _load_chain(ctx, ident)
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_verify_locations(cadata=client_ca_pem)
    ctx.set_alpn_protocols(["h2"])
    return ctx


def client_context(ident: Identity, server_ca_pem: str) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    _load_chain(ctx, ident)
    ctx.load_verify_locations(cadata=server_ca_pem)
    ctx.check_hostname = True
    ctx.set_alpn_protocols(["h2"])
    return ctx
