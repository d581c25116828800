"""Secondary indexes over order records, so lookups read only the orders they could match.

order-active/<role>/<id>          the order is not terminal (dropped once a terminal state is saved)
order-set/<role>/<digest>/<id>    the order's identifier set (digest of the sorted identifiers)
order-role/<role>/<id>            every order of the role

A role and an identifier set never change after an order is created, so these entries are written once,
before the order record; `save_order` drops the active marker right after a terminal state is written.
A crash between the two can only leave an entry pointing at a missing or finished order: readers load the
record and check it, so an index entry is a hint and the order record stays the truth.
"""
from __future__ import annotations

import asyncio
import hashlib
from typing import Iterable

from engine.external_ca.common import ORDER_ACTIVE_PREFIX as ACTIVE_PREFIX
from engine.external_ca.records import OrderRecord, list_order_ids, load_order
from engine.storage import Storage, walk

SET_PREFIX = "order-set/"
ROLE_PREFIX = "order-role/"
# Written once every order that predates the indexes has been indexed.
VERSION_KEY = "order-index-version"
VERSION = b"1"


def identifier_digest(identifiers: Iterable[str]) -> str:
    return hashlib.sha256("\n".join(sorted(identifiers)).encode()).hexdigest()[:32]


async def add(storage: Storage, rec: OrderRecord) -> None:
    if not rec.status.terminal:
        await storage.put(f"{ACTIVE_PREFIX}{rec.role_name}/{rec.order_id}", b"")
    await storage.put(f"{SET_PREFIX}{rec.role_name}/{identifier_digest(rec.identifiers)}/{rec.order_id}", b"")
    await storage.put(f"{ROLE_PREFIX}{rec.role_name}/{rec.order_id}", b"")


async def _load(storage: Storage, ids: Iterable[str]) -> list[OrderRecord]:
    out = []
    for oid in ids:
        rec = await load_order(storage, oid)
        if rec is not None:
            out.append(rec)
    return out


async def _leaves(storage: Storage, prefix: str) -> list[str]:
    return [k for k in await storage.list(prefix) if not k.endswith("/")]


async def active_of_role(storage: Storage, role: str) -> list[OrderRecord]:
    recs = await _load(storage, await _leaves(storage, f"{ACTIVE_PREFIX}{role}/"))
    return [r for r in recs if r.role_name == role and not r.status.terminal]


async def all_active(storage: Storage) -> list[OrderRecord]:
    ids = [key.rsplit("/", 1)[1] async for key in walk(storage, ACTIVE_PREFIX)]
    return [r for r in await _load(storage, ids) if not r.status.terminal]


async def with_identifiers(storage: Storage, role: str, identifiers: Iterable[str]) -> list[OrderRecord]:
    wanted = sorted(identifiers)
    ids = await _leaves(storage, f"{SET_PREFIX}{role}/{identifier_digest(wanted)}/")
    return [r for r in await _load(storage, ids) if r.role_name == role and sorted(r.identifiers) == wanted]


async def of_role(storage: Storage, role: str) -> list[OrderRecord]:
    recs = await _load(storage, await _leaves(storage, f"{ROLE_PREFIX}{role}/"))
    return [r for r in recs if r.role_name == role]


class IndexGuard:
    """Builds the indexes for orders stored before they existed, once per process (idempotent)."""

    def __init__(self) -> None:
        self._ready = False
        self._lock = asyncio.Lock()

    async def ensure(self, storage: Storage) -> None:
        if self._ready:
            return
        async with self._lock:
            if self._ready:
                return
            if await storage.get(VERSION_KEY) != VERSION:
                for oid in await list_order_ids(storage):
                    rec = await load_order(storage, oid)
                    if rec is not None:
                        await add(storage, rec)
                await storage.put(VERSION_KEY, VERSION)
            self._ready = True

