"""Tidy over more keys than one page, with a store that pages its listings (as OpenBao's ListPage) and one that
cannot (as Vault), and which stores each tidy flag touches."""
from __future__ import annotations

import asyncio
import time

from revocation_helpers import AsyncMount

from engine import tidy as tidymod
from engine.storage import InMemoryStorage, PagingUnsupported, list_pages
from plugin.framework import Operation


class NoPagingStorage(InMemoryStorage):
    largest_listing = 0

    async def list_page(self, prefix: str, after: str, limit: int) -> list[str]:
        raise PagingUnsupported("no ListPage here")


class CountingStorage(InMemoryStorage):
    """Records the largest listing it handed out at once."""

    def __init__(self) -> None:
        super().__init__()
        self.largest_listing = 0

    async def list(self, prefix: str) -> list[str]:
        keys = await super().list(prefix)
        self.largest_listing = max(self.largest_listing, len(keys))
        return keys

    async def list_page(self, prefix: str, after: str, limit: int) -> list[str]:
        keys = await super().list_page(prefix, after, limit)
        self.largest_listing = max(self.largest_listing, len(keys))
        return keys


async def _collect(storage: InMemoryStorage, prefix: str, page: int, delete: bool) -> list[str]:
    seen: list[str] = []
    async for keys in list_pages(storage, prefix, page):
        seen.extend(keys)
        if delete:
            for k in keys:
                await storage.delete(prefix + k)
    return seen


def test_list_pages_hands_out_every_child_once_with_or_without_server_paging() -> None:
    async def go() -> None:
        for cls in (InMemoryStorage, NoPagingStorage):
            for delete in (False, True):
                s = cls()
                for i in range(23):
                    await s.put(f"p/k{i:03d}", b"x")
                await s.put("p/sub/x", b"x")
                await s.put("other", b"x")
                seen = await _collect(s, "p/", 5, delete)
                assert seen == [f"k{i:03d}" for i in range(23)] + ["sub/"], (cls, delete)
        assert await _collect(InMemoryStorage(), "empty/", 5, False) == []
    asyncio.run(go())


async def _expired_mount(storage: InMemoryStorage, count: int) -> tuple[AsyncMount, list[str], list[str]]:
    m = AsyncMount()
    m.storage = storage
    await m.setup_ca()
    short: list[str] = []
    last_expiry = 0
    for i in range(count):
        cert = await m.issue(f"s{i}.example.com", ttl="4s")
        short.append(cert["serial_number"])
        last_expiry = max(last_expiry, cert["expiration"])
        if i % 3 == 0:   # revoked at once, while it is still valid
            await m.ok("revoke", serial_number=cert["serial_number"])
            assert (await m.read(f"cert/{cert['serial_number']}")).data["revocation_time"]
    keep = [(await m.issue("keep.example.com"))["serial_number"] for _ in range(2)]
    await m.ok("revoke", serial_number=keep[0])
    await asyncio.sleep(max(0.0, last_expiry - time.time()) + 1.3)
    return m, short, keep


async def _list(m: AsyncMount, path: str) -> list[str]:
    reply = await m.call(Operation.LIST, path)
    return list((reply.data or {}).get("keys") or [])


async def _tidy(m: AsyncMount, **flags: object) -> dict:
    assert (await m.write("tidy", safety_buffer="1s", **flags)).status == 202
    for _ in range(500):
        status = (await m.read("tidy-status")).data
        if status["state"] not in ("Running", "Cancelling"):
            return status
        await asyncio.sleep(0.02)
    raise AssertionError("tidy did not finish")


def test_tidy_over_several_pages_removes_every_expired_cert_and_revocation(monkeypatch) -> None:
    monkeypatch.setattr(tidymod, "PAGE", 7)

    async def go() -> None:
        for storage in (CountingStorage(), NoPagingStorage()):
            m, short, keep = await _expired_mount(storage, 40)
            storage.largest_listing = 0   # type: ignore[attr-defined]
            status = await _tidy(m, tidy_cert_store=True, tidy_revoked_certs=True)
            assert status["state"] == "Finished" and not status["error"], status
            assert status["cert_store_deleted_count"] == 40
            assert status["revoked_cert_deleted_count"] == len(short[::3])
            listed = set(await _list(m, "certs"))
            assert not listed & set(short) and set(keep) <= listed
            assert set(await _list(m, "certs/revoked")) == {keep[0]}
            if isinstance(storage, CountingStorage):
                assert storage.largest_listing <= 7
    asyncio.run(go())


def test_tidy_revoked_certs_alone_leaves_expired_unrevoked_certs() -> None:
    async def go() -> None:
        m, short, keep = await _expired_mount(InMemoryStorage(), 6)
        status = await _tidy(m, tidy_revoked_certs=True)
        assert status["cert_store_deleted_count"] == 0 and status["revoked_cert_deleted_count"] == 2
        listed = set(await _list(m, "certs"))
        assert (set(short) - set(short[::3])) | set(keep) <= listed and not listed & set(short[::3])
    asyncio.run(go())


def test_revocations_the_crl_index_does_not_know_are_still_tidied() -> None:
    # The cert pass finishes revoked certificates it learns of from the CRL index; records the index lacks (an
    # index that lags, or a crash between the two deletes) must still go in the revocation pass.
    from engine import crl as crlmod
    from engine.revocation import serial_int

    async def go() -> None:
        m, short, keep = await _expired_mount(InMemoryStorage(), 9)
        rt = crlmod.runtime(m.backend.pki_context)  # type: ignore[attr-defined]
        index = await rt.ensure_index(m.storage)
        hidden = short[3]
        index.remove(serial_int(hidden))
        rt.pending.entries.pop(serial_int(hidden), None)
        status = await _tidy(m, tidy_cert_store=True, tidy_revoked_certs=True)
        assert status["cert_store_deleted_count"] == 9 and status["revoked_cert_deleted_count"] == 3
        assert set(await _list(m, "certs/revoked")) == {keep[0]}
        assert (await m.read(f"cert/{hidden}")).status == 404
    asyncio.run(go())
