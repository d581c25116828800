"""Helpers for the CA lifecycle tests: a mount (backend + in-memory storage) driven through HTTP-level requests."""
from __future__ import annotations

import asyncio
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path as FsPath
from typing import Any

from cryptography import x509

from engine.backend import build_backend
from engine.storage import InMemoryStorage
from plugin.framework import Backend, Operation, Outcome, Request, StaticSystemView

LINTER = FsPath(sys.executable).parent / "lint_pkix_cert"
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


def reply_of(op: Operation, out: Outcome) -> Reply:
    """The HTTP status and body the server would make of a backend's outcome."""
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


@dataclass
class Mount:
    backend: Backend = field(default_factory=build_backend)
    storage: InMemoryStorage = field(default_factory=InMemoryStorage)
    system: StaticSystemView = field(default_factory=lambda: StaticSystemView(default_ttl=32 * 86400,
                                                                               max_ttl=10 * YEAR))

    def call(self, op: Operation, path: str, data: dict[str, Any] | None = None) -> Reply:
        req = Request(operation=op, path=path, storage=self.storage, system=self.system, data=data or {})
        return reply_of(op, asyncio.run(self.backend.handle(req)))

    def write(self, path: str, /, **data: Any) -> Reply:
        return self.call(Operation.UPDATE, path, data)

    def read(self, path: str, /, **data: Any) -> Reply:
        return self.call(Operation.READ, path, data)

    def list(self, path: str) -> Reply:
        return self.call(Operation.LIST, path)

    def delete(self, path: str) -> Reply:
        return self.call(Operation.DELETE, path)

    def patch(self, path: str, /, **data: Any) -> Reply:
        return self.call(Operation.PATCH, path, data)

    def ok(self, op: str, path: str, /, **data: Any) -> dict[str, Any]:
        reply = getattr(self, op)(path, **data)
        assert reply.status == 200, (reply.status, reply.data)
        return reply.data or {}

    def root(self, **data: Any) -> dict[str, Any]:
        params = {"common_name": "Example Root CA", "key_type": "ec", "ttl": "87600h"}
        params.update(data)
        return self.ok("write", "root/generate/internal", **params)


def cert_of(pem: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate(pem.encode())


def lint_errors(cert: x509.Certificate) -> str:
    """pkilint's RFC 5280 certificate linter at severity ERROR: '' when clean, its findings otherwise."""
    from cryptography.hazmat.primitives.serialization import Encoding

    with tempfile.NamedTemporaryFile("wb", suffix=".pem", delete=False) as fh:
        fh.write(cert.public_bytes(Encoding.PEM))
        name = fh.name
    proc = subprocess.run([str(LINTER), "lint", "-s", "ERROR", name], capture_output=True, text=True)
    FsPath(name).unlink(missing_ok=True)
    return "" if proc.returncode == 0 else (proc.stdout + proc.stderr)
