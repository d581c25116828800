"""roles/ (list) and roles/:name (read, write = full overwrite, patch = merge, delete)."""
from __future__ import annotations

from engine.context import PkiContext
from engine.roles import ROLE_FIELDS, RoleCache, build_role
from engine.api.openapi_hints import pki
from plugin.framework import (
    Field, FieldData, FieldType, Operation, Path, Request, Response, UserError, list_response, name_regex,
    paginate,
)

CACHE_KEY = "roles"


def role_cache(ctx: PkiContext) -> RoleCache:
    """The mount's role cache, created once and wired to the server's invalidation of `role/*`."""
    cache = ctx.extra.get(CACHE_KEY)
    if cache is None:
        cache = RoleCache()
        ctx.extra[CACHE_KEY] = cache
        ctx.invalidation_hooks.append(cache.invalidate)
    return cache


async def _issuer_warning(ctx: PkiContext, req: Request, ref: str) -> list[str]:
    if await ctx.issuers(req.storage).find(ref) is not None:
        return []
    if ref.lower() == "default":
        return ["Issuing Certificate was set to default, but no default issuing certificate (configurable at "
                "/config/issuers) is currently set"]
    return [f"Issuing Certificate was set to {ref} but no issuing certificate currently has that name"]


def paths(ctx: PkiContext) -> list[Path]:
    cache = role_cache(ctx)

    async def list_roles(req: Request, d: FieldData) -> Response | None:
        keys = paginate(await cache.list(req.storage), d.get("after"), d.get("limit"))
        return list_response(keys) if keys else None

    async def read(req: Request, d: FieldData) -> Response | None:
        role = await cache.get(req.storage, d.get("name"))
        return Response(data=role.to_response()) if role is not None else None

    async def write(req: Request, d: FieldData) -> Response | None:
        name = d.get("name")
        role, warnings = build_role(name, d, None)
        warnings = await _issuer_warning(ctx, req, role.issuer_ref) + warnings
        await cache.put(req.storage, role)
        return Response(data=role.to_response(), warnings=warnings)

    async def patch(req: Request, d: FieldData) -> Response | None:
        name = d.get("name")
        old = await cache.get(req.storage, name)
        if old is None:
            raise UserError("Unable to fetch role entry to patch")
        role, warnings = build_role(name, d, old)
        warnings = await _issuer_warning(ctx, req, role.issuer_ref) + warnings
        await cache.put(req.storage, role)
        return Response(data=role.to_response(), warnings=warnings)

    async def delete(req: Request, d: FieldData) -> Response | None:
        await cache.delete(req.storage, d.get("name"))
        return None

    name_field = {"name": Field(FieldType.STRING, description="Name of the role.")}
    return [
        Path("roles/?$", {"after": Field(FieldType.STRING, query=True), "limit": Field(FieldType.INT, query=True)},
             {Operation.LIST: list_roles}, synopsis="List the existing roles in this backend.",
             display=pki("list", "roles")),
        # `backend` is accepted and ignored, as by the built-in engine.
        Path("roles/" + name_regex("name"), {**name_field, **ROLE_FIELDS,
                                             "backend": Field(FieldType.STRING, "Ignored (legacy).")},
             {Operation.READ: read, Operation.UPDATE: write, Operation.PATCH: patch, Operation.DELETE: delete},
             display=pki(suffix="role"),
             synopsis="Manage the roles that can be created with this backend."),
    ]
