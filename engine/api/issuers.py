"""Issuer management and reading: `issuers/`, `issuer/:ref` (R/U/P/D), `issuer/:ref/{json,der,pem}`, imports
(`issuers/import/{cert,bundle}`, `config/ca`, `intermediate/set-signed`)."""
from __future__ import annotations

from typing import Any
from urllib.parse import urlparse

from cryptography.hazmat.primitives.serialization import Encoding

from engine import ca_ops
from engine.context import PkiContext
from engine.issuers import (
    CRL_SIGNING, ISSUING, LEAF_NOT_AFTER_BEHAVIORS, IssuerNotFoundError, IssuerRecord, IssuerStore,
    cert_allows_crl_signing,
)
from engine.signing import SIGNATURE_ALGORITHMS, canonical_signature_algorithm, signature_params
from engine.storage import Storage, get_json
from engine.urls import AiaUrls, read_cluster, read_global, render
from engine.x509util import key_type_name
from engine.api.openapi_hints import pki
from plugin.framework import (
    CodedError, Field, FieldData, FieldType, Operation, Path, Request, Response, UserError, list_response,
    name_regex, paginate, raw_response,
)

S, B, CSV, I = FieldType.STRING, FieldType.BOOL, FieldType.COMMA_STRING_SLICE, FieldType.INT
ALL_USAGE_NAMES = "crl-signing,issuing-certificates,ocsp-signing,read-only"


def issuer_read_data(issuer: IssuerRecord) -> dict[str, Any]:
    data: dict[str, Any] = {
        "issuer_id": issuer.id,
        "issuer_name": issuer.name,
        "key_id": issuer.key_id,
        "certificate": issuer.certificate_pem,
        "manual_chain": list(issuer.manual_chain) or None,
        "ca_chain": list(issuer.ca_chain),
        "leaf_not_after_behavior": issuer.leaf_not_after_behavior,
        "usage": issuer.usage_string,
        "revocation_signature_algorithm": issuer.revocation_signature_algorithm,
        "revoked": issuer.revoked,
        "issuing_certificates": [],
        "crl_distribution_points": [],
        "delta_crl_distribution_points": [],
        "ocsp_servers": [],
    }
    if issuer.revoked:
        data["revocation_time"] = issuer.revocation_time
        data["revocation_time_rfc3339"] = issuer.revocation_time_utc
    if issuer.aia is not None:
        data["issuing_certificates"] = list(issuer.aia.issuing_certificates)
        data["crl_distribution_points"] = list(issuer.aia.crl_distribution_points)
        data["delta_crl_distribution_points"] = list(issuer.aia.delta_crl_distribution_points)
        data["ocsp_servers"] = list(issuer.aia.ocsp_servers)
        data["enable_aia_url_templating"] = issuer.aia.enable_templating
    return data


def _read_response(issuer: IssuerRecord, warnings: list[str] | None = None) -> Response:
    resp = Response(data=issuer_read_data(issuer), warnings=list(warnings or []))
    if issuer.revocation_signature_algorithm.endswith("PSS"):
        resp.add_warning("Issuer uses a PSS Revocation Signature Algorithm. This algorithm will be downgraded to "
                         "PKCS#1v1.5 signature scheme on OCSP responses, due to limitations in the OCSP library.")
    return resp


async def resolve_for_read(issuers: IssuerStore, ref: str) -> IssuerRecord:
    """Unknown references answer 500 with Vault's text here: Terraform's drift detection depends on it."""
    try:
        return await issuers.resolve(ref)
    except IssuerNotFoundError as exc:
        raise CodedError(500, exc.message) from None


def parse_usage_list(raw: list[str]) -> set[str]:
    out = {"read-only"}
    for name in raw:
        if name not in ("read-only", ISSUING, CRL_SIGNING, "ocsp-signing"):
            raise UserError(f"Unable to parse specified usages: [{' '.join(raw)}] - valid values are "
                            f"{ALL_USAGE_NAMES}")
        out.add(name)
    return out


def parse_leaf_behavior(value: str) -> str:
    if value not in LEAF_NOT_AFTER_BEHAVIORS:
        raise UserError("Unknown value for field `leaf_not_after_behavior`. Possible values are `err`, "
                        "`truncate`, and `permit`.")
    return value


