"""CA lifecycle paths: root and intermediate generation, signing intermediates and self-issued certs, root deletion.

Each handler validates every parameter and builds the certificate before the first storage write; the key (if
new) is written before its issuer and removed again if writing the issuer fails.
"""
from __future__ import annotations

import base64
import datetime as dt
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

from engine import ca_ops, input_limits
from engine.csr_checks import check_csr
from engine.uri_names import normalize_uri, refuse_control_chars
from engine.api.ca_fields import intermediate_fields, root_fields, sign_intermediate_fields
from engine.ca_build import CaProfile, build_csr, build_root, resign_self_issued, sign_intermediate
from engine.certstore import store_certificate
from engine.context import PkiContext
from engine.issuers import ISSUING, IssuerRecord, require_usage
from engine.keys import KeyRecord
from engine.signing import (
    LocalSigningKey, SigningKey, certificate_signature_algorithm, generate_private_key, hash_for_key,
    load_signing_key, normalize_key_params, validate_signature_bits,
)
from engine.urls import AiaUrls, read_cluster, read_global, render
from engine.x509util import (csr_extensions, 
    build_subject, canonical_key_usage, common_name_of, ext_key_usage_oids, go_duration, idna_to_ascii,
    is_preferred_dns_name, key_bits_of, key_type_name, matches_vault_hostname, parse_hex_id, parse_ip,
    parse_other_san, parse_rfc3339, pem_blocks, private_key_to_der, private_key_to_pem, serial_to_colon_hex,
    split_alt_names, strip_pem, unix, utcnow,
)
from engine.api.openapi_hints import pki
from plugin.framework import Field, FieldData, FieldType, Operation, Path, Request, Response, UserError, name_regex

GEN_TYPES = ("internal", "exported", "existing", "kms")
PATHLEN_ZERO_ROOT = ("Max path length of the generated certificate is zero. This certificate cannot be used to "
                     "issue intermediate CA certificates.")
PATHLEN_ZERO_SIGNED = ("Max path length of the signed certificate is zero. This certificate cannot be used to "
                       "issue intermediate CA certificates.")
EMPTY_SUBJECT = ("This issuer certificate was generated without a Subject; this makes it likely that issuing leaf "
                 "certs with this certificate will cause TLS validation libraries to reject this certificate.")
ROOT_TEMPLATE_WARNING = (
    "When generating root CA, found global AIA configuration with issuer_id template unsuitable for root "
    "generation. This AIA configuration has been ignored. To include AIA on this root CA, set the global AIA "
    "configuration to not include issuer_id and instead to refer to a static issuer name.")
INTERMEDIATE_NO_AIA = (
    ca_ops.NO_AIA_WARNING + " Since this certificate is an intermediate, it might be useful to regenerate this "
    "certificate after fixing this problem for the root mount.")
BEYOND_CA = ("The expiration time for the signed certificate is after the CA's expiration time. If the new "
             "certificate is not treated as a root, validation paths with the certificate past the issuing CA's "
             "expiration time will fail.")


# ---------------------------------------------------------------------------------------------------------------
# Request parsing (no storage writes)

def output_format(d: FieldData) -> str:
    fmt = d.get("format")
    if fmt not in ("pem", "der", "pem_bundle"):
        raise UserError('the "format" path parameter must be "pem", "der", or "pem_bundle"')
    return fmt


