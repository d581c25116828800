"""The order indexes: lookups and the periodic call read only the orders they could match, the indexes
follow every state change, and orders stored before the indexes existed are indexed on first use."""
from __future__ import annotations

import datetime as dt

import pytest

from engine.external_ca import build_backend
from engine.external_ca.records import load_order
from engine.storage import InMemoryStorage
from .harness import Client
from .test_api import Env, run, setup


class CountingStorage(InMemoryStorage):
    def __init__(self) -> None:
        super().__init__()
        self.order_reads: list[str] = []

    async def get(self, key: str) -> bytes | None:
        if key.startswith("order/"):
            self.order_reads.append(key.removeprefix("order/"))
        return await super().get(key)


@pytest.fixture()
def env(monkeypatch):
    e = Env(monkeypatch)
    e.client = Client(build_backend(clock=lambda: e.now), storage=CountingStorage())
    return e


async def finished_orders(env: Env, c: Client, n: int) -> list[str]:
    env.ca.reuse_valid = True
    ids = []
    for i in range(n):
        _, body = await c.write("role/web/new-order", {"identifiers": f"done{i}.example.com"})
        oid = body["data"]["order_id"]
        _, st = await c.read(f"role/web/order/{oid}/status")
        assert st["data"]["order_status"] == "completed"
        ids.append(oid)
    env.ca.reuse_valid = False
    return ids


def test_lookups_and_periodic_read_only_matching_orders(env):
    async def go():
        c = await setup(env)
        st, _ = await c.write("role/other", {"acme_account_name": "le", "allowed_domains": "example.com",
                                             "allowed_domain_options": "subdomains"})
        done = await finished_orders(env, c, 5)
        _, body = await c.write("role/other/new-order", {"identifiers": "x.example.com"})
        foreign = body["data"]["order_id"]
        _, body = await c.write("role/web/new-order", {"identifiers": "live.example.com"})
        live = body["data"]["order_id"]
        storage: CountingStorage = c.storage  # type: ignore[assignment]

        storage.order_reads.clear()
        st, listed = await c.list("role/web/active-orders")
        assert listed["data"]["keys"] == [live]
        assert storage.order_reads == [live]

        storage.order_reads.clear()
        _, again = await c.write("role/web/new-order", {"identifiers": "live.example.com"})
        assert again["data"]["order_id"] == live
        assert storage.order_reads == [live]

        storage.order_reads.clear()
        st, _ = await c.read("role/web/cached", {"identifiers": "done3.example.com", "min_validity_percentage": 0})
        assert set(storage.order_reads) == {done[3]}

        storage.order_reads.clear()
        await c.periodic()     # no role renews by ARI: finished orders are not read at all
        assert set(storage.order_reads) <= {live, foreign}
        assert not set(storage.order_reads) & set(done)
    run(go())


def test_active_marker_follows_the_order_and_stale_markers_are_ignored(env):
    async def go():
        c = await setup(env)
        _, body = await c.write("role/web/new-order", {"identifiers": "a.example.com"})
        oid = body["data"]["order_id"]
        assert f"order-active/web/{oid}" in c.storage.entries
        await c.read(f"role/web/order/{oid}/status")
        env.tick(2 * 86400)
        await c.periodic()
        assert (await load_order(c.storage, oid)).status.value == "expired"
        assert f"order-active/web/{oid}" not in c.storage.entries
        # A crash between the terminal write and the marker's removal leaves a stale marker: it is ignored.
        await c.storage.put(f"order-active/web/{oid}", b"")
        st, _ = await c.list("role/web/active-orders")
        assert st == 404
        st, _ = await c.delete("role/web")           # no active orders: no force needed
        assert st == 204
    run(go())


def test_orders_stored_before_the_index_are_indexed_on_first_use(env):
    async def go():
        env.now = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)   # the fake CA's certs use real time
        c = await setup(env)
        done = (await finished_orders(env, c, 2))[0]
        _, body = await c.write("role/web/new-order", {"identifiers": "old.example.com"})
        old = body["data"]["order_id"]
        # What a mount written by the previous version holds: order records, no index.
        for key in [k for k in c.storage.entries if k.startswith(("order-active/", "order-set/", "order-role/"))]:
            del c.storage.entries[key]
        del c.storage.entries["order-index-version"]
        fresh = Client(build_backend(clock=lambda: env.now), storage=c.storage)
        st, listed = await fresh.list("role/web/active-orders")
        assert st == 200 and listed["data"]["keys"] == [old]
        _, again = await fresh.write("role/web/new-order", {"identifiers": "old.example.com"})
        assert again["data"]["order_id"] == old
        st, cached = await fresh.read("role/web/cached", {"identifiers": "done0.example.com",
                                                          "min_validity_duration": 0})
        assert st == 200 and cached["data"]["order_id"] == done
        assert c.storage.entries["order-index-version"].value == b"1"
        assert f"order-active/web/{old}" in c.storage.entries and f"order-active/web/{done}" not in c.storage.entries
    run(go())
