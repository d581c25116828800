"""Shared helpers for the HSM unit tests: a backend on in-memory storage and a managed key on a fresh token."""
from __future__ import annotations

import asyncio
from typing import Any

from engine.backend import build_backend
from engine.storage import InMemoryStorage
from plugin.framework import Backend, Operation, Request


class Mount:
    def __init__(self) -> None:
        self.storage = InMemoryStorage()
        self.backend: Backend = build_backend()

    def call(self, op: Operation, path: str, data: dict[str, Any] | None = None) -> Any:
        req = Request(operation=op, path=path, storage=self.storage, data=dict(data or {}))
        return asyncio.run(self.backend.handle(req))

    def write(self, path: str, data: dict[str, Any] | None = None) -> Any:
        return self.call(Operation.UPDATE, path, data)

    def read(self, path: str) -> Any:
        return self.call(Operation.READ, path)

    def ok(self, op: Operation, path: str, data: dict[str, Any] | None = None) -> dict[str, Any]:
        out = self.call(op, path, data)
        assert out.error is None, out.error.message
        resp = out.response
        assert resp is not None and not resp.is_error, resp.data if resp else None
        return resp.data or {}


def error_text(outcome: Any) -> str:
    """The message a user would see, whichever way the failure travels (400 response or coded error)."""
    if outcome.error is not None:
        return f"{outcome.error.status} {outcome.error.message}"
    assert outcome.response is not None and outcome.response.is_error, outcome.response
    return "400 " + outcome.response.data["error"]


def managed_key_body(hsm: Any, token: str, label: str, kind: str = "ec", bits: int = 256, **extra: Any
                     ) -> dict[str, Any]:
    body: dict[str, Any] = {"library": hsm.library, "token_label": token, "pin": "1234", "key_label": label,
                            "allow_generate_key": True}
    if kind == "ec":
        body.update(mechanism="0x1041", curve=f"P{bits}")
    elif kind == "rsa":
        body.update(mechanism="0x0001", key_bits=bits)
    else:
        body.update(mechanism="CKM_EDDSA")
    body.update(extra)
    return body