def subject_and_sans(d: FieldData, cn_override: str | None = None) -> CaProfile:
    """Subject and SANs of a CA request. The CN goes into the SANs only when it is a DNS name RFC 5280 linters
    accept (Vault also copies single-label names such as `root`)."""
    cn = cn_override if cn_override is not None else (d.get("common_name") or "")
    dns: list[str] = []
    emails: list[str] = []
    if cn and not d.get("exclude_cn_from_sans"):
        if "@" in cn:
            emails.append(cn)
        else:
            converted = idna_to_ascii(cn)
            if is_preferred_dns_name(converted):
                dns.append(converted)
    input_limits.check_name_count(len((d.get("alt_names") or "").split(",")) + len(d.get("ip_sans"))
                                  + len(d.get("uri_sans")) + len(d.get("other_sans")))
    for name in split_alt_names(d.get("alt_names") or ""):
        if "@" in name:
            emails.append(name)
        else:
            converted = idna_to_ascii(name)
            if matches_vault_hostname(converted):
                dns.append(converted)
    ips = [str(parse_ip(ip)) for ip in d.get("ip_sans")]
    uris = list(d.get("uri_sans"))
    for uri in uris:
        if ":" not in uri:
            raise UserError(f'the provided URI Subject Alternative Name "{uri}" is not a valid URI')
    uris = [normalize_uri(uri) for uri in uris]
    other = list(d.get("other_sans"))
    refuse_control_chars(emails, "email address")
    refuse_control_chars(other, "other SAN")
    for entry in other:
        try:
            parse_other_san(entry)
        except UserError as exc:
            raise UserError(f"could not parse requested other SAN: {exc.message}") from None
    subject = build_subject(
        cn, country=_dedup(d.get("country")), organization=_dedup(d.get("organization")), ou=_dedup(d.get("ou")),
        locality=_dedup(d.get("locality")), province=_dedup(d.get("province")),
        street_address=_dedup(d.get("street_address")), postal_code=_dedup(d.get("postal_code")),
        serial_number=d.get("serial_number") or "")
    return CaProfile(subject=subject, dns=_dedup(dns), emails=_dedup(emails), ips=ips, uris=uris, other_sans=other)


def _dedup(items: list[str]) -> list[str]:
    out: list[str] = []
    for item in items:
        if item not in out:
            out.append(item)
    return out


async def validity(req: Request, d: FieldData, warnings: list[str]) -> tuple[dt.datetime, dt.datetime]:
    """(NotBefore, NotAfter): ttl or not_after, ttl defaulting to the mount's default and capped by its max."""
    now = utcnow()
    ttl = int(d.get("ttl") or 0)
    not_after_text = d.get("not_after") or ""
    if ttl > 0 and not_after_text:
        raise UserError("Either ttl or not_after should be provided. Both should not be provided in the same "
                        "request.")
    if d.has("not_before") and d.get("not_before") and "use_csr_values" in d.schema:
        parse_rfc3339(d.get("not_before"))   # parsed (and rejected if malformed) but, as in Vault, not applied
    max_ttl = await req.system.max_lease_ttl()
    if ttl == 0:
        ttl = await req.system.default_lease_ttl()
    if ttl > max_ttl:
        warnings.append(f'TTL "{go_duration(ttl)}" is longer than permitted maxTTL "{go_duration(max_ttl)}", so '
                        "maxTTL is being used")
        ttl = max_ttl
    not_after = parse_rfc3339(not_after_text) if not_after_text else now + dt.timedelta(seconds=ttl)
    backdate = int(d.get("not_before_duration") or 0)
    not_before = now - dt.timedelta(seconds=backdate if backdate > 0 else 30)
    return not_before.replace(microsecond=0), not_after.replace(microsecond=0)


def ca_usages(d: FieldData, profile: CaProfile) -> None:
    """key_usage only matters when supplied (DigitalSignature is the one addable bit); EKU names and OIDs."""
    usages, supplied = d.get_ok("key_usage")
    if supplied:
        profile.digital_signature = any(canonical_key_usage(u) == "DigitalSignature" for u in usages)
    names, names_given = d.get_ok("ext_key_usage")
    oids, oids_given = d.get_ok("ext_key_usage_oids")
    if names_given or oids_given:
        profile.ext_key_usages = ext_key_usage_oids(names if names_given else [], oids if oids_given else [])


def permitted_domains(d: FieldData) -> list[str]:
    out = []
    for domain in d.get("permitted_dns_domains"):
        out.append(idna_to_ascii(domain.strip()))
    return out


@dataclass
class KeyPlan:
    """Which key a generation request uses; resolved and validated before anything is generated or stored."""

    mode: str                        # internal | exported | existing | kms
    key_type: str = ""
    key_bits: int = 0
    existing: KeyRecord | None = None
    key_name: str = ""
    new_record: KeyRecord | None = None      # set once a new key exists (generated or kms), not yet stored
    private_key: PrivateKeyTypes | None = None
    signer: SigningKey | None = None


