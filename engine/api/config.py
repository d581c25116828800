"""Mount configuration: `config/urls`, `config/cluster`, `config/issuers` (+ `root/replace`), `config/keys`."""
from __future__ import annotations

from typing import Any
from urllib.parse import urlparse

from engine.context import PkiContext
from engine.issuers import IssuersConfig
from engine.urls import CLUSTER_KEY, URLS_KEY, AiaUrls, ClusterConfig, read_cluster, read_global, render, \
    write_cluster, write_global
from engine.api.openapi_hints import pki
from plugin.framework import (
    CodedError, Field, FieldData, FieldType, Operation, Path, Request, Response, UserError,
)

S, B, CSV = FieldType.STRING, FieldType.BOOL, FieldType.COMMA_STRING_SLICE
URL_FIELDS = ("issuing_certificates", "crl_distribution_points", "delta_crl_distribution_points", "ocsp_servers")


def _urls_data(urls: AiaUrls) -> dict[str, Any]:
    return {"issuing_certificates": list(urls.issuing_certificates),
            "crl_distribution_points": list(urls.crl_distribution_points),
            "delta_crl_distribution_points": list(urls.delta_crl_distribution_points),
            "ocsp_servers": list(urls.ocsp_servers),
            "enable_templating": urls.enable_templating}


def _valid_url(url: str) -> bool:
    try:
        parsed = urlparse(url)
    except ValueError:
        return False
    if any(v in url for v in ("{{issuer_id}}", "{{cluster_path}}", "{{cluster_aia_path}}")):
        return False
    return bool(parsed.scheme) and bool(parsed.netloc)


