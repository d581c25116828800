"""Which role, issuer and URLs one ACME directory stands for, decided on every request as the built-in does."""
from __future__ import annotations

from dataclasses import dataclass

from engine.acme.config import AcmeConfig, directory_policy_kind
from engine.acme.errors import AcmeProblem, problem
from engine.acme.paths import directory_of
from engine.api.issue import verbatim_fields
from engine.api.roles import role_cache
from engine.context import PkiContext
from engine.issuance import verbatim_role
from engine.issuers import ISSUING, IssuerRecord
from engine.roles import Role
from engine.urls import read_cluster
from plugin.framework import FieldData, Request, UserError

CLUSTER_PATH_MISSING = "ACME feature requires local cluster 'path' field configuration to be set"


def join_url(base: str, path: str) -> str:
    """Go's url.JoinPath for our inputs: one slash between the parts, a trailing slash kept."""
    return base.rstrip("/") + "/" + path.lstrip("/")


@dataclass
class Directory:
    cfg: AcmeConfig
    cluster_url: str          # config/cluster path
    directory: str            # e.g. "roles/web/acme/"
    role: Role
    issuer: IssuerRecord

    @property
    def base_url(self) -> str:
        return join_url(self.cluster_url, self.directory)

    def url(self, *parts: str) -> str:
        return self.base_url + "/".join(parts)

    def request_url(self, request_path: str) -> str:
        return join_url(self.cluster_url, request_path)

    def link_index(self) -> str:
        return f'<{self.url("directory")}>;rel="index"'

    def eab_required(self) -> bool:
        return self.cfg.eab_policy in ("new-account-required", "always-required")


async def cluster_url(req: Request) -> str:
    path = (await read_cluster(req.storage)).path
    if not path:
        raise _internal(CLUSTER_PATH_MISSING)
    return path


def _internal(detail: str) -> AcmeProblem:
    """A serverInternal problem whose detail is the server's own text (the built-in adds no generic text)."""
    return AcmeProblem("serverInternal", detail)


async def acme_role(ctx: PkiContext, req: Request, name: str) -> Role:
    role = await role_cache(ctx).get(req.storage, name)
    if role is None:
        raise problem("malformed", suffix="role does not exist")
    if role.no_store:
        raise problem("serverInternal", suffix="role can not be used as NoStore is set to true")
    return role


async def resolve(ctx: PkiContext, req: Request, cfg: AcmeConfig, *, role_override: str = "") -> Directory:
    base = await cluster_url(req)
    requested_issuer = req.match.get("issuer_ref", "")
    requested_role = role_override or req.match.get("role", "")
    if not requested_role:
        try:
            kind, policy_role = directory_policy_kind(cfg.default_directory_policy)
        except ValueError as exc:
            raise _internal(str(exc)) from None
        if kind == "forbid":
            raise problem("serverInternal", suffix="default directory not allowed by ACME policy")
        if kind == "sign-verbatim":
            role = verbatim_role(FieldData(raw={}, schema=verbatim_fields()), None)
            role = role.replace(issuer_ref=requested_issuer or "", no_store=False)
        else:
            role = await acme_role(ctx, req, policy_role)
    else:
        role = await acme_role(ctx, req, requested_role)
        if not cfg.allows_any_role() and role.name not in cfg.allowed_roles:
            raise problem("serverInternal", suffix="specified role not allowed by ACME policy")

    issuer_ref = requested_issuer or role.issuer_ref or "default"
    store = ctx.issuers(req.storage)
    try:
        issuer = await store.resolve(issuer_ref)
    except UserError:
        raise problem("malformed", suffix="issuer does not exist") from None
    if ISSUING not in issuer.usage or not issuer.key_id:
        raise problem("serverInternal", suffix="issuer missing proper issuance usage or key")
    if not cfg.allows_any_issuer():
        allowed = False
        for index, name in enumerate(cfg.allowed_issuers):
            try:
                candidate = await store.resolve(name)
            except UserError as exc:
                raise _internal(f"failed to resolve reference for allowed_issuer entry {index}: {exc.message}") \
                    from None
            if candidate.id == issuer.id:
                allowed = True
                break
        if not allowed:
            raise problem("serverInternal", suffix="specified issuer not allowed by ACME policy")

    if not cfg.allow_role_ext_key_usage:
        role = role.replace(ext_key_usage=["ServerAuth"], ext_key_usage_oids=[], server_flag=True,
                            client_flag=False, code_signing_flag=False, email_protection_flag=False)
    return Directory(cfg=cfg, cluster_url=base, directory=directory_of(req.path), role=role, issuer=issuer)