async def plan_key(ctx: PkiContext, req: Request, d: FieldData, mode: str) -> KeyPlan:
    if mode not in GEN_TYPES:
        raise UserError('the "exported" path parameter must be "internal", "existing", exported" or "kms"')
    ext_ref = (d.get("external_key_ref") or "") if "external_key_ref" in d.schema else ""
    managed = any(d.get(n) for n in ("managed_key_name", "managed_key_id") if n in d.schema)
    if mode == "kms" and not ext_ref and not managed:
        raise UserError('must specify "external_key_ref" on "kms"-typed generation requests')
    if mode != "kms" and ext_ref:
        raise UserError(f'cannot specify "external_key_ref" on "{mode}"-typed generation requests')
    if mode != "kms":
        # Otherwise the request would quietly get a local key (and `exported` would return it) instead of the
        # token key it names.
        for arg in ("managed_key_name", "managed_key_id"):
            if arg in d.schema and (d.get(arg) or "").strip():
                raise UserError(f'cannot specify "{arg}" on "{mode}"-typed generation requests; use the "kms" type')
    plan = KeyPlan(mode=mode)
    keys = ctx.keys(req.storage)
    plan.key_name = await ca_ops.requested_key_name(d, keys)
    if mode in ("internal", "exported"):
        # These modes always make a fresh local key (key_ref is not read), so `exported` never returns a token key.
        plan.key_type, plan.key_bits = normalize_key_params(d.get("key_type"), d.get("key_bits"))
        return plan
    if d.has("key_type") or d.has("key_bits"):
        raise UserError("invalid parameter for the kms/existing path parameter, key_type nor key_bits arguments "
                        "can be set in this mode")
    if mode == "existing":
        ref = (d.get("key_ref") or "").strip()
        if not ref:
            raise UserError("missing argument key_ref for existing type")
        plan.existing = await keys.resolve(ref)
        plan.key_type = plan.existing.key_type
        plan.signer = await _signer_for(ctx, req, plan.existing)
        return plan
    if ctx.kms_provider is None:
        raise UserError("kms-typed generation is not available: no external key provider is configured for this "
                        "plugin")
    record, is_new = await ctx.kms_provider(req, d)
    if is_new:
        plan.new_record = record
    else:
        plan.existing = record
    plan.key_type = record.key_type
    plan.signer = await load_signing_key(req.storage, record)
    return plan


async def _signer_for(ctx: PkiContext, req: Request, record: KeyRecord) -> SigningKey:
    cached = ctx.signers.get(record.id)
    if cached is None:
        cached = await load_signing_key(req.storage, record)
        ctx.signers[record.id] = cached
    return cached


async def materialize_key(plan: KeyPlan) -> None:
    """Generate the private key of an internal/exported plan (the slow step, done after validation)."""
    if plan.mode in ("internal", "exported"):
        plan.private_key = await generate_private_key(plan.key_type, plan.key_bits)
        plan.new_record = KeyRecord.from_private_key(plan.private_key, name=plan.key_name)
        plan.signer = LocalSigningKey(plan.private_key)
    elif plan.new_record is not None and plan.key_name and not plan.new_record.name:
        plan.new_record.name = plan.key_name
    record = plan.new_record or plan.existing
    if plan.mode == "exported" and (plan.private_key is None or record is None or record.managed_key):
        # Checked before anything is stored: a key held in a token is never returned.
        raise UserError("managed keys cannot be exported")


async def store_key(ctx: PkiContext, req: Request, plan: KeyPlan) -> tuple[KeyRecord, bool]:
    """(record, written_now). Existing keys are returned as they are."""
    if plan.existing is not None:
        return plan.existing, False
    assert plan.new_record is not None
    record, existed = await ca_ops.import_key(ctx, req.storage, plan.new_record)
    if plan.signer is not None:
        ctx.signers[record.id] = plan.signer
    return record, not existed


def private_key_output(plan: KeyPlan, fmt: str, pkcs8: bool) -> tuple[str, str, str]:
    """(private_key as returned, private_key_type, native PEM for pem_bundle concatenation)."""
    assert plan.private_key is not None
    native_pem = strip_pem(private_key_to_pem(plan.private_key))
    if fmt == "der":
        shown = base64.b64encode(private_key_to_der(plan.private_key, pkcs8=pkcs8)).decode()
    else:
        shown = strip_pem(private_key_to_pem(plan.private_key, pkcs8=pkcs8))
    return shown, plan.key_type, native_pem


