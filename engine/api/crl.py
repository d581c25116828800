"""config/crl, the CRL fetch paths (legacy, cert/ and per issuer), crl/rotate and crl/rotate-delta."""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from engine import crl as crlmod
from engine.issuers import IssuerRecord
from engine.api.openapi_hints import pki
from engine.issuers import ISSUER_PREFIX, ISSUERS_CONFIG
from engine.revocation import REVOKED_PREFIX, WAL_PREFIX
from engine.revocation_index import META_KEY, BUCKET_PREFIX, hyphen_to_int
from plugin.framework import (
    CodedError,
    Field,
    FieldData,
    FieldType,
    Operation,
    Path,
    Request,
    Response,
    is_performance_standby,
    name_regex,
    raw_response,
)

if TYPE_CHECKING:
    from engine.context import PkiContext

log = logging.getLogger("python-pki.crl")

DER_CRL = "application/pkix-crl"
PEM_CRL = "application/x-pem-file"

CONFIG_FIELDS = {
    "expiry": Field(FieldType.STRING, "The amount of time the generated CRL should be valid; defaults to 72 hours.",
                    default="72h"),
    "disable": Field(FieldType.BOOL, "If set to true, disables generating the CRL entirely."),
    "ocsp_disable": Field(FieldType.BOOL, "If set to true, ocsp unauthorized responses will be returned."),
    "ocsp_expiry": Field(FieldType.STRING, "The amount of time an OCSP response will be valid (controls the "
                                           "NextUpdate field); defaults to 12 hours; 0 omits NextUpdate.",
                         default="12h"),
    "auto_rebuild": Field(FieldType.BOOL, "If set to true, enables automatic rebuilding of the CRL."),
    "auto_rebuild_grace_period": Field(FieldType.STRING, "The time before the CRL expires to automatically "
                                                         "rebuild it, when enabled.", default="12h"),
    "enable_delta": Field(FieldType.BOOL, "Whether to enable delta CRLs between authoritative CRL rebuilds."),
    "delta_rebuild_interval": Field(FieldType.STRING, "The time between delta CRL rebuilds if a new revocation "
                                                      "has occurred.", default="15m"),
    "allow_expired_cert_revocation": Field(FieldType.BOOL, "Whether to allow revoking expired certificates."),
}


def _pem(der: bytes) -> str:
    return x509.load_der_x509_crl(der).public_bytes(serialization.Encoding.PEM).decode()


async def _default_issuer(req: Request, ctx: "PkiContext") -> IssuerRecord | None:
    return await ctx.issuers(req.storage).find("default")


