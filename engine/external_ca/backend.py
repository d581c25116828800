"""Assembles the external-CA backend: paths, seal-wrapped key prefixes, periodic work."""
from __future__ import annotations

import logging

from engine.external_ca.accounts import Accounts
from engine.external_ca.network import Network
from engine.external_ca.common import SEAL_WRAPPED_PREFIXES, Clock
from engine.external_ca.orders import Orders
from engine.external_ca import order_index
from engine.external_ca.common import ROLE_PREFIX
from engine.external_ca.records import OrderRecord, load_role
from engine.external_ca.roles import Roles
from engine.external_ca.runtime import Runtime
from engine.external_ca.worker import Worker, is_due, is_expired
from plugin.framework import Backend, Request, SpecialPaths, is_performance_standby

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
        await rt.index.ensure(req.storage)
        now = rt.now()
        # Finished orders matter only under roles that renew by ARI. Like the active list, they are read
        # before any order moves, so an order that completes during this run is checked on the next one.
        ari_orders: list[list[OrderRecord]] = []
        for role_name in [k for k in await req.storage.list(ROLE_PREFIX) if not k.endswith("/")]:
            role = await load_role(req.storage, role_name)
            if role is not None and role.ari_renewal:
                ari_orders.append(await order_index.of_role(req.storage, role_name))
        for rec in await order_index.all_active(req.storage):
            try:
                if is_due(rec, now) or is_expired(rec, now):
                    await worker.advance(req.storage, rec.order_id)
            except Exception:  # noqa: BLE001 - one bad order must not stop the others
                log.exception("periodic work on order %s failed", rec.order_id)
        for role_orders in ari_orders:
            for rec in role_orders:
                try:
                    if rec.status.terminal:
                        await orders.ari_check(req, rec, role_orders)
                except Exception:  # noqa: BLE001
                    log.exception("ARI check of order %s failed", rec.order_id)

    async def initialize(req: Request) -> None:
        # The index is built by the active node; a standby reads what it wrote.
        if not await is_performance_standby(req.system):
            await rt.index.ensure(req.storage)

    async def clean() -> None:
        await rt.close()

    backend = Backend(
        accounts.paths() + roles.paths() + orders.paths() + Network(rt).paths(),
        help=HELP,
        special_paths=SpecialPaths(seal_wrap_storage=list(SEAL_WRAPPED_PREFIXES)),
        periodic=periodic,
        initialize=initialize,
        clean=clean,
    )
    backend.runtime = rt  # type: ignore[attr-defined]  # tests reach the clock and worker through it
    return backend
