"""Operator paths of the ACME server: `config/acme`, `eab/` (list, delete), `<directory>/new-eab` and Vault CE's
`acme/mgmt/account/keyid` (list accounts, read one, revoke or re-validate it). These need a Vault token."""
from __future__ import annotations

import secrets
import uuid
from typing import Any

from engine.acme.config import (
    EAB_POLICIES, check_dns_resolver, directory_policy_kind, public_acme_disabled,
    read_config, write_config,
)
from engine.acme.jws import b64d, b64e
from engine.acme.records import ACCOUNTS, EABS, AcmeStore, Eab, now, rfc3339
from engine.acme.paths import acme_prefixes, directory_of
from engine.api.openapi_hints import pki
from engine.api.roles import role_cache
from engine.context import PkiContext
from engine.urls import read_cluster
from plugin.framework.backend import forward_from_standby
from plugin.framework import (
    CodedError, Field, FieldData, FieldType, Operation, Path, Request, Response, UserError, list_response,
    paginate,
)

S, B, CSV, D, I, M = (FieldType.STRING, FieldType.BOOL, FieldType.COMMA_STRING_SLICE, FieldType.DURATION,
                      FieldType.INT, FieldType.MAP)
# Decodes to bytes whose base64url starts "vault-eab-0-" (a multiple of 3 bytes), so no key begins with "-",
# which command lines would read as an option. Clients that show the prefix recognise these keys.
EAB_KEY_PREFIX = b64d("vault-eab-0-")
CLUSTER_PATH_MISSING = "ACME feature requires local cluster 'path' field configuration to be set"


def _fail(message: str) -> CodedError:
    # The built-in answers configuration errors that come from Go errors with a 500 and the message.
    return CodedError(500, message)


async def acme_role_error(ctx: PkiContext, req: Request, name: str) -> str:
    """Why a role cannot serve ACME ("" if it can)."""
    role = await role_cache(ctx).get(req.storage, name)
    if role is None:
        return "The request message was malformed: role does not exist"
    if role.no_store:
        return "The server experienced an internal error: role can not be used as NoStore is set to true"
    return ""


def config_fields() -> dict[str, Field]:
    return {
        "enabled": Field(B, "Serve ACME on this mount (off unless set).", default=False),
        "allowed_issuers": Field(CSV, "Issuers ACME may sign with; '*' for any.", default=["*"]),
        "allowed_roles": Field(CSV, "Roles ACME directories may use; '*' for any, sign-verbatim included. With "
                                    "named roles, a role used by default_directory_policy must be one of them.",
                               default=["*"]),
        "allow_role_ext_key_usage": Field(B, "Use the role's extended key usages; when false every ACME "
                                             "certificate gets serverAuth only.", default=False),
        "default_directory_policy": Field(S, "What the directories without a role use: 'sign-verbatim', "
                                             "'forbid', or 'role:<name>' (a role allowed by allowed_roles).",
                                          default="sign-verbatim"),
        "dns_resolver": Field(S, "DNS server (<ip>:<port>) for the ACME validations of this mount; the system "
                                 "resolver when empty.", default=""),
        "eab_policy": Field(S, "External account binding: 'not-required', 'new-account-required' or "
                               "'always-required'.", default="always-required"),
        "max_ttl": Field(D, "Longest lifetime of an ACME certificate (Vault's field; 90 days by default).",
                         default=90 * 86400),
        "profiles": Field(M, "ACME profiles (python-pki): profile name -> role name, offered in the directory "
                             "and chosen by a new-order's 'profile'.", default={}),
        "enable_ari": Field(B, "Offer ACME Renewal Information (RFC 9773) in the directory (python-pki).",
                            default=False),
    }