def paths(ctx: "PkiContext") -> list[Path]:
    async def read_config(req: Request, d: FieldData) -> Response | None:
        return Response(data=(await crlmod.load_config(req.storage)).response())

    async def write_config(req: Request, d: FieldData) -> Response | None:
        old = await crlmod.load_config(req.storage)
        cfg = crlmod.CrlConfig.from_json(old.response())
        for name in CONFIG_FIELDS:
            value, supplied = d.get_ok(name)
            if supplied:
                setattr(cfg, name, str(value) if name in crlmod.CrlConfig.DURATIONS else bool(value))
        cfg.validate()
        await crlmod.save_config(req.storage, cfg)
        rt = crlmod.runtime(ctx)
        rt.drop_config()
        rt.config = cfg
        resp = Response(data=cfg.response())
        if (old.disable != cfg.disable or (old.auto_rebuild and not cfg.auto_rebuild)
                or old.enable_delta != cfg.enable_delta):
            for warning in await crlmod.request_rebuild(req.storage, ctx):
                resp.add_warning(warning)
        if old.ocsp_disable != cfg.ocsp_disable or old.ocsp_expiry != cfg.ocsp_expiry:
            if rt.ocsp_cache is not None:
                rt.ocsp_cache.clear()
        return resp

    async def fetch(req: Request, issuer: IssuerRecord | None, delta: bool) -> bytes | None:
        if issuer is None:
            return None
        return await crlmod.fetch_crl(req.storage, ctx, issuer, delta,
                                      may_build=not await is_performance_standby(req.system))

    async def legacy_crl(req: Request, d: FieldData) -> Response | None:
        path = req.path
        delta = path.startswith("crl/delta")
        as_pem = path.endswith("/pem")
        der = await fetch(req, await _default_issuer(req, ctx), delta)
        content_type = PEM_CRL if as_pem else DER_CRL
        if der is None:
            return raw_response(b"", content_type, 204)
        return raw_response(_pem(der).encode() if as_pem else der, content_type)

    async def cert_crl(req: Request, d: FieldData) -> Response | None:
        issuer = await _default_issuer(req, ctx)
        if issuer is None:
            raise CodedError(500, "no default issuer currently configured")
        der = await fetch(req, issuer, req.path.endswith("delta-crl"))
        return Response(data={"certificate": _pem(der).rstrip("\n") if der else "", "revocation_time": 0,
                              "revocation_time_rfc3339": ""})

    async def issuer_crl(req: Request, d: FieldData) -> Response | None:
        issuer = await ctx.issuers(req.storage).resolve(req.match["issuer_ref"])
        tail = req.path.rsplit("/crl", 1)[1]
        delta = tail.startswith("/delta")
        kind = tail.rsplit("/", 1)[1] if tail.endswith(("/der", "/pem")) else ""
        der = await fetch(req, issuer, delta)
        if der is None:
            # An issuer without a key signs no CRL. The built-in's answer (`bao pki health-check` skips an
            # issuer whose CRL fetch fails, and cannot parse an empty one).
            ref = req.match["issuer_ref"]
            raise CodedError(500, f"unable to find CRL for issuer: id:{issuer.id if issuer else ref}/ref:{ref}")
        if kind == "":
            return Response(data={"crl": _pem(der)})
        content_type = PEM_CRL if kind == "pem" else DER_CRL
        return raw_response(_pem(der).encode() if kind == "pem" else der, content_type)

    async def rotate(req: Request, d: FieldData) -> Response | None:
        warnings = await crlmod.request_rebuild(req.storage, ctx)
        return Response(data={"success": True}, warnings=warnings)

    async def rotate_delta(req: Request, d: FieldData) -> Response | None:
        cfg = await crlmod.load_config(req.storage)
        if not cfg.enable_delta:
            return Response(data={"success": True}, warnings=[
                "requested rebuild of delta CRL when delta CRL is not enabled; this is a no-op"])
        warnings = await crlmod.rebuild(req.storage, ctx, complete=False)
        return Response(data={"success": True}, warnings=warnings)

    async def periodic(req: Request) -> None:
        for warning in await crlmod.periodic(req.storage, ctx):
            log.warning("periodic CRL rebuild: %s", warning)

    async def issuers_changed(req: Request) -> list[str]:
        return await crlmod.request_rebuild(req.storage, ctx)

    def invalidate(key: str) -> None:
        """Another node (the active, seen from a standby) wrote `key`: drop exactly what was derived from it."""
        rt = crlmod.runtime(ctx)
        ocsp_cache = rt.ocsp_cache
        if key == crlmod.CONFIG_KEY:
            rt.drop_config()
            if ocsp_cache is not None:
                ocsp_cache.clear()          # ocsp_disable / ocsp_expiry shape every response
        elif key == META_KEY or key.startswith(BUCKET_PREFIX):
            rt.drop_index()
        elif key.startswith(crlmod.CRL_PREFIX):
            rt.drop_crls()                  # crls/<id>, its chunks, crls/config
        elif key.startswith(REVOKED_PREFIX):
            # Reload (and reconcile) the index before trusting it to answer "not revoked" (engine.api.revoke);
            # the OCSP answer cached for that serial is stale.
            rt.drop_index()
            serial = hyphen_to_int(key[len(REVOKED_PREFIX):])
            if ocsp_cache is not None and serial is not None:
                ocsp_cache.drop_serial(serial)
        elif key.startswith(WAL_PREFIX):
            rt.drop_index()
        elif key.startswith(ISSUER_PREFIX) or key == ISSUERS_CONFIG:
            if ocsp_cache is not None:
                ocsp_cache.clear()          # responder choice, issuer hashes, signer keys

    ctx.periodic_hooks.append(periodic)
    ctx.issuer_change_hooks.append(issuers_changed)
    ctx.invalidation_hooks.append(invalidate)

    ref = name_regex("issuer_ref")
    ref_field = {"issuer_ref": Field(FieldType.STRING, "Reference to an existing issuer.", default="default")}
    return [
        Path("config/crl", CONFIG_FIELDS, {Operation.READ: read_config, Operation.UPDATE: write_config},
             operation_display={Operation.READ: pki("read", "crl-configuration"), Operation.UPDATE: pki("configure", "crl")},
             synopsis="Configure the CRL expiration, OCSP and rebuilding behaviour."),
        Path("crl(/delta)?(/pem)?", {}, {Operation.READ: legacy_crl}, display=pki("read", "crl-der|crl-delta|crl-pem|crl-delta-pem"),
             synopsis="Fetch the default issuer's complete or delta CRL (DER or PEM)."),
        Path("cert/(crl|delta-crl)", {}, {Operation.READ: cert_crl}, display=pki("read", "cert-crl|cert-delta-crl"),
             synopsis="Fetch the default issuer's CRL as JSON (PEM in `certificate`)."),
        Path(f"issuer/{ref}/crl(/pem|/der|/delta(/pem|/der)?)?", ref_field, {Operation.READ: issuer_crl},
             display=pki("issuer", "read-crl|read-crl-pem|read-crl-der|read-crl-delta|read-crl-delta-pem|read-crl-delta-der"),
             synopsis="Fetch an issuer's complete or delta CRL."),
        Path("crl/rotate", {}, {Operation.READ: rotate}, display=pki("rotate", "crl"), forward_performance_standby=True, synopsis="Force a rebuild of every CRL."),
        Path("crl/rotate-delta", {}, {Operation.READ: rotate_delta}, display=pki("rotate", "delta-crl"), forward_performance_standby=True, synopsis="Force a rebuild of the delta CRLs."),
    ]
