"""Shared helpers for the role/issue/cert tests: a backend on in-memory storage with a CA in it.

The CA is built here with cryptography and stored through the engine's own key/issuer stores, so these
tests depend only on the issuer record format, not on the CA-generation paths.
"""
from __future__ import annotations

import asyncio
import base64
import datetime as dt
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path as FsPath
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import NameOID

from engine.backend import build_backend
from engine.issuers import IssuerRecord, IssuerStore
from engine.keys import KeyRecord
from engine.storage import InMemoryStorage
from plugin.framework import Backend, Operation, Request, StaticSystemView

DAY = 86400
LINTER = FsPath(sys.executable).parent / "lint_pkix_cert"

# One key per type for the whole session: RSA generation is the slow part of a CA.
_CA_KEYS: dict[str, Any] = {}


def ca_key(kind: str) -> Any:
    if kind not in _CA_KEYS:
        if kind == "rsa":
            _CA_KEYS[kind] = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        elif kind == "ec":
            _CA_KEYS[kind] = ec.generate_private_key(ec.SECP256R1())
        elif kind == "ec384":
            _CA_KEYS[kind] = ec.generate_private_key(ec.SECP384R1())
        else:
            _CA_KEYS[kind] = ed25519.Ed25519PrivateKey.generate()
    return _CA_KEYS[kind]


def make_ca_cert(key: Any, cn: str = "Test Root CA", days: int = 3650, issuer_cert: x509.Certificate | None = None,
                 issuer_key: Any = None) -> x509.Certificate:
    now = dt.datetime.now(dt.timezone.utc)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    signer_key = issuer_key or key
    builder = (x509.CertificateBuilder().subject_name(subject)
               .issuer_name(issuer_cert.subject if issuer_cert else subject)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=days))
               .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
               .add_extension(x509.KeyUsage(True, False, False, False, False, True, True, False, False), True)
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(signer_key.public_key()), False))
    alg = None if isinstance(signer_key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    return builder.sign(signer_key, alg)


@dataclass
class Env:
    backend: Backend
    storage: InMemoryStorage = field(default_factory=InMemoryStorage)
    system: StaticSystemView = field(default_factory=lambda: StaticSystemView(default_ttl=32 * DAY,
                                                                                max_ttl=3650 * DAY))
    entity_id: str = ""

    def call(self, op: Operation, path: str, data: dict[str, Any] | None = None) -> Any:
        req = Request(operation=op, path=path, storage=self.storage, system=self.system, data=dict(data or {}),
                      entity_id=self.entity_id)
        return asyncio.run(self.backend.handle(req))

    def write(self, path: str, data: dict[str, Any] | None = None) -> Any:
        return self.call(Operation.UPDATE, path, data)

    def ok(self, path: str, data: dict[str, Any] | None = None, op: Operation = Operation.UPDATE) -> Any:
        out = self.call(op, path, data)
        assert out.error is None, out.error
        assert out.response is not None and not out.response.is_error, out.response and out.response.data
        return out.response

    def err(self, path: str, data: dict[str, Any] | None = None, op: Operation = Operation.UPDATE) -> str:
        """The 400 message of a request expected to fail, asserting storage did not change."""
        before = self.storage.snapshot()
        out = self.call(op, path, data)
        assert self.storage.snapshot() == before, "a rejected request changed storage"
        assert out.response is not None and out.response.is_error, out.response and out.response.data
        return out.response.data["error"]

    def add_issuer(self, kind: str = "ec", name: str = "root", days: int = 3650, default: bool = True,
                   behavior: str = "err", usage: set[str] | None = None,
                   cert: x509.Certificate | None = None, key: Any = None) -> IssuerRecord:
        key = key or ca_key(kind)
        cert = cert or make_ca_cert(key, cn=f"{name} CA", days=days)
        ctx = self.backend.pki_context  # type: ignore[attr-defined]

        async def go() -> IssuerRecord:
            keys = ctx.keys(self.storage)
            record = KeyRecord.from_private_key(key, name=f"{name}-key")
            await keys.put(record)
            issuers: IssuerStore = ctx.issuers(self.storage)
            rec = IssuerRecord(id=IssuerStore.new_id(), name=name, key_id=record.id,
                               certificate_pem=cert.public_bytes(serialization.Encoding.PEM).decode(),
                               leaf_not_after_behavior=behavior)
            if usage is not None:
                rec.usage = set(usage)
            await issuers.put(rec)
            if default:
                await issuers.set_default(rec.id)
            return rec
        return asyncio.run(go())


def new_env(**kwargs: Any) -> Env:
    return Env(backend=build_backend(), **kwargs)


def load_cert(pem_or_b64: str) -> x509.Certificate:
    if pem_or_b64.startswith("-----"):
        return x509.load_pem_x509_certificate(pem_or_b64.encode())
    return x509.load_der_x509_certificate(base64.b64decode(pem_or_b64))


def make_csr(key: Any = None, cn: str | None = "csr.example.com", dns: list[str] | None = None,
             extra: list[tuple[x509.ExtensionType, bool]] | None = None,
             attrs: list[x509.NameAttribute] | None = None) -> str:
    key = key or ec.generate_private_key(ec.SECP256R1())
    names = list(attrs or [])
    if cn is not None:
        names.append(x509.NameAttribute(NameOID.COMMON_NAME, cn))
    builder = x509.CertificateSigningRequestBuilder().subject_name(x509.Name(names))
    if dns:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in dns]), False)
    for ext, critical in extra or []:
        builder = builder.add_extension(ext, critical)
    alg = None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    return builder.sign(key, alg).public_bytes(serialization.Encoding.PEM).decode()


def lint_errors(cert: x509.Certificate) -> str:
    """pkilint's RFC 5280 findings at ERROR severity ('' when clean)."""
    with tempfile.NamedTemporaryFile("wb", suffix=".pem", delete=False) as fh:
        fh.write(cert.public_bytes(serialization.Encoding.PEM))
    out = subprocess.run([str(LINTER), "lint", "-s", "ERROR", fh.name], capture_output=True, text=True)
    FsPath(fh.name).unlink()
    return out.stdout.strip()
