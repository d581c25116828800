"""tidy_acme on in-memory storage: expired orders go, an account left with none is revoked, then deleted."""
from __future__ import annotations

import asyncio
import datetime as dt

from engine.acme.records import AcmeStore, rfc3339
from plugin.framework import Operation
from tests.acme_server.driver import AcmeMount, Client


async def _tidy(m: AcmeMount) -> dict:
    await m.call(Operation.UPDATE, "tidy", {"tidy_acme": True, "safety_buffer": "1s",
                                            "acme_account_safety_buffer": "1s"})
    for _ in range(200):
        status = await m.vault(Operation.READ, "tidy-status")
        if status["state"] not in ("Running", "Cancelling"):
            return status
        await asyncio.sleep(0.02)
    raise AssertionError("tidy did not finish")


def test_tidy_acme_orders_accounts_and_eabs():
    async def go():
        m = AcmeMount()
        await m.setup()
        c, fresh = Client(m), Client(m)
        await c.register()
        await fresh.register()
        order = await c.order("old.example.com")
        oid = order.header("Location").rsplit("/", 1)[-1]
        kid = c.kid.rsplit("/", 1)[-1]
        store = AcmeStore(m.storage)
        past = rfc3339(dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=2))
        rec = await store.order(kid, oid)
        rec.expires = past
        await store.put_order(rec)
        acct = await store.account(kid)
        acct.created = past
        await store.put_account(acct)
        await m.vault(Operation.UPDATE, "acme/new-eab")
        await asyncio.sleep(1.1)   # the fresh account and the EAB key outlive a 1 s buffer

        status = await _tidy(m)
        assert status["state"] == "Finished", status
        assert (status["total_acme_account_count"], status["acme_orders_deleted_count"],
                status["acme_account_revoked_count"]) == (2, 1, 2)
        assert await store.order(kid, oid) is None
        assert [await store.authz(kid, a) for a in rec.authorizations] == [None]
        assert (await store.account(kid)).status == "revoked"
        assert (await c.order("new.example.com")).status == 401
        assert await m.storage.list("acme/eab/") == []

        await asyncio.sleep(1.1)
        status = await _tidy(m)
        assert status["acme_account_deleted_count"] == 2, status
        assert await store.account(kid) is None
        assert await m.storage.list("acme/account-thumbprints/") == []
    asyncio.run(go())
