"""The engine's storage interface and an in-memory implementation.

The plugin host implements `Storage` over the server's brokered gRPC Storage service; unit tests use
`InMemoryStorage`. Semantics follow Vault's logical storage: `list(prefix)` returns the immediate children
of a prefix ending in "/", with sub-folders suffixed by "/".
"""
from __future__ import annotations

import re

import json
from dataclasses import dataclass
from typing import Any, AsyncIterator, Protocol


class StorageError(Exception):
    """The backing store failed (distinct from "not found", which is None)."""


class PagingUnsupported(StorageError):
    """The server has no paged list (Vault; OpenBao has ListPage): callers list the prefix whole instead."""


class Storage(Protocol):
    async def get(self, key: str) -> bytes | None: ...
    async def put(self, key: str, value: bytes, seal_wrap: bool = False) -> None: ...
    async def delete(self, key: str) -> None: ...
    async def list(self, prefix: str) -> list[str]: ...


@dataclass
class StoredEntry:
    value: bytes
    seal_wrap: bool = False


class InMemoryStorage:
    """A dict-backed Storage for unit tests. Keeps the seal-wrap flag so tests can assert on it."""

    def __init__(self) -> None:
        self.entries: dict[str, StoredEntry] = {}

    async def get(self, key: str) -> bytes | None:
        entry = self.entries.get(key)
        return entry.value if entry else None

    async def put(self, key: str, value: bytes, seal_wrap: bool = False) -> None:
        if not isinstance(value, (bytes, bytearray)):
            raise TypeError("storage values are bytes")
        self.entries[key] = StoredEntry(bytes(value), seal_wrap)

    async def delete(self, key: str) -> None:
        self.entries.pop(key, None)

    async def list(self, prefix: str) -> list[str]:
        return list_children(self.entries.keys(), prefix)

    async def list_page(self, prefix: str, after: str, limit: int) -> list[str]:
        """At most `limit` children of `prefix` sorting after `after` (OpenBao's ListPage)."""
        children = [k for k in list_children(self.entries.keys(), prefix) if k > after]
        return children[:limit] if limit > 0 else children

    def snapshot(self) -> dict[str, bytes]:
        """A copy of everything stored, for "storage unchanged" assertions."""
        return {k: e.value for k, e in self.entries.items()}


def list_children(keys: Any, prefix: str) -> list[str]:
    children: set[str] = set()
    for key in keys:
        if not key.startswith(prefix):
            continue
        rest = key[len(prefix):]
        head, sep, _ = rest.partition("/")
        children.add(head + sep)
    return sorted(children)


async def get_json(storage: Storage, key: str) -> Any | None:
    raw = await storage.get(key)
    return None if raw is None else json.loads(raw)


async def put_json(storage: Storage, key: str, value: Any, seal_wrap: bool = False) -> None:
    await storage.put(key, json.dumps(value, separators=(",", ":"), sort_keys=True).encode(), seal_wrap)


async def list_pages(storage: Storage, prefix: str, page: int) -> AsyncIterator[list[str]]:
    """The children of a prefix, `page` at a time, paged by the store when it can (so a 100k-entry prefix is never
    held at once), else listed whole once and handed out in slices. Safe to delete keys already handed out."""
    lister = getattr(storage, "list_page", None)
    after = ""
    if lister is not None:
        try:
            while True:
                keys = await lister(prefix, after, page)
                if keys:
                    yield keys
                    after = keys[-1]
                if len(keys) < page:
                    return
        except PagingUnsupported:
            if after:
                raise
    keys = await storage.list(prefix)
    for i in range(0, len(keys), page):
        yield keys[i:i + page]


async def walk(storage: Storage, prefix: str) -> AsyncIterator[str]:
    """Every leaf key under a prefix, depth first, without loading values (for tidy and CRL builds)."""
    for child in await storage.list(prefix):
        if child.endswith("/"):
            async for key in walk(storage, prefix + child):
                yield key
        else:
            yield prefix + child


_ID_SHAPE = re.compile(r"[A-Za-z0-9_-]{1,128}")


def storage_id_shaped(ref: str) -> bool:
    """Whether a user-given reference may be looked up as a record id: ids are UUIDs, and anything with a
    slash, dots or other characters would name another storage key, or one the server refuses."""
    return _ID_SHAPE.fullmatch(ref) is not None
