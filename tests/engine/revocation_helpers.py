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
from plugin.framework import Backend, Operation, Request, StaticSystemView

BIN = FsPath(sys.executable).parent
YEAR = 365 * 86400


@dataclass
class Reply:
    status: int
    data: dict[str, Any] | None
    warnings: list[str] = field(default_factory=list)

    @property
    def error(self) -> str:
        return (self.data or {}).get("error", "")

    @property
    def body(self) -> bytes:
        return (self.data or {}).get("http_raw_body", b"")


@dataclass
class AsyncMount:
    backend: Backend = field(default_factory=build_backend)
    storage: InMemoryStorage = field(default_factory=InMemoryStorage)
    system: StaticSystemView = field(default_factory=lambda: StaticSystemView(max_ttl=10 * YEAR))

    async def call(self, op: Operation, path: str, data: dict[str, Any] | None = None) -> Reply:
        req = Request(operation=op, path=path, storage=self.storage, system=self.system, data=data or {})
        out = await self.backend.handle(req)
        if out.error is not None:
            return Reply(out.error.status, {"error": out.error.message})
        resp = out.response
        if resp is None:
            return Reply(204 if op not in (Operation.READ, Operation.LIST) else 404, None)
        if resp.is_error:
            return Reply(400, resp.data, resp.warnings)
        if resp.data and "http_status_code" in resp.data:
            return Reply(resp.data["http_status_code"], resp.data, resp.warnings)
        return Reply(200, resp.data, resp.warnings)

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
