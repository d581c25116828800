"""An in-memory mount driven on one event loop (tidy runs as a background task), plus CA/leaf helpers."""
from __future__ import annotations

import datetime as dt
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path as FsPath
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from engine.backend import build_backend
from engine.storage import InMemoryStorage
from ca_helpers import Reply, reply_of  # noqa: F401 - Reply is re-exported for the tests
from plugin.framework import Backend, Operation, Request, StaticSystemView

BIN = FsPath(sys.executable).parent
YEAR = 365 * 86400


@dataclass
class AsyncMount:
    backend: Backend = field(default_factory=build_backend)
    storage: InMemoryStorage = field(default_factory=InMemoryStorage)
    system: StaticSystemView = field(default_factory=lambda: StaticSystemView(max_ttl=10 * YEAR))

    async def call(self, op: Operation, path: str, data: dict[str, Any] | None = None) -> Reply:
        req = Request(operation=op, path=path, storage=self.storage, system=self.system, data=data or {})
        return reply_of(op, await self.backend.handle(req))

    async def write(self, path: str, **data: Any) -> Reply:
        return await self.call(Operation.UPDATE, path, data)

    async def read(self, path: str, **data: Any) -> Reply:
        return await self.call(Operation.READ, path, data)

    async def ok(self, path: str, **data: Any) -> dict[str, Any]:
        reply = await self.write(path, **data)
        assert reply.status == 200, (reply.status, reply.data)
        return reply.data or {}

    async def setup_ca(self, **role: Any) -> dict[str, Any]:
        root = await self.ok("root/generate/internal", common_name="Revocation Root", key_type="ec", ttl="87600h")
        await self.ok("roles/r", allow_any_name=True, key_type="ec", ttl="1h", **role)
        return root

    async def issue(self, cn: str = "a.example.com", role: str = "r", **extra: Any) -> dict[str, Any]:
        return await self.ok(f"issue/{role}", common_name=cn, **extra)

    async def periodic(self) -> None:
        await self.backend.handle(Request(operation=Operation.ROLLBACK, path="", storage=self.storage,
                                          system=self.system))


def pem_cert(pem: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate(pem.encode())


def crl_of(reply: Reply) -> x509.CertificateRevocationList:
    assert reply.status == 200, reply
    return x509.load_der_x509_crl(reply.body)


def foreign_ca_leaf(days: int = 30, expired: bool = False) -> str:
    """A leaf signed by a CA that is not in any mount."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Foreign CA")])
    now = dt.datetime.now(dt.timezone.utc)
    start = now - dt.timedelta(days=2 * days) if expired else now - dt.timedelta(minutes=1)
    leaf = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "x.test")]))
            .issuer_name(name).public_key(ec.generate_private_key(ec.SECP256R1()).public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(start)
            .not_valid_after(start + dt.timedelta(days=days)).sign(key, hashes.SHA256()))
    return leaf.public_bytes(serialization.Encoding.PEM).decode()


def run_tool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), capture_output=True, text=True)
