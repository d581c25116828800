"""The ACME server's paths, under each of the four directory prefixes; every one is forwarded by a standby."""
from __future__ import annotations

from engine.acme import accounts, finalize, orders, renewal, revoke
from engine.acme.config import acme_disabled, read_config
from engine.acme.paths import acme_prefixes
from engine.acme.protocol import Answer, Call, acme_state, signed, unsigned
from engine.acme.records import VALIDATIONS
from engine.context import PkiContext
from plugin.framework import Field, FieldType, Operation, Path, Request
from plugin.framework.backend import is_performance_standby

S = FieldType.STRING
SYNOPSIS = "An ACME (RFC 8555) endpoint of this mount."
DESCRIPTION = ("Unauthenticated: requests are JWS signed by an ACME account key. Tune the mount's "
               "allowed_response_headers to include Replay-Nonce, Link, Location, Retry-After and Last-Modified.")
UUID_RE = r"[0-9a-fA-F-]{36}"


def _jws_fields() -> dict[str, Field]:
    return {"protected": Field(S, "ACME JWS protected header."), "payload": Field(S, "ACME JWS payload."),
            "signature": Field(S, "ACME JWS signature.")}


async def directory(call: Call) -> Answer:
    cfg, url = call.directory.cfg, call.directory.url
    body: dict = {"newNonce": url("new-nonce"), "newAccount": url("new-account"), "newOrder": url("new-order"),
                  "revokeCert": url("revoke-cert"), "keyChange": url("key-change"),
                  "meta": {"externalAccountRequired": call.directory.eab_required()}}
    if cfg.enable_ari:
        body["renewalInfo"] = url("renewal-info")
    if cfg.profiles:
        body["meta"]["profiles"] = {name: f"certificates of role {role}" for name, role in sorted(cfg.profiles.items())}
    return Answer(body=body)


async def nonce(call: Call) -> Answer:
    assert call.state is not None
    status = 200 if call.req.operation is Operation.HEADER else 204
    return Answer(body=None, status=status, content_type="",
                  headers={"Cache-Control": ["no-store"], "Replay-Nonce": [call.state.nonces.get()],
                           "Link": [call.directory.link_index()]})


def paths(ctx: PkiContext) -> list[Path]:
    state = acme_state(ctx)

    async def resume(req: Request) -> None:
        # A plugin killed mid-validation finds its queue here (and every minute, through the periodic hook); a
        # standby leaves the queue to the active, where challenges are accepted.
        if await is_performance_standby(req.system):
            return
        if await req.storage.list(VALIDATIONS):
            cfg = await read_config(req.storage)
            if not acme_disabled(cfg):
                state.validator.kick(req.storage)

    ctx.initialize_hooks.append(resume)
    ctx.periodic_hooks.append(resume)

    def acme_path(pattern: str, fields: dict[str, Field], ops: dict) -> Path:
        return Path(pattern, fields, ops, synopsis=SYNOPSIS, description=DESCRIPTION, takes_raw_body=True,
                    forward_performance_standby=True)

    out: list[Path] = []
    for prefix, captures in acme_prefixes():
        jws = {**captures, **_jws_fields()}
        order_f = {**jws, "order_id": Field(S, "The ACME order identifier.", required=True)}
        out += [
            acme_path(f"{prefix}directory", dict(captures), {Operation.READ: unsigned(ctx, directory)}),
            acme_path(f"{prefix}new-nonce", dict(captures),
                      {Operation.READ: unsigned(ctx, nonce), Operation.HEADER: unsigned(ctx, nonce)}),
            acme_path(f"{prefix}new-account", jws,
                      {Operation.UPDATE: signed(ctx, accounts.new_account, account_required=False)}),
            acme_path(f"{prefix}account/(?P<kid>{UUID_RE})", {**jws, "kid": Field(S, "The account's key id.")},
                      {Operation.UPDATE: signed(ctx, accounts.update_account, account_required=False)}),
            acme_path(f"{prefix}account/(?P<kid>{UUID_RE})/orders", {**jws, "kid": Field(S, "The account's key id.")},
                      {Operation.UPDATE: signed(ctx, orders.list_orders)}),
            acme_path(f"{prefix}key-change", jws, {Operation.UPDATE: signed(ctx, accounts.key_change)}),
            acme_path(f"{prefix}new-order", jws, {Operation.UPDATE: signed(ctx, orders.new_order)}),
            acme_path(f"{prefix}orders", jws, {Operation.UPDATE: signed(ctx, orders.list_orders)}),
            acme_path(f"{prefix}order/(?P<order_id>{UUID_RE})", order_f,
                      {Operation.UPDATE: signed(ctx, orders.get_order)}),
            acme_path(f"{prefix}order/(?P<order_id>{UUID_RE})/finalize", order_f,
                      {Operation.UPDATE: signed(ctx, finalize.finalize)}),
            acme_path(f"{prefix}order/(?P<order_id>{UUID_RE})/cert", order_f,
                      {Operation.UPDATE: signed(ctx, finalize.fetch_cert)}),
            acme_path(f"{prefix}authorization/(?P<auth_id>{UUID_RE})",
                      {**jws, "auth_id": Field(S, "The ACME authorization identifier.", required=True)},
                      {Operation.UPDATE: signed(ctx, orders.authorization)}),
            acme_path(f"{prefix}challenge/(?P<auth_id>{UUID_RE})/(?P<challenge_type>[\\w-]+)",
                      {**jws, "auth_id": Field(S, "The ACME authorization identifier.", required=True),
                       "challenge_type": Field(S, "The challenge type.", required=True)},
                      {Operation.UPDATE: signed(ctx, orders.challenge_handler(ctx))}),
            acme_path(f"{prefix}revoke-cert", jws,
                      {Operation.UPDATE: signed(ctx, revoke.revoke_cert, account_required=False)}),
            acme_path(f"{prefix}renewal-info/(?P<cert_id>[\\w.-]+)",
                      {**captures, "cert_id": Field(S, "RFC 9773 certificate identifier.")},
                      {Operation.READ: unsigned(ctx, renewal.renewal_info)}),
        ]
    return out