async def root_aia(req: Request, warnings: list[str]) -> AiaUrls | None:
    """The global URLs for a new root; templates naming {{issuer_id}} cannot apply yet, so they are dropped."""
    urls = await read_global(req.storage)
    if urls.is_empty():
        return None
    if not urls.enable_templating:
        return urls
    cluster = await read_cluster(req.storage)
    try:
        return render(urls, "", cluster)
    except UserError as exc:
        try:
            render(urls, "empty-issuer-id", cluster)
        except UserError:
            raise UserError(f"unable to parse AIA URL information: {exc.message}\nUsing templated AIA URL's "
                            "{{issuer_id}} field when generating root certificates is not supported.") from None
        warnings.append(ROOT_TEMPLATE_WARNING)
        return None


def has_aia(cert: x509.Certificate) -> bool:
    for ext in cert.extensions:
        if ext.oid in (x509.oid.ExtensionOID.AUTHORITY_INFORMATION_ACCESS,
                       x509.oid.ExtensionOID.CRL_DISTRIBUTION_POINTS):
            return True
    return False


def pathlen_of(cert: x509.Certificate) -> int | None:
    try:
        return cert.extensions.get_extension_for_class(x509.BasicConstraints).value.path_length
    except x509.ExtensionNotFound:
        return None


def cert_text(cert: x509.Certificate, fmt: str) -> str:
    if fmt == "der":
        return base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()
    return strip_pem(cert.public_bytes(serialization.Encoding.PEM).decode())


# ---------------------------------------------------------------------------------------------------------------
# Handlers