def paths(ctx: PkiContext) -> list[Path]:

    async def read_urls(req: Request, d: FieldData) -> Response:
        return Response(data=_urls_data(await read_global(req.storage)))

    async def write_urls(req: Request, d: FieldData) -> Response:
        urls = await read_global(req.storage)
        if d.has("enable_templating"):
            urls.enable_templating = bool(d.get("enable_templating"))
        for name in URL_FIELDS:
            if d.has(name):
                setattr(urls, name, list(d.get(name)))
        warnings: list[str] = []
        if urls.enable_templating:
            ids = await ctx.issuers(req.storage).list()
            if ids:
                try:
                    render(urls, ids[0], await read_cluster(req.storage))
                except UserError as exc:
                    warnings.append(f"issuance may fail: {exc.message}\n\nConsider setting the cluster-local "
                                    "address if it is not already set.")
        else:
            for name in URL_FIELDS:
                for url in getattr(urls, name):
                    if not _valid_url(url):
                        raise UserError(f"invalid URL found in Authority Information Access (AIA) parameter "
                                        f"{name}: {url}")
        await write_global(req.storage, urls)
        ctx.invalidate(URLS_KEY)
        return Response(data=_urls_data(urls), warnings=warnings)

    async def read_cluster_cfg(req: Request, d: FieldData) -> Response:
        cfg = await read_cluster(req.storage)
        return Response(data={"path": cfg.path, "aia_path": cfg.aia_path})

    async def write_cluster_cfg(req: Request, d: FieldData) -> Response:
        cfg = await read_cluster(req.storage)
        fresh = ClusterConfig(cfg.path, cfg.aia_path)
        for name, label in (("path", "path"), ("aia_path", "aia_path")):
            if d.has(name):
                value = d.get(name)
                parsed = urlparse(value)
                if not parsed.scheme or not parsed.netloc:
                    # The built-in engine answers this with a 500; the text is the same.
                    raise CodedError(500, f"invalid, non-URL {label} given to cluster: {value}")
                setattr(fresh, name, value)
        await write_cluster(req.storage, fresh)
        ctx.invalidate(CLUSTER_KEY)
        return Response(data={"path": fresh.path, "aia_path": fresh.aia_path})

    async def read_issuers_cfg(req: Request, d: FieldData) -> Response:
        cfg = await ctx.issuers(req.storage).config()
        return Response(data={"default": cfg.default,
                              "default_follows_latest_issuer": cfg.default_follows_latest_issuer})

    async def write_issuers_cfg(req: Request, d: FieldData) -> Response:
        issuers = ctx.issuers(req.storage)
        new_default = d.get("default") or ""
        if not new_default or new_default == "default":
            raise UserError("Invalid issuer specification; must be non-empty and can't be 'default'.")
        try:
            issuer = await issuers.resolve(new_default)
        except UserError as exc:
            raise UserError("Error resolving issuer reference: " + exc.message) from None
        cfg = await issuers.config()
        follows = cfg.default_follows_latest_issuer
        if "default_follows_latest_issuer" in d.schema and d.has("default_follows_latest_issuer"):
            follows = bool(d.get("default_follows_latest_issuer"))
        fresh = IssuersConfig(default=issuer.id, default_follows_latest_issuer=follows)
        warnings = []
        if not issuer.key_id:
            warnings.append("This selected default issuer has no key associated with it. Some operations like "
                            "issuing certificates and signing CRLs will be unavailable with the requested default "
                            "issuer until a key is imported or the default issuer is changed.")
        await issuers.set_config(fresh)
        warnings += await ctx.issuers_changed(req)
        return Response(data={"default": fresh.default,
                              "default_follows_latest_issuer": fresh.default_follows_latest_issuer},
                        warnings=warnings)

    async def read_keys_cfg(req: Request, d: FieldData) -> Response:
        return Response(data={"default": await ctx.keys(req.storage).default_id()})

    async def write_keys_cfg(req: Request, d: FieldData) -> Response:
        keys = ctx.keys(req.storage)
        new_default = d.get("default") or ""
        if not new_default or new_default == "default":
            raise UserError("Invalid key specification; must be non-empty and can't be 'default'.")
        try:
            rec = await keys.resolve(new_default)
        except UserError as exc:
            raise UserError("Error resolving issuer reference: " + exc.message) from None
        await keys.set_default(rec.id)
        return Response(data={"default": rec.id})

    url_fields = {name: Field(CSV, f"{name.replace('_', ' ')} URLs.") for name in URL_FIELDS}
    url_fields["enable_templating"] = Field(B, "Substitute {{issuer_id}}, {{cluster_path}} and "
                                               "{{cluster_aia_path}} in the URLs.", default=False)
    cluster_fields = {"path": Field(S, "This cluster's URL of the mount, e.g. https://vault:8200/v1/pki."),
                      "aia_path": Field(S, "URL of the mount for AIA, may be plain HTTP.")}
    issuers_fields = {"default": Field(S, "Reference (id or name) of the default issuer."),
                      "default_follows_latest_issuer": Field(B, "Move the default to each newly generated or "
                                                                "imported issuer.", default=False)}
    replace_fields = {"default": Field(S, "Reference (id or name) of the new default issuer.", default="next")}
    return [
        Path("config/urls", url_fields, {Operation.READ: read_urls, Operation.UPDATE: write_urls},
             operation_display={Operation.READ: pki("read", "urls-configuration"), Operation.UPDATE: pki("configure", "urls")},
             synopsis="Global AIA URLs put into issued certificates."),
        Path("config/cluster", cluster_fields, {Operation.READ: read_cluster_cfg, Operation.UPDATE: write_cluster_cfg},
             operation_display={Operation.READ: pki("read", "cluster-configuration"), Operation.UPDATE: pki("configure", "cluster")},
             synopsis="This cluster's mount URLs (for AIA templating and ACME)."),
        Path("config/issuers", issuers_fields, {Operation.READ: read_issuers_cfg, Operation.UPDATE: ctx.serialized(write_issuers_cfg)},
             operation_display={Operation.READ: pki("read", "issuers-configuration"), Operation.UPDATE: pki("configure", "issuers")},
             synopsis="The default issuer."),
        Path("root/replace", replace_fields, {Operation.UPDATE: ctx.serialized(write_issuers_cfg)}, display=pki("replace", "root"),
             forward_performance_standby=True,
             synopsis="Make another issuer (default: the one named 'next') the default."),
        Path("config/keys", {"default": Field(S, "Reference (id or name) of the default key.")},
             {Operation.READ: read_keys_cfg, Operation.UPDATE: ctx.serialized(write_keys_cfg)}, synopsis="The default key.",
             operation_display={Operation.READ: pki("read", "keys-configuration"), Operation.UPDATE: pki("configure", "keys")},)
    ]
