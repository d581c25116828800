"""tidy_acme: orders past their certificate's (or their own) expiry plus safety_buffer go with their
authorizations; accounts left with no order, older than acme_account_safety_buffer, are revoked, and revoked or
deactivated ones deleted one buffer after that; unused EAB keys older than that buffer are deleted."""
from __future__ import annotations

import datetime as dt
from typing import Awaitable, Callable

from engine.acme.records import ACCOUNTS, EABS, THUMBPRINTS, AcmeStore, authz_key, order_key, parse_time, rfc3339
from engine.storage import Storage, get_json

Step = Callable[[], Awaitable[None]]
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)


def now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)   # not truncated to the second: buffers of seconds compare exactly


def _t(text: str) -> dt.datetime:
    return parse_time(text) if text else EPOCH


async def _tidy_order(storage: Storage, store: AcmeStore, kid: str, oid: str, buffer: dt.timedelta) -> \
        tuple[bool, dt.datetime]:
    order = await store.order(kid, oid)
    if order is None:
        return True, EPOCH
    expiry = _t(order.cert_expiry) if order.cert_expiry else _t(order.expires)
    if now() <= expiry + buffer:
        return False, _t(order.cert_expiry)
    for aid in order.authorizations:
        await storage.delete(authz_key(kid, aid))
    if order.cert_serial:
        await storage.delete(f"{ACCOUNTS}{kid}/certs/{order.cert_serial}")
    await storage.delete(order_key(kid, oid))
    return True, _t(order.cert_expiry)


async def run(storage: Storage, status: object, safety_buffer: int, account_buffer: int, step: Step) -> None:
    store = AcmeStore(storage)
    cert_buffer, acct_buffer = dt.timedelta(seconds=safety_buffer), dt.timedelta(seconds=account_buffer)
    for thumb in [k for k in await storage.list(THUMBPRINTS) if not k.endswith("/")]:
        await step()
        status.total_acme_account_count += 1  # type: ignore[attr-defined]
        kid = ((await get_json(storage, THUMBPRINTS + thumb)) or {}).get("kid", "")
        acct = await store.account(kid) if kid else None
        if acct is None:
            await storage.delete(THUMBPRINTS + thumb)
            status.acme_account_deleted_count += 1  # type: ignore[attr-defined]
            continue
        all_gone, max_expiry = True, _t(acct.max_cert_expiry)
        for oid in await store.order_ids(kid):
            gone, expiry = await _tidy_order(storage, store, kid, oid, cert_buffer)
            if gone:
                status.acme_orders_deleted_count += 1  # type: ignore[attr-defined]
            all_gone = all_gone and gone
            max_expiry = max(max_expiry, expiry)
        moment = now()
        if all_gone and moment > _t(acct.created) + acct_buffer and moment > max_expiry + acct_buffer:
            if acct.status in ("revoked", "deactivated") and moment > _t(acct.revoked_on) + acct_buffer:
                for sub in ("authorizations/", "certs/", "orders/"):
                    for key in await storage.list(f"{ACCOUNTS}{kid}/{sub}"):
                        await storage.delete(f"{ACCOUNTS}{kid}/{sub}{key}")
                await storage.delete(ACCOUNTS + kid)
                await storage.delete(THUMBPRINTS + thumb)
                status.acme_account_deleted_count += 1  # type: ignore[attr-defined]
                continue
            if acct.status == "valid":
                acct.status, acct.revoked_on = "revoked", rfc3339(moment)
                await store.put_account(acct)
                status.acme_account_revoked_count += 1  # type: ignore[attr-defined]
                continue
        if rfc3339(max_expiry) != (acct.max_cert_expiry or rfc3339(EPOCH)) and acct.status == "valid":
            acct.max_cert_expiry = rfc3339(max_expiry)
            await store.put_account(acct)
    for eid in [k for k in await storage.list(EABS) if not k.endswith("/")]:
        await step()
        eab = await store.eab(eid)
        if eab is not None and now() > _t(eab.created_on) + acct_buffer:
            await storage.delete(EABS + eid)
