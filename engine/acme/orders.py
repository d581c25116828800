"""new-order, orders, order/:id, authorization/:id, challenge/:auth/:type (the challenge side of an order)."""
from __future__ import annotations

import datetime as dt
import secrets
import uuid
from typing import Any

from engine.acme import validation
from engine.acme.errors import problem
from engine.acme.identifiers import challenge_types, check_against_role, parse_identifiers
from engine.acme.directory import resolve
from engine.acme.protocol import Answer, Call, acme_state
from engine.acme.renewal import check_replaces
from engine.acme.records import Authorization, Challenge, Order, Validation, now, parse_time, rfc3339
from engine.context import PkiContext

ORDER_LIFETIME = dt.timedelta(hours=24)
# A finalize interrupted (plugin killed) longer ago than this is over: the order is ready again for a retry.
STALE_PROCESSING = dt.timedelta(minutes=2)


def order_body(call: Call, order: Order, authz_ids: list[str] | None = None) -> dict[str, Any]:
    url = call.directory.url("order", order.id)
    body: dict[str, Any] = {
        "status": order.status,
        "expires": order.expires,
        "identifiers": [{"type": i["type"], "value": i["original"]} for i in order.identifiers],
        "authorizations": [call.directory.url("authorization", a)
                           for a in (order.authorizations if authz_ids is None else authz_ids)],
        "finalize": url + "/finalize",
    }
    if order.status == "valid":
        body["certificate"] = url + "/cert"
    if order.status == "invalid" and order.error:
        body["error"] = {k: v for k, v in order.error.items() if k != "status"}
    if order.profile:
        body["profile"] = order.profile
    if order.replaces:
        body["replaces"] = order.replaces
    return body


def order_answer(call: Call, order: Order, status: int = 200, authz_ids: list[str] | None = None) -> Answer:
    headers = {"Location": [call.directory.url("order", order.id)]}
    if order.status == "processing":
        headers["Retry-After"] = ["5"]
    return Answer(body=order_body(call, order, authz_ids), status=status, headers=headers)


def authz_body(call: Call, authz: Authorization) -> dict[str, Any]:
    ident = authz.ident()
    body: dict[str, Any] = {"identifier": {"type": ident.type, "value": ident.value}, "status": authz.status,
                            "wildcard": authz.wildcard}
    if authz.expires:
        body["expires"] = authz.expires
    if authz.challenges:
        body["challenges"] = [challenge_body(call, authz.id, c) for c in authz.challenge_list()]
    return body


def challenge_body(call: Call, authz_id: str, c: Challenge) -> dict[str, Any]:
    body: dict[str, Any] = {"type": c.type, "url": call.directory.url("challenge", authz_id, c.type),
                            "status": c.status}
    if c.validated:
        body["validated"] = c.validated
    if c.error:
        body["error"] = {k: v for k, v in c.error.items() if v is not None}
    body["token"] = c.token
    return body


async def load_order(call: Call, oid: str) -> Order:
    order = await call.store.order(call.kid, oid)
    if order is None:
        raise problem("malformed", prefix="order does not exist")
    return order


async def load_authz(call: Call, aid: str) -> Authorization:
    authz = await call.store.authz(call.kid, aid)
    if authz is None:
        raise problem("malformed", prefix="failed to load authorization: authorization does not exist")
    return authz


async def current_status(call: Call, order: Order) -> str:
    """The order's status as of now, from its authorizations (RFC 8555 section 7.1.6)."""
    if order.status in ("invalid", "valid"):
        return order.status
    if now() > parse_time(order.expires):
        return "invalid"
    if order.status == "processing":
        since = parse_time(order.finalizing_since) if order.finalizing_since else now()
        busy = call.state.busy_orders if call.state else set()
        if now() - since > STALE_PROCESSING and order.id not in busy:
            return "ready"
        return "processing"
    if order.status == "ready":
        return "ready"
    if not order.authorizations:
        return "pending"
    all_valid = True
    for aid in order.authorizations:
        authz = await load_authz(call, aid)
        if authz.status == "pending":
            all_valid = False
        elif authz.status != "valid":
            return "invalid"
    return "ready" if all_valid else "pending"


def _token() -> str:
    return secrets.token_urlsafe(21)


