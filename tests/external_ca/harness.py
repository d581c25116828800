"""Drive the external-CA Backend in-process, the way the server would, over any Storage."""
from __future__ import annotations

from typing import Any

from engine.storage import InMemoryStorage, Storage
from plugin.framework import Backend, Operation, Request, StaticSystemView


class Client:
    def __init__(self, backend: Backend, storage: Storage | None = None,
                 system: StaticSystemView | None = None) -> None:
        self.backend = backend
        self.storage = storage if storage is not None else InMemoryStorage()
        self.system = system or StaticSystemView()

    async def call(self, op: Operation, path: str, data: dict[str, Any] | None = None,
                   entity_id: str = "") -> tuple[int, dict[str, Any]]:
        """(HTTP-like status, body) as the server would answer: data, errors, or 204/404 for no response."""
        req = Request(operation=op, path=path, storage=self.storage, system=self.system, data=dict(data or {}),
                      entity_id=entity_id)
        out = await self.backend.handle(req)
        if out.error is not None:
            return out.error.status, {"errors": [out.error.message]}
        resp = out.response
        if resp is None:
            return (404 if op in (Operation.READ, Operation.LIST) else 204), {}
        if resp.is_error:
            return 400, {"errors": [resp.data["error"]]}  # type: ignore[index]
        return 200, {"data": resp.data or {}, "warnings": resp.warnings}

    async def write(self, path: str, data: dict[str, Any] | None = None, **kw: Any) -> tuple[int, dict[str, Any]]:
        return await self.call(Operation.UPDATE, path, data, **kw)

    async def read(self, path: str, data: dict[str, Any] | None = None, **kw: Any) -> tuple[int, dict[str, Any]]:
        return await self.call(Operation.READ, path, data, **kw)

    async def list(self, path: str) -> tuple[int, dict[str, Any]]:
        return await self.call(Operation.LIST, path)

    async def delete(self, path: str, data: dict[str, Any] | None = None) -> tuple[int, dict[str, Any]]:
        return await self.call(Operation.DELETE, path, data)

    async def periodic(self) -> None:
        await self.backend.handle(Request(operation=Operation.ROLLBACK, path="", storage=self.storage,
                                          system=self.system))