def paths(ctx: PkiContext) -> list[Path]:

    async def generate_root(req: Request, d: FieldData) -> Response:
        warnings: list[str] = []
        mode = req.match.get("exported", "")
        fmt = output_format(d)
        plan = await plan_key(ctx, req, d, mode)
        validate_signature_bits(d.get("signature_bits"))
        issuers = ctx.issuers(req.storage)
        issuer_name = await ca_ops.requested_issuer_name(d, issuers)
        if req.path.startswith("root/rotate/") and not issuer_name and await issuers.find("next") is None:
            issuer_name = "next"
        profile = subject_and_sans(d)
        profile.not_before, profile.not_after = await validity(req, d, warnings)
        ca_usages(d, profile)
        profile.max_path_length = d.get("max_path_length")
        profile.permitted_dns_domains = permitted_domains(d)
        aia = await root_aia(req, warnings)

        await materialize_key(plan)
        assert plan.signer is not None
        cert = await build_root(plan.signer, profile, hash_for_key(plan.signer, d.get("signature_bits")),
                                bool(d.get("use_pss")) and plan.key_type == "rsa", aia)

        key_rec, key_written = await store_key(ctx, req, plan)
        try:
            issuer, _ = await ca_ops.import_issuer(
                ctx, req.storage, cert, issuer_name,
                revocation_signature_algorithm=certificate_signature_algorithm(cert))
        except BaseException:
            if key_written:
                await ca_ops.delete_key_quietly(ctx, req.storage, key_rec.id)
            raise
        await store_certificate(req.storage, cert)
        cfg = await issuers.config()
        if cfg.default_follows_latest_issuer:
            await issuers.set_default(issuer.id)
        warnings += await ctx.issuers_changed(req)

        data: dict[str, Any] = {"expiration": unix(cert.not_valid_after_utc),
                                "serial_number": serial_to_colon_hex(cert.serial_number)}
        text = cert_text(cert, fmt)
        data["certificate"] = text
        data["issuing_ca"] = text
        if mode == "exported":
            shown, kind, native = private_key_output(plan, fmt, d.get("private_key_format") == "pkcs8")
            data["private_key"] = shown
            data["private_key_type"] = kind
            if fmt == "pem_bundle":
                data["certificate"] = f"{native}\n{text}"
        data.update(issuer_id=issuer.id, issuer_name=issuer.name, key_id=key_rec.id, key_name=key_rec.name)
        if len(cert.subject) == 0:
            warnings.insert(0, EMPTY_SUBJECT)
        if not has_aia(cert):
            warnings.append(ca_ops.NO_AIA_WARNING)
        if pathlen_of(cert) == 0:
            warnings.append(PATHLEN_ZERO_ROOT)
        return Response(data=data, warnings=warnings)

    async def generate_intermediate(req: Request, d: FieldData) -> Response:
        warnings: list[str] = []
        mode = "existing" if req.path == "intermediate/cross-sign" else req.match.get("exported", "")
        fmt = output_format(d)
        plan = await plan_key(ctx, req, d, mode)
        validate_signature_bits(d.get("signature_bits"))
        profile = subject_and_sans(d)
        await materialize_key(plan)
        assert plan.signer is not None
        hash_alg = hash_for_key(plan.signer, d.get("signature_bits"))
        csr = await build_csr(plan.signer, profile, hash_alg, bool(d.get("add_basic_constraints")))
        key_rec, _ = await store_key(ctx, req, plan)

        csr_text = (base64.b64encode(csr.public_bytes(serialization.Encoding.DER)).decode() if fmt == "der"
                    else strip_pem(csr.public_bytes(serialization.Encoding.PEM).decode()))
        data: dict[str, Any] = {"csr": csr_text}
        if mode == "exported":
            shown, kind, native = private_key_output(plan, fmt, d.get("private_key_format") == "pkcs8")
            data["private_key"] = shown
            data["private_key_type"] = kind
            if fmt == "pem_bundle":
                data["csr"] = f"{native}\n{csr_text}"
        data["key_id"] = key_rec.id
        if (await read_global(req.storage)).is_empty():
            warnings.insert(0, INTERMEDIATE_NO_AIA)
        return Response(data=data, warnings=warnings)

    async def sign_intermediate_handler(req: Request, d: FieldData) -> Response:
        warnings: list[str] = []
        ref = req.match.get("issuer_ref", "default")
        fmt = d.get("format")
        if fmt not in ("pem", "der", "pem_bundle"):
            raise UserError('The "format" path parameter must be "pem" or "der"')
        issuers = ctx.issuers(req.storage)
        issuer = await _signing_issuer(issuers, ref)
        signer = await issuers.signing_key(issuer)
        csr = parse_csr(d.get("csr") or "")
        validate_signature_bits(d.get("signature_bits"))
        use_csr_values = bool(d.get("use_csr_values"))
        # An empty CN means "take it from the CSR" (only the CN: its SANs are not copied then).
        profile = subject_and_sans(d, None if d.get("common_name") else common_name_of(csr.subject))
        profile.not_before, profile.not_after = await validity(req, d, warnings)
        ca_usages(d, profile)
        profile.permitted_dns_domains = permitted_domains(d)
        skid_text = d.get("skid") or ""
        if skid_text:
            try:
                profile.skid = parse_hex_id(skid_text)
            except UserError:
                raise UserError(f"cannot parse requested SKID value as hex: {skid_text}") from None
        signer_pathlen = pathlen_of(issuer.certificate)
        if signer_pathlen == 0:
            raise UserError("signing certificate has a max path length of zero, and cannot issue further CA "
                            "certificates")
        requested, supplied = d.get_ok("max_path_length")
        if supplied:
            profile.max_path_length = requested
        else:
            profile.max_path_length = -1 if signer_pathlen is None else signer_pathlen - 1
        aia = await issuers.aia_for(issuer)
        hash_alg = hash_for_key(signer, d.get("signature_bits"), ec_honours_bits=True)
        cert = await sign_intermediate(signer, issuer.certificate, csr, profile, hash_alg,
                                       bool(d.get("use_pss")) and signer.key_type == "rsa",
                                       aia if not aia.is_empty() or aia.delta_crl_distribution_points else None,
                                       use_csr_values)
        await store_certificate(req.storage, cert)

        chain = await issuers.chain_pems(issuer)
        if issuer.certificate.not_valid_after_utc < cert.not_valid_after_utc:
            warnings.insert(0, BEYOND_CA)
        if len(cert.subject) == 0:
            warnings.append(EMPTY_SUBJECT)
        if not has_aia(cert):
            warnings.append(ca_ops.NO_AIA_WARNING)
        text = cert_text(cert, fmt)
        data: dict[str, Any] = {"expiration": unix(cert.not_valid_after_utc),
                                "serial_number": serial_to_colon_hex(cert.serial_number)}
        if fmt == "der":
            data["certificate"] = text
            data["issuing_ca"] = cert_text(issuer.certificate, "der")
            data["ca_chain"] = [text] + [cert_text(x509.load_pem_x509_certificate(p.encode()), "der")
                                         for p in chain]
        else:
            pem_chain = [strip_pem(p) for p in chain]
            data["certificate"] = "\n".join([text] + pem_chain) if fmt == "pem_bundle" else text
            data["issuing_ca"] = strip_pem(issuer.certificate_pem)
            data["ca_chain"] = [text] + pem_chain
        if pathlen_of(cert) == 0:
            warnings.append(PATHLEN_ZERO_SIGNED)
        return Response(data=data, warnings=warnings)

    async def sign_self_issued(req: Request, d: FieldData) -> Response:
        ref = req.match.get("issuer_ref", "default")
        cert = _parse_single_cert(d.get("certificate") or "")
        try:
            is_ca = cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
        except x509.ExtensionNotFound:
            is_ca = False
        if not is_ca:
            raise UserError("given certificate is not a CA certificate")
        if cert.issuer != cert.subject:
            raise UserError("given certificate is not self-issued")
        issuers = ctx.issuers(req.storage)
        issuer = await _signing_issuer(issuers, ref)
        signer = await issuers.signing_key(issuer)
        cert_type = key_type_name(cert.public_key())  # type: ignore[arg-type]
        if cert_type != signer.key_type and d.get("require_matching_certificate_algorithms"):
            raise UserError(f"signing certificate's public key algorithm ({signer.key_type}) does not match "
                            f"submitted certificate's ({cert_type}), and require_matching_certificate_algorithms "
                            "is true")
        hash_alg = hash_for_key(signer, 0)
        use_pss = False
        if cert_type == signer.key_type and cert.signature_hash_algorithm is not None and signer.key_type == "rsa":
            hash_alg = cert.signature_hash_algorithm
            use_pss = cert.signature_algorithm_oid.dotted_string == "1.2.840.113549.1.1.10"
        aia = await issuers.aia_for(issuer)
        new = await resign_self_issued(signer, issuer.certificate, cert, hash_alg, use_pss,
                                       None if aia.is_empty() else aia)
        return Response(data={"certificate": cert_text(new, "pem"),
                               "issuing_ca": strip_pem(issuer.certificate_pem)})

    async def delete_root(req: Request, d: FieldData) -> Response:
        issuers = ctx.issuers(req.storage)
        keys = ctx.keys(req.storage)
        for issuer_id in await issuers.list():
            await issuers.delete(issuer_id)
        for key_id in await keys.list():
            await keys.delete(key_id)
            ctx.signers.pop(key_id, None)
        await issuers.set_config(type(await issuers.config())(default="", default_follows_latest_issuer=(
            await issuers.config()).default_follows_latest_issuer))
        await keys.set_default("")
        for legacy in ("config/ca_bundle", "config/ca_bundle.bak", "crl"):
            await req.storage.delete(legacy)
        warnings = ["DELETE /root deletes all keys and issuers; prefer the new DELETE /key/:key_ref and DELETE "
                    "/issuer/:issuer_ref for finer granularity, unless removal of all keys and issuers is desired."]
        warnings += await ctx.issuers_changed(req)
        return Response(data=None, warnings=warnings)

    gen = "(?P<exported>\\w(([\\w.-]+)?\\w)?)"
    root_f = root_fields()
    inter_f = intermediate_fields()
    sign_f = sign_intermediate_fields()
    self_f = {
        "certificate": Field(FieldType.STRING, "PEM of the self-issued CA certificate to sign."),
        "require_matching_certificate_algorithms": Field(
            FieldType.BOOL, "Refuse when the signer's key type differs from the certificate's.", default=False),
        "issuer_ref": Field(FieldType.STRING, "Issuer to sign with.", default="default"),
    }
    return [
        Path("root/generate/" + gen, root_f, {Operation.UPDATE: ctx.serialized(generate_root)}, display=pki("generate", "root"),
             forward_performance_standby=True,
             synopsis="Generate a new root CA certificate and key (or use an existing key)."),
        Path("issuers/generate/root/" + gen, root_f, {Operation.UPDATE: ctx.serialized(generate_root)},
             display=pki("issuers", "generate-root"),
             forward_performance_standby=True,
             synopsis="Generate a new root CA issuer."),
        Path("root/rotate/" + gen, root_f, {Operation.UPDATE: ctx.serialized(generate_root)}, display=pki("rotate", "root"),
             forward_performance_standby=True,
             synopsis="Generate a new root for rotation (named 'next' unless issuer_name is given)."),
        Path("root", {}, {Operation.DELETE: ctx.serialized(delete_root)}, display=pki("delete", "root"),
             responses={Operation.DELETE: {200: "OK"}},
             forward_performance_standby=True,
             synopsis="Delete every issuer and key of this mount."),
        Path("intermediate/generate/" + gen, inter_f, {Operation.UPDATE: ctx.serialized(generate_intermediate)},
             display=pki("generate", "intermediate"),
             forward_performance_standby=True,
             synopsis="Generate an intermediate CA key and CSR."),
        Path("issuers/generate/intermediate/" + gen, inter_f, {Operation.UPDATE: ctx.serialized(generate_intermediate)},
             display=pki("issuers", "generate-intermediate"),
             forward_performance_standby=True,
             synopsis="Generate an intermediate CA key and CSR."),
        Path("intermediate/cross-sign", inter_f, {Operation.UPDATE: ctx.serialized(generate_intermediate)},
             display=pki("cross-sign", "intermediate"),
             forward_performance_standby=True,
             synopsis="Generate a CSR from an existing key, for cross-signing."),
        Path("root/sign-intermediate", sign_f, {Operation.UPDATE: sign_intermediate_handler}, display=pki("root", "sign-intermediate"),
             synopsis="Sign an intermediate CA CSR with the default issuer."),
        Path("issuer/" + name_regex("issuer_ref") + "/sign-intermediate", sign_f,
             {Operation.UPDATE: sign_intermediate_handler}, display=pki("issuer", "sign-intermediate"),
             synopsis="Sign an intermediate CA CSR with this issuer."),
        Path("root/sign-self-issued", self_f, {Operation.UPDATE: sign_self_issued}, display=pki("root", "sign-self-issued"),
             synopsis="Re-sign a self-issued CA certificate with the default issuer."),
        Path("issuer/" + name_regex("issuer_ref") + "/sign-self-issued", self_f,
             {Operation.UPDATE: sign_self_issued}, display=pki("issuer", "sign-self-issued"),
             synopsis="Re-sign a self-issued CA certificate with this issuer."),
    ]