async def new_order(call: Call) -> Answer:
    payload = call.payload or {}
    identifiers = parse_identifiers(payload)
    for name in ("notBefore", "notAfter"):
        value = payload.get(name)
        if value is None:
            continue
        if not isinstance(value, str):
            raise problem("malformed", prefix=f"invalid type ({type(value).__name__}) for field '{name}'")
        try:
            parse_time(value)
        except ValueError:
            raise problem("malformed", prefix=f"failed parsing field '{name}' ({value})") from None
        raise problem("malformed", suffix="NotBefore and NotAfter are not supported")
    cfg = call.directory.cfg
    profile = ""
    role = call.directory.role
    if cfg.profiles and payload.get("profile") is not None:
        profile = payload.get("profile")
        if not isinstance(profile, str) or profile not in cfg.profiles:
            raise problem("malformed", prefix=f"unknown profile {profile!r}")
        assert call.ctx is not None
        role = (await resolve(call.ctx, call.req, cfg, role_override=cfg.profiles[profile])).role
    replaces = ""
    if cfg.enable_ari and payload.get("replaces") is not None:
        replaces = await check_replaces(call, payload.get("replaces"))
    check_against_role(role, identifiers)

    oid = str(uuid.uuid4())
    authz_ids = []
    for ident in identifiers:
        authz = Authorization(id=str(uuid.uuid4()), account=call.kid, identifier=vars(ident), status="pending",
                              expires="", wildcard=ident.wildcard,
                              challenges=[vars(Challenge(type=t, token=_token())) for t in challenge_types(ident)])
        await call.store.put_authz(authz)
        authz_ids.append(authz.id)
    # The order last: until it exists its authorizations are unreachable (tidy removes them with the account).
    order = Order(id=oid, account=call.kid, status="pending", expires=rfc3339(now() + ORDER_LIFETIME),
                  identifiers=[vars(i) for i in identifiers], authorizations=authz_ids, profile=profile,
                  replaces=replaces)
    await call.store.put_order(order)
    return order_answer(call, order, status=201)


async def list_orders(call: Call) -> Answer:
    named = call.req.match.get("kid")
    if named and named != call.kid:
        raise problem("unauthorized", prefix="the account URL is not the signer's account")
    urls = []
    for oid in await call.store.order_ids(call.kid):
        order = await call.store.order(call.kid, oid)
        if order is not None and order.status != "invalid":
            urls.append(call.directory.url("order", oid))
    return Answer(body={"orders": urls})


async def get_order(call: Call) -> Answer:
    order = await load_order(call, call.d.get("order_id"))
    order.status = await current_status(call, order)
    shown = None
    if order.status in ("valid", "invalid"):
        shown = [a for a in order.authorizations
                 if (await load_authz(call, a)).status == "valid"]
    return order_answer(call, order, authz_ids=shown)


async def authorization(call: Call) -> Answer:
    authz = await load_authz(call, call.d.get("auth_id"))
    payload = call.payload or {}
    status = payload.get("status")
    if status is not None and not isinstance(status, str):
        raise problem("malformed", prefix=f"bad type ({type(status).__name__}) for value 'status'")
    if not payload:
        return Answer(body=authz_body(call, authz))
    if status != "deactivated":
        raise problem("malformed")
    if authz.status not in ("pending", "valid"):
        raise problem("malformed", prefix=f"unable to deactivate authorization in '{authz.status}' status")
    authz.status = "deactivated"
    authz.challenges = [dict(c, status="invalid") for c in authz.challenges]
    await call.store.put_authz(authz)
    return Answer(body=authz_body(call, authz))


def challenge_handler(ctx: PkiContext):  # noqa: ANN201 - a Handler bound to the mount's validator
    async def handle(call: Call) -> Answer:
        authz = await load_authz(call, call.d.get("auth_id"))
        ctype = call.d.get("challenge_type")
        chals = authz.challenge_list()
        target = next((c for c in chals if c.type == ctype), None)
        if target is None:
            raise problem("malformed", prefix=f"unknown challenge of type '{ctype}' in authorization")
        if call.payload:
            raise problem("malformed", prefix="unexpected request parameters")
        if call.payload is not None and target.status == "pending":
            if authz.status != "pending":
                raise problem("malformed", prefix=f"cannot accept a challenge of a {authz.status} authorization")
            # Queued first, then marked processing: the queue entry alone is enough to resume after a crash.
            await validation.enqueue(call.req.storage, Validation(
                account=call.kid, authz=authz.id, challenge_type=ctype, directory=call.directory.directory,
                thumbprint=call.thumbprint))
            target.status = "processing"
            authz.challenges = [vars(c) for c in chals]
            await call.store.put_authz(authz)
            acme_state(ctx).validator.kick(call.req.storage)
        up = f'<{call.directory.url("authorization", authz.id)}>;rel="up"'
        return Answer(body=challenge_body(call, authz.id, target), headers={"Link": [up]})
    return handle