def parse_revocation_algorithm(value: str, issuer: IssuerRecord) -> str:
    try:
        name = canonical_signature_algorithm(value)
    except UserError:
        known = ", ".join(["sha256withrsa", "sha384withrsa", "sha512withrsa", "ecdsawithsha256", "ecdsawithsha384",
                           "ecdsawithsha512", "sha256withrsapss", "sha384withrsapss", "sha512withrsapss",
                           "pureed25519", "ed25519"])
        raise UserError(f"Unknown signature algorithm value: {value} - valid values are {known}") from None
    if name:
        kind = SIGNATURE_ALGORITHMS[name][0]
        cert_kind = key_type_name(issuer.certificate.public_key())  # type: ignore[arg-type]
        if kind != cert_kind:
            raise UserError(f"unable to use issuer of type {_go_pk_name(cert_kind)} to sign with {name} key type")
        signature_params(name)
    return name


def _go_pk_name(kind: str) -> str:
    return {"rsa": "RSA", "ec": "ECDSA", "ed25519": "Ed25519"}.get(kind, kind)


def check_urls(urls: list[str], field: str, templated: bool) -> None:
    if templated:
        return
    for url in urls:
        try:
            parsed = urlparse(url)
            ok = bool(parsed.scheme) and bool(parsed.netloc)
        except ValueError:
            ok = False
        if not ok or any(v in url for v in ("{{issuer_id}}", "{{cluster_path}}", "{{cluster_aia_path}}")):
            raise UserError(f"invalid URL found in Authority Information Access (AIA) parameter {field}: {url}")


async def resolve_manual_chain(issuers: IssuerStore, issuer: IssuerRecord, refs: list[str]) -> list[str]:
    chain: list[str] = []
    for index, ref in enumerate(refs):
        if index == 0 and ref == "self":
            ref = issuer.id
        found = await issuers.resolve(ref)
        if index == 0 and found.id != issuer.id:
            raise UserError(f"expected first cert in chain to be a self-reference, but was: {ref}/{found.id}")
        chain.append(found.id)
    return chain


async def roles_referencing(storage: Storage, name: str) -> int:
    """How many roles name this issuer reference (for Vault's dereferencing warnings). Role records belong to the
    roles module; only their issuer reference is read, under either spelling."""
    if not name:
        return 0
    count = 0
    for role in await storage.list("role/"):
        if role.endswith("/"):
            continue
        raw = await get_json(storage, "role/" + role)
        if isinstance(raw, dict) and (raw.get("issuer_ref") or raw.get("issuer")) == name:
            count += 1
    return count


async def deref_warnings(storage: Storage, *names: str) -> list[str]:
    out = []
    for name in names:
        n = await roles_referencing(storage, name)
        if n:
            out.append(f"{n} roles reference {name}")
    return out


async def template_warning(storage: Storage, issuer: IssuerRecord) -> list[str]:
    if issuer.aia is None or not issuer.aia.enable_templating:
        return []
    try:
        render(issuer.aia, issuer.id, await read_cluster(storage))
    except UserError as exc:
        return [f"issuance may fail: {exc.message}\n\nConsider setting the cluster-local address if it is not "
                "already set."]
    return []


ISSUER_FIELDS: dict[str, Field] = {
    "issuer_ref": Field(S, "Reference to an issuer: id, name or 'default'.", default="default"),
    "issuer_name": Field(S, "Issuer name (unique, not 'default')."),
    "leaf_not_after_behavior": Field(S, "What to do when a leaf would outlive the issuer: err, truncate or permit.",
                                     default="err"),
    "manual_chain": Field(CSV, "Issuer references forming this issuer's chain; the first must be this issuer "
                               "('self')."),
    "usage": Field(CSV, "Allowed usages: read-only, issuing-certificates, crl-signing, ocsp-signing.",
                   default=["read-only", "issuing-certificates", "crl-signing", "ocsp-signing"]),
    "revocation_signature_algorithm": Field(S, "Signature algorithm for CRLs and OCSP responses.", default=""),
    "issuing_certificates": Field(CSV, "Issuing certificate URLs (AIA caIssuers) for certificates it signs."),
    "crl_distribution_points": Field(CSV, "CRL distribution point URLs for certificates it signs."),
    "delta_crl_distribution_points": Field(CSV, "Delta CRL distribution point URLs."),
    "ocsp_servers": Field(CSV, "OCSP responder URLs for certificates it signs."),
    "enable_aia_url_templating": Field(B, "Substitute {{issuer_id}}, {{cluster_path}}, {{cluster_aia_path}}.",
                                       default=False),
}