async def _signing_issuer(issuers: Any, ref: str) -> IssuerRecord:
    """The issuer that signs a CA request: must exist, hold a key and have the issuing usage."""
    try:
        issuer = await issuers.resolve(ref)
    except UserError as exc:
        raise UserError(f"could not fetch the CA certificate (was one set?): {exc.message}") from None
    require_usage(issuer, ISSUING)
    return issuer


def parse_csr(text: str) -> x509.CertificateSigningRequest:
    if not text:
        raise UserError('"csr" is empty')
    input_limits.check_text_size(text, "the CSR")
    blocks = [b for label, b in pem_blocks(text) if label in ("CERTIFICATE REQUEST", "NEW CERTIFICATE REQUEST")]
    if not blocks:
        raise UserError("csr contains no data")
    try:
        csr = x509.load_pem_x509_csr(blocks[0].replace(b"NEW CERTIFICATE REQUEST", b"CERTIFICATE REQUEST"))
        csr.public_key()
    except x509.InvalidVersion as exc:
        raise UserError(f"certificate request could not be parsed: unsupported version {exc.parsed_version}"
                        ) from None
    except (ValueError, TypeError) as exc:
        raise UserError(f"certificate request could not be parsed: {exc}") from None
    except Exception:  # noqa: BLE001 - unsupported SPKI algorithms (e.g. RSASSA-PSS) raise library-specific errors
        raise UserError("Refusing to sign CSR with empty PublicKey. This usually means the SubjectPublicKeyInfo "
                        "field has an OID not recognized, such as 1.2.840.113549.1.1.10 for rsaPSS.") from None
    input_limits.check_extension_count(csr_extensions(csr), "the CSR")
    try:
        valid = csr.is_signature_valid
    except (ValueError, TypeError, InvalidSignature):
        valid = False
    if not valid:
        raise UserError("request signature invalid")
    pub = csr.public_key()
    kind = key_type_name(pub)  # type: ignore[arg-type]
    if kind == "unknown":
        raise UserError(f"Unknown key type in CSR: {type(pub).__name__}")
    if kind == "rsa" and key_bits_of(pub) < 2048:  # type: ignore[arg-type]
        raise UserError("RSA keys < 2048 bits are unsafe and not supported")
    check_csr(csr)
    return csr


def _parse_single_cert(text: str) -> x509.Certificate:
    input_limits.check_text_size(text, "the certificate")
    blocks = pem_blocks(text)
    if not blocks:
        raise UserError("certificate could not be PEM-decoded")
    try:
        cert = x509.load_pem_x509_certificate(blocks[0][1])
        input_limits.check_extension_count(cert.extensions, "the certificate")
    except ValueError as exc:
        raise UserError(f"error parsing certificate: {exc}") from None
    return cert