def paths(ctx: PkiContext) -> list[Path]:
    roles = role_cache(ctx)

    async def read_acme(req: Request, d: FieldData) -> Response:
        cfg = await read_config(req.storage)
        warnings = []
        if cfg.enabled and not (await read_cluster(req.storage)).path:
            warnings.append(CLUSTER_PATH_MISSING)
        return Response(data=cfg.to_response(), warnings=warnings)

    async def write_acme(req: Request, d: FieldData) -> Response:
        await forward_from_standby(req)
        cfg = await read_config(req.storage)
        if d.has("enabled"):
            cfg.enabled = bool(d.get("enabled"))
        if d.has("allowed_roles"):
            cfg.allowed_roles = list(d.get("allowed_roles"))
            if not cfg.allowed_roles:
                raise _fail("allowed_roles must take a non-zero length value; specify '*' as the value to allow "
                            "anything or specify enabled=false to disable ACME entirely")
        if d.has("allow_role_ext_key_usage"):
            cfg.allow_role_ext_key_usage = bool(d.get("allow_role_ext_key_usage"))
        if d.has("default_directory_policy"):
            cfg.default_directory_policy = d.get("default_directory_policy")
        if d.has("allowed_issuers"):
            cfg.allowed_issuers = list(d.get("allowed_issuers"))
            if not cfg.allowed_issuers:
                raise _fail("allowed_issuers must take a non-zero length value; specify '*' as the value to allow "
                            "anything or specify enabled=false to disable ACME entirely")
        if d.has("dns_resolver"):
            cfg.dns_resolver = d.get("dns_resolver")
            if cfg.dns_resolver:
                try:
                    check_dns_resolver(cfg.dns_resolver)
                except ValueError as exc:
                    raise _fail(str(exc)) from None
        if d.has("eab_policy"):
            if d.get("eab_policy") not in EAB_POLICIES:
                raise _fail("invalid eab policy name provided, valid values are 'not-required', "
                            "'new-account-required', 'always-required'")
            cfg.eab_policy = d.get("eab_policy")
        if d.has("max_ttl"):
            if d.get("max_ttl") <= 0:
                raise UserError("max_ttl must be a positive duration")
            cfg.max_ttl = d.get("max_ttl")
        if d.has("enable_ari"):
            cfg.enable_ari = bool(d.get("enable_ari"))
        if d.has("profiles"):
            profiles = d.get("profiles") or {}
            for name, role in profiles.items():
                if not isinstance(role, str) or not role:
                    raise UserError(f"profile {name!r} must name a role")
                why = await acme_role_error(ctx, req, role)
                if why:
                    raise UserError(f"profile {name!r}: role {role} is not a valid ACME role: {why}")
            cfg.profiles = {str(k): str(v) for k, v in profiles.items()}

        try:
            kind, default_role = directory_policy_kind(cfg.default_directory_policy)
        except ValueError as exc:
            raise _fail(f"invalid default_directory_policy: {exc}") from None
        if kind == "role":
            why = await acme_role_error(ctx, req, default_role)
            if why:
                raise _fail(f"default directory policy role {default_role} is not a valid ACME role: {why}")
        if not cfg.allows_any_role():
            for index, name in enumerate(cfg.allowed_roles):
                if name == "*":
                    raise _fail(f"cannot use '*' as role name at index {index}")
                why = await acme_role_error(ctx, req, name)
                if why:
                    raise _fail(f"allowed_role {name} is not a valid acme role: {why}")
            if kind == "role" and default_role not in cfg.allowed_roles:
                raise _fail(f"default directory policy {cfg.default_directory_policy} was not specified in "
                            f"allowed_roles: [{' '.join(cfg.allowed_roles)}]")
        if not cfg.allows_any_issuer():
            store = ctx.issuers(req.storage)
            for index, name in enumerate(cfg.allowed_issuers):
                if name == "*":
                    raise _fail(f"cannot use '*' as issuer name at index {index}")
                try:
                    await store.resolve(name)
                except UserError as exc:
                    raise _fail(f"failed validating allowed_issuers: unable to fetch issuer: {name}: "
                                f"{exc.message}") from None
        if cfg.enabled and not (await read_cluster(req.storage)).path:
            raise _fail(CLUSTER_PATH_MISSING)
        env_disabled, warning = public_acme_disabled()
        warnings = [warning] if warning else []
        if env_disabled and cfg.enabled and cfg.eab_policy != "always-required":
            return Response(data={"error": "BAO_DISABLE_PUBLIC_ACME env var is enabled, ACME EAB policy needs to "
                                           "be 'always-required' with ACME enabled"}, warnings=warnings)
        await write_config(req.storage, cfg)
        ctx.invalidate("config/acme")
        return Response(data=cfg.to_response(), warnings=warnings)

    async def list_eab(req: Request, d: FieldData) -> Response:
        store = AcmeStore(req.storage)
        ids = paginate([k for k in await req.storage.list(EABS) if not k.endswith("/")],
                       d.get("after") or "", d.get("limit") or 0)
        keys, info = [], {}
        for eid in ids:
            rec = await store.eab(eid)
            if rec is None:
                continue
            keys.append(rec.id)
            info[rec.id] = {"key_type": rec.key_type, "acme_directory": rec.acme_directory + "directory",
                            "created_on": rec.created_on}
        return list_response(keys, info)

    async def delete_eab(req: Request, d: FieldData) -> Response:
        key_id = d.get("key_id")
        try:
            uuid.UUID(key_id)
        except ValueError:
            raise _fail("badly formatted key_id field") from None
        resp = Response()
        if not await AcmeStore(req.storage).delete_eab(key_id):
            resp.add_warning("No key id found with id: " + key_id)
        return resp

    async def new_eab(req: Request, d: FieldData) -> Response:
        rec = Eab(id=str(uuid.uuid4()), key_type="hs",
                  key=b64e(EAB_KEY_PREFIX + secrets.token_bytes(32)),
                  acme_directory=directory_of(req.path), created_on=rfc3339(now()))
        await AcmeStore(req.storage).put_eab(rec)
        return Response(data={"id": rec.id, "key_type": rec.key_type, "key": rec.key,
                              "acme_directory": rec.acme_directory + "directory", "created_on": rec.created_on})

    async def list_accounts(req: Request, d: FieldData) -> Response:
        kids = [k for k in await req.storage.list(ACCOUNTS) if not k.endswith("/")]
        return list_response(sorted(kids))

    def _account_data(acct: Any, orders: list[dict[str, Any]]) -> dict[str, Any]:
        return {"key_id": acct.kid, "status": acct.status, "contacts": acct.contact,
                "directory": acct.acme_directory, "created_time": acct.created,
                "revoked_time": acct.revoked_on or None, "eab": ({"eab_id": acct.eab_id,
                                                                  "directory": acct.eab_directory}
                                                                 if acct.eab_id else {}),
                "orders": orders}

    async def read_account(req: Request, d: FieldData) -> Response:
        store = AcmeStore(req.storage)
        acct = await store.account(d.get("keyid"))
        if acct is None:
            raise UserError(f"ACME account with key id {d.get('keyid')} does not exist")
        orders = []
        for oid in await store.order_ids(acct.kid):
            order = await store.order(acct.kid, oid)
            if order is not None:
                orders.append({"order_id": order.id, "status": order.status, "expires": order.expires,
                               "identifiers": [i["original"] for i in order.identifiers],
                               "cert_serial_number": order.cert_serial.replace("-", ":"),
                               "cert_expiry": order.cert_expiry or None})
        return Response(data=_account_data(acct, orders))

    async def update_account(req: Request, d: FieldData) -> Response:
        await forward_from_standby(req)
        store = AcmeStore(req.storage)
        acct = await store.account(d.get("keyid"))
        if acct is None:
            raise UserError(f"ACME account with key id {d.get('keyid')} does not exist")
        status = d.get("status")
        if status not in ("valid", "revoked"):
            raise UserError(f"invalid status {status!r}: must be 'valid' or 'revoked'")
        if status != acct.status:
            if acct.status == "deactivated":
                raise UserError("a deactivated account cannot change status")
            acct.status = status
            acct.revoked_on = rfc3339(now()) if status == "revoked" else ""
            await store.put_account(acct)
        return await read_account(req, d)

    eab_after = {"after": Field(S, "List keys sorting after this one (need not exist).", query=True),
                 "limit": Field(I, "At most this many keys; all when unset.", query=True)}
    out = [
        Path("config/acme", config_fields(), {Operation.READ: read_acme, Operation.UPDATE: write_acme},
             operation_display={Operation.READ: pki("read", "acme-configuration"),
                                Operation.UPDATE: pki("configure", "acme")},
             synopsis="Configuration of ACME Endpoints",
             description="Whether the mount serves ACME, which roles and issuers its directories may use, the "
                         "policy of the default directories, external account binding, and the DNS server "
                         "the validations use."),
        Path("eab/?", eab_after, {Operation.LIST: list_eab}, display=pki("list", "eab-keys"),
             synopsis="list external account bindings to be used for ACME",
             description="EAB keys generated and not yet bound to an account."),
        Path(r"eab/(?P<key_id>[0-9A-Za-z]{8}-[0-9A-Za-z]{4}-[0-9A-Za-z]{4}-[0-9A-Za-z]{4}-[0-9A-Za-z]{12})", {"key_id": Field(S, "EAB key identifier", required=True)},
             {Operation.DELETE: delete_eab}, display=pki("delete", "eab-key"),
             synopsis="Delete an external account binding id prior to its use within an ACME account",
             description="Deleting an unknown or already used key succeeds with a warning.",
             forward_performance_standby=True),
        Path("acme/mgmt/account/keyid/?", {}, {Operation.LIST: list_accounts},
             synopsis="List the ACME accounts of this mount by key id."),
        Path(r"acme/mgmt/account/keyid/(?P<keyid>[\w-]+)",
             {"keyid": Field(S, "The account's key id.", required=True),
              "status": Field(S, "New status: 'valid' or 'revoked'.")},
             {Operation.READ: read_account, Operation.UPDATE: update_account},
             synopsis="Read or change the status of one ACME account."),
    ]
    for prefix, fields in acme_prefixes():
        scope = " ".join(w for w, part in (("issuer", "issuer/"), ("role", "roles/")) if part in prefix)
        suffix = "eab-key" + (f"-for-{scope.replace(' ', '-and-')}" if scope else "")
        out.append(Path(f"{prefix}new-eab", fields, {Operation.UPDATE: new_eab}, display=pki("generate", suffix),
                        synopsis="Generate external account bindings to be used for ACME",
                        description="A single-use id and HMAC key binding a new ACME account of this directory.",
                        forward_performance_standby=True))
    return out
