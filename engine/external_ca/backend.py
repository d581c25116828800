"""Assembles the external-CA backend: paths, seal-wrapped key prefixes, periodic work."""
from __future__ import annotations

import logging

from engine.external_ca.accounts import Accounts
from engine.external_ca.common import SEAL_WRAPPED_PREFIXES, Clock
from engine.external_ca.orders import Orders
from engine.external_ca.records import OrderRecord, list_order_ids, load_order
from engine.external_ca.roles import Roles
from engine.external_ca.runtime import Runtime
from engine.external_ca.worker import Worker, is_due, is_expired
from plugin.framework import Backend, Request, SpecialPaths

log = logging.getLogger("python-pki.external-ca")

HELP = """The external-CA backend orders certificates from ACME CAs (Let's Encrypt, others) through roles.

Configure an account (config/acme-account/:name), a role (role/:name), then order with role/:name/new-order,
follow role/:name/order/:id/status, fulfil the challenges it lists, and fetch the certificate."""


def build_backend(clock: Clock | None = None) -> Backend:
    rt = Runtime(clock)
    worker = Worker(rt)
    accounts = Accounts(rt)
    roles = Roles(rt)
    orders = Orders(rt, worker)

    async def periodic(req: Request) -> None:
        await accounts.auto_rotate(req.storage)
        records: list[OrderRecord] = []
        for oid in await list_order_ids(req.storage):
            rec = await load_order(req.storage, oid)
            if rec is not None:
                records.append(rec)
        now = rt.now()
        for rec in records:
            try:
                if not rec.status.terminal and (is_due(rec, now) or is_expired(rec, now)):
                    await worker.advance(req.storage, rec.order_id)
                elif rec.status.terminal:
                    await orders.ari_check(req, rec, records)
            except Exception:  # noqa: BLE001 - one bad order must not stop the others
                log.exception("periodic work on order %s failed", rec.order_id)

    async def clean() -> None:
        await rt.close()

    backend = Backend(
        accounts.paths() + roles.paths() + orders.paths(),
        help=HELP,
        special_paths=SpecialPaths(seal_wrap_storage=list(SEAL_WRAPPED_PREFIXES)),
        periodic=periodic,
        clean=clean,
    )
    backend.runtime = rt  # type: ignore[attr-defined]  # tests reach the clock and worker through it
    return backend