def paths(ctx: PkiContext) -> list[Path]:

    async def list_issuers(req: Request, d: FieldData) -> Response | None:
        issuers = ctx.issuers(req.storage)
        ids = paginate(await issuers.list(), d.get("after") or "", d.get("limit") or 0)
        default = await issuers.default_id()
        info: dict[str, Any] = {}
        for issuer_id in ids:
            rec = await issuers.get(issuer_id)
            if rec is None:
                continue
            info[issuer_id] = {"issuer_name": rec.name, "is_default": issuer_id == default,
                               "serial_number": rec.serial_number, "key_id": rec.key_id}
        if not info:
            return None
        return list_response(list(info), info)

    async def read_issuer(req: Request, d: FieldData) -> Response:
        issuer = await resolve_for_read(ctx.issuers(req.storage), req.match["issuer_ref"])
        return _read_response(issuer)

    async def read_raw(req: Request, d: FieldData) -> Response:
        issuers = ctx.issuers(req.storage)
        issuer = await resolve_for_read(issuers, req.match["issuer_ref"])
        kind = req.path.rsplit("/", 1)[1]
        if kind == "pem":
            return raw_response(issuer.certificate_pem.encode(), "application/pem-certificate-chain")
        if kind == "der":
            return raw_response(issuer.certificate.public_bytes(Encoding.DER), "application/pkix-cert")
        return Response(data={"certificate": issuer.certificate_pem, "ca_chain": list(issuer.ca_chain),
                              "issuer_id": issuer.id, "issuer_name": issuer.name})

    async def _update(req: Request, d: FieldData, patch: bool) -> Response:
        issuers = ctx.issuers(req.storage)
        ref = req.match["issuer_ref"]
        current = await resolve_for_read(issuers, ref)
        fresh = current.copy()
        warnings: list[str] = []
        old_name = current.name

        # --- validate everything first -------------------------------------------------------------------
        name_value, name_given = d.get_ok("issuer_name")
        if not patch or name_given:
            new_name = str(name_value).strip() if name_given else ""
            if name_given and not new_name:
                raise UserError("expected non-empty issuer name")
            if new_name:
                new_name = ca_ops.check_new_name(new_name, "issuer")
                other = await issuers.find(new_name)
                if other is not None and other.id != current.id:
                    raise UserError("issuer name already in use")
            fresh.name = new_name
        if not patch or d.has("leaf_not_after_behavior"):
            fresh.leaf_not_after_behavior = parse_leaf_behavior(d.get("leaf_not_after_behavior"))
        if not patch or d.has("usage"):
            usage = parse_usage_list(d.get("usage"))
            if usage != current.usage:
                if current.revoked and ISSUING in usage:
                    raise UserError("This issuer was revoked; unable to modify its usage to include certificate "
                                    "signing again. Reissue this certificate (preferably with a new key) and "
                                    "modify that entry instead.")
                if CRL_SIGNING in usage and not cert_allows_crl_signing(current.certificate):
                    raise UserError("This issuer's underlying certificate lacks the CRLSign KeyUsage value; "
                                    "unable to set CRLSigningUsage on this issuer as a result.")
            fresh.usage = usage
        if not patch or d.has("revocation_signature_algorithm"):
            fresh.revocation_signature_algorithm = parse_revocation_algorithm(
                d.get("revocation_signature_algorithm"), current)

        aia = AiaUrls.from_json(current.aia.to_json()) if current.aia else AiaUrls()
        if patch:
            if d.has("enable_aia_url_templating") and d.get("enable_aia_url_templating"):
                aia.enable_templating = True
            for name in ("issuing_certificates", "crl_distribution_points", "delta_crl_distribution_points",
                         "ocsp_servers"):
                if d.has(name):
                    urls = list(d.get(name))
                    check_urls(urls, name, aia.enable_templating)
                    setattr(aia, name, urls)
        else:
            templating = bool(d.get("enable_aia_url_templating"))
            for name in ("issuing_certificates", "crl_distribution_points", "delta_crl_distribution_points",
                         "ocsp_servers"):
                check_urls(list(d.get(name)), name, templating)
            aia.issuing_certificates = list(d.get("issuing_certificates"))
            aia.crl_distribution_points = list(d.get("crl_distribution_points"))
            aia.ocsp_servers = list(d.get("ocsp_servers"))
            # Vault's POST keeps the stored delta CRL URLs (only PATCH changes them); we follow it.
            aia.enable_templating = templating
        fresh.aia = None if aia.is_empty() else aia

        if not patch or d.has("manual_chain"):
            fresh.manual_chain = await resolve_manual_chain(issuers, current, list(d.get("manual_chain")))

        # --- then write -------------------------------------------------------------------------------------
        await issuers.put(fresh)
        stored = await issuers.get(fresh.id) or fresh
        if fresh.name != old_name:
            warnings += await deref_warnings(req.storage, old_name)
        warnings += await template_warning(req.storage, stored)
        if fresh.name != old_name or fresh.usage != current.usage:
            warnings += await ctx.issuers_changed(req)
        return _read_response(stored, warnings)

    async def update_issuer(req: Request, d: FieldData) -> Response:
        return await _update(req, d, patch=False)

    async def patch_issuer(req: Request, d: FieldData) -> Response:
        return await _update(req, d, patch=True)

    async def delete_issuer(req: Request, d: FieldData) -> Response:
        issuers = ctx.issuers(req.storage)
        ref = req.match["issuer_ref"]
        issuer = await issuers.find(ref)
        # The built-in answers 200 with `"data": null`, whether or not the issuer existed.
        if issuer is None:
            return Response(data=None)
        warnings: list[str] = []
        if issuer.name:
            warnings += await deref_warnings(req.storage, issuer.name)
        warnings += await deref_warnings(req.storage, issuer.id)
        was_default = await issuers.default_id() == issuer.id
        if was_default:
            cfg = await issuers.config()
            await issuers.set_config(type(cfg)(default="", default_follows_latest_issuer=
                                               cfg.default_follows_latest_issuer))
        await issuers.delete(issuer.id)
        # Manual chains that named the deleted issuer lose that entry.
        for other in await issuers.all():
            if issuer.id in other.manual_chain:
                await issuers.put(other.copy(manual_chain=[i for i in other.manual_chain if i != issuer.id]))
        if was_default:
            warnings.append(f"Deleted issuer {issuer.id} (via issuer_ref {ref}); this was configured as the default "
                            "issuer. Operations without an explicit issuer will not work until a new default is "
                            "configured.")
            warnings += await deref_warnings(req.storage, "default")
        warnings += await ctx.issuers_changed(req)
        return Response(data=None, warnings=warnings)

    async def import_handler(req: Request, d: FieldData) -> Response:
        keys_allowed = req.path.endswith("bundle") or req.path == "config/ca"
        bundle_text = d.get("pem_bundle") if "pem_bundle" in d.schema else ""
        cert_text = d.get("certificate") if "certificate" in d.schema else ""
        if not bundle_text and not cert_text:
            raise UserError("'pem_bundle' and 'certificate' parameters were empty")
        if bundle_text and cert_text:
            raise UserError("'pem_bundle' and 'certificate' parameters were both provided")
        if cert_text:
            keys_allowed = False
            bundle_text = cert_text
        parsed = await ca_ops.parse_pem_bundle(bundle_text, keys_allowed)
        outcome = await ca_ops.import_bundle(ctx, req.storage, parsed)
        warnings = list(outcome.warnings)
        if (await read_global(req.storage)).is_empty():
            warnings.append(ca_ops.NO_AIA_WARNING)
        if outcome.imported_issuers:
            warnings += await ctx.issuers_changed(req)
        return Response(data=outcome.response_data(), warnings=warnings)

    pem_field = {"pem_bundle": Field(S, "PEM bundle of certificates and (where allowed) private keys.")}
    cert_field = {"certificate": Field(S, "PEM of the signed certificate, optionally followed by its chain.")}
    list_fields = {"after": Field(S, "List entries after this one.", query=True),
                   "limit": Field(I, "Maximum number of entries.", query=True)}
    ref = name_regex("issuer_ref")
    return [
        Path("issuers/?$", list_fields, {Operation.LIST: list_issuers}, display=pki("list", "issuers"),
             synopsis="List issuers (with name, default flag, serial and key)."),
        Path("issuer/" + ref + "/(json|der|pem)", {"issuer_ref": ISSUER_FIELDS["issuer_ref"]},
             {Operation.READ: read_raw}, display=pki("read", "issuer-json|issuer-der|issuer-pem"),
             responses={Operation.READ: {200: "OK", 304: "Not Modified"}}, synopsis="Fetch an issuer's certificate (unauthenticated)."),
        Path("issuer/" + ref, ISSUER_FIELDS,
             {Operation.READ: read_issuer, Operation.UPDATE: ctx.serialized(update_issuer),
              Operation.PATCH: ctx.serialized(patch_issuer), Operation.DELETE: ctx.serialized(delete_issuer)},
             display=pki(suffix="issuer"),
             synopsis="Read, update, patch or delete an issuer."),
        Path("issuers/import/(cert|bundle)", pem_field,
             {Operation.UPDATE: ctx.serialized(import_handler)}, display=pki("issuers", "import-cert|import-bundle"), forward_performance_standby=True, synopsis="Import CA certificates (and, for bundle, keys)."),
        Path("config/ca", pem_field, {Operation.UPDATE: ctx.serialized(import_handler)}, display=pki("configure", "ca"),
             forward_performance_standby=True,
             synopsis="Import a CA bundle (certificates and keys)."),
        Path("intermediate/set-signed", cert_field, {Operation.UPDATE: ctx.serialized(import_handler)},
             display=pki("set-signed", "intermediate"),
             forward_performance_standby=True,
             synopsis="Import the signed intermediate certificate (and its chain) for a generated CSR."),
    ]
