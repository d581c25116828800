"""revoke, revoke-with-key, issuer/:ref/revoke, certs/revoked, and the `pki` lease's revoke callback.

Everything is validated before the first write; the revocation record is the only write on the common path, and
a 200 is answered only after it is in the server's storage. CRLs follow: at once (shared between concurrent
revokes) unless auto_rebuild defers them to the periodic hook.
"""
from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Callable

from cryptography import x509

from engine import crl as crlmod
from engine.issuers import ISSUING, IssuerRecord
from engine.revocation import (
    CERTS_PREFIX,
    REVOKED_PREFIX,
    RevocationRecord,
    canonical_serial,
    find_signing_issuer,
    new_record,
    now_rfc3339_nano,
    parse_certificate_pem,
    read_revocation,
    read_stored_cert,
    serial_int,
    signed_by,
    write_revocation,
)
from engine.signing import load_private_key_pem
from engine.x509util import cert_serial_colon, public_key_der, serial_storage_form
from engine.api.openapi_hints import pki
from plugin.framework import (
    Field,
    FieldData,
    FieldType,
    Operation,
    Path,
    Request,
    Response,
    SecretType,
    UserError,
    list_response,
    paginate,
    name_regex,
)

if TYPE_CHECKING:
    from engine.context import PkiContext

EXPIRY_WIGGLE_SECONDS = 2   # leases are stored with second granularity; the built-in engine allows the same


def revocation_data(rec: RevocationRecord) -> dict[str, object]:
    return {"revocation_time": rec.revocation_time, "revocation_time_rfc3339": rec.revocation_time_utc,
            "state": "revoked"}


class _SerialLocks:
    """Two revokes of one serial must not both write (the second would move the revocation time)."""

    def __init__(self, stripes: int = 64) -> None:
        self._locks = [asyncio.Lock() for _ in range(stripes)]

    def for_serial(self, serial: str) -> asyncio.Lock:
        return self._locks[hash(serial) % len(self._locks)]


def _locks(ctx: "PkiContext") -> _SerialLocks:
    locks = ctx.extra.get("revoke_locks")
    if locks is None:
        locks = ctx.extra["revoke_locks"] = _SerialLocks()
    return locks


async def revoke_certificate(req: Request, ctx: "PkiContext", cert: x509.Certificate, der: bytes, *,
                             byoc: bool, from_lease: bool = False) -> Response | None:
    """Revoke one certificate we hold (`byoc=False`: from certs/) or one presented as PEM (`byoc=True`)."""
    serial = cert_serial_colon(cert)
    async with _locks(ctx).for_serial(serial):
        existing, stored = await _read_both(req, ctx, serial)
        outcome = await _revoke_locked(req, ctx, cert, der, existing, stored, byoc=byoc, from_lease=from_lease)
    return await _finish(req, ctx, outcome)


async def revoke_serial(req: Request, ctx: "PkiContext", serial_text: str, *, from_lease: bool = False,
                        check: Callable[[x509.Certificate], None] | None = None) -> Response | None:
    """Revoke a stored certificate named by serial. The certificate and any existing revocation record are read
    together under the serial's lock: one storage round trip where reading them in turn took two."""
    colon = canonical_serial(serial_text)
    if colon is None:
        if from_lease:
            return None
        raise UserError(f"certificate with serial {serial_text} not found.")
    async with _locks(ctx).for_serial(colon):
        existing, der = await _read_both(req, ctx, colon)
        if der is None:
            if from_lease:
                return None   # no_store certificates cannot be revoked through their lease, as in the built-in
            raise UserError(f"certificate with serial {serial_text} not found.")
        try:
            cert = x509.load_der_x509_certificate(der)
        except ValueError:
            raise UserError(f"certificate with serial {serial_text} could not be parsed") from None
        if check is not None:
            check(cert)
        outcome = await _revoke_locked(req, ctx, cert, der, existing, der, byoc=False, from_lease=from_lease)
    return await _finish(req, ctx, outcome)


async def _read_both(req: Request, ctx: "PkiContext", serial: str) -> tuple[RevocationRecord | None, bytes | None]:
    """(existing revocation record, stored certificate), read together. When the revocation index is loaded it
    answers "not revoked" without a storage read: index + pending hold every `revoked/` key this process has seen
    (reconciled with storage when the index is loaded), and only this process writes them. "Revoked" still reads
    the record, for its times."""
    rt = crlmod.runtime(ctx)
    index = rt.index
    if index is not None:
        number = serial_int(serial)
        if number not in index and number not in rt.pending.entries:
            return None, await read_stored_cert(req.storage, serial)
    existing, stored = await asyncio.gather(read_revocation(req.storage, serial), read_stored_cert(req.storage, serial))
    return existing, stored


_Outcome = tuple[Response | None, bool]   # (response, whether a CRL rebuild is due now)


async def _revoke_locked(req: Request, ctx: "PkiContext", cert: x509.Certificate, der: bytes,
                         existing: RevocationRecord | None, stored: bytes | None, *, byoc: bool,
                         from_lease: bool) -> _Outcome:
    """The decision and the write; the caller holds the serial's lock and read `existing`/`stored` under it."""
    storage = req.storage
    serial = cert_serial_colon(cert)
    if existing is not None:
        return Response(data=revocation_data(existing)), False
    issuers = ctx.issuers(storage)
    for rec in await issuers.all():
        if rec.certificate.serial_number == cert.serial_number and rec.certificate == cert:
            raise UserError(f"adding issuer (id: {rec.id}) to its own CRL is not allowed")
    signer = await find_signing_issuer(issuers, cert, verify=byoc)
    if byoc and signer is None:
        raise UserError("certificate is not issued by any issuer in this mount; refusing to revoke it")
    rt = crlmod.runtime(ctx)
    cfg = await rt.crl_config(storage)
    if cert.not_valid_after_utc.timestamp() < time.time() + EXPIRY_WIGGLE_SECONDS \
            and not cfg.allow_expired_cert_revocation:
        return Response(warnings=[f"certificate with serial {serial} already expired; refusing to add to CRL"]), \
            False
    if from_lease and _is_ca(cert):
        return None, False   # CA certificates that once had leases are not revoked through them (built-in rule)
    if byoc:
        if stored is not None and stored != der:
            raise UserError("certificate with same serial but unequal value already present in this "
                            "cluster's storage; refusing to revoke")
        if stored is None:
            await storage.put(CERTS_PREFIX + serial_storage_form(serial), der)
    record = new_record(cert, der, signer.id if signer else "")
    await write_revocation(storage, record, wal=cfg.enable_delta)
    rt.pending.entries[serial_int(serial)] = (record.revocation_time, record.issuer_id)
    if cfg.enable_delta:
        rt.pending.wal_keys.add(serial_storage_form(serial))
    if rt.ocsp_cache is not None:
        rt.ocsp_cache.drop_serial(cert.serial_number)
    return Response(data=revocation_data(record)), not cfg.auto_rebuild


async def _finish(req: Request, ctx: "PkiContext", outcome: _Outcome) -> Response | None:
    resp, rebuild = outcome
    if rebuild and resp is not None:
        for warning in await crlmod.request_rebuild(req.storage, ctx):
            resp.add_warning(warning)
    return resp


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def _target(d: FieldData) -> tuple[str, x509.Certificate | None, bytes]:
    """(serial text, None, b"") or ("", certificate, DER) from exactly one of serial_number / certificate."""
    serial_text = (d.get("serial_number") or "").strip()
    pem = (d.get("certificate") or "").strip()
    if not serial_text and not pem:
        raise UserError("The serial number or certificate to revoke must be provided.")
    if serial_text and pem:
        raise UserError("Must provide either the certificate or the serial to revoke; not both.")
    if pem:
        cert, der = parse_certificate_pem(pem)
        return "", cert, der
    return serial_text, None, b""


def _check_private_key(cert: x509.Certificate, key_pem: str) -> None:
    if not key_pem.strip():
        raise UserError("The private key to prove possession of the certificate must be provided.")
    key = load_private_key_pem(key_pem)
    cert_pub, key_pub = cert.public_key(), key.public_key()
    if _kind(cert_pub) != _kind(key_pub):
        raise UserError("provided private key type does not match certificate's public key type")
    if public_key_der(cert_pub) != public_key_der(key_pub):  # type: ignore[arg-type]
        raise UserError("provided private key does not match certificate's public key")


def _kind(pub: object) -> str:
    name = type(pub).__name__.lower()
    for kind in ("rsa", "ellipticcurve", "ed25519", "ed448", "dsa"):
        if kind in name:
            return kind
    return name


def paths(ctx: "PkiContext") -> list[Path]:
    async def revoke(req: Request, d: FieldData) -> Response | None:
        serial_text, cert, der = _target(d)
        if cert is None:
            return await revoke_serial(req, ctx, serial_text)
        return await revoke_certificate(req, ctx, cert, der, byoc=True)

    async def revoke_with_key(req: Request, d: FieldData) -> Response | None:
        serial_text, cert, der = _target(d)
        key_pem = d.get("private_key") or ""
        if cert is None:
            return await revoke_serial(req, ctx, serial_text, check=lambda c: _check_private_key(c, key_pem))
        _check_private_key(cert, key_pem)
        return await revoke_certificate(req, ctx, cert, der, byoc=True)

    async def list_revoked(req: Request, d: FieldData) -> Response | None:
        keys = paginate([k.replace("-", ":") for k in await req.storage.list(REVOKED_PREFIX) if not k.endswith("/")],
                        d.get("after") or "", d.get("limit") or 0)
        return list_response(keys) if keys else None

    async def revoke_issuer(req: Request, d: FieldData) -> Response | None:
        return await _revoke_issuer(req, ctx, req.match["issuer_ref"])

    async def lease_revoke(req: Request) -> Response | None:
        serial = str((req.secret.internal_data if req.secret else {}).get("serial_number") or "")
        resp = await revoke_serial(req, ctx, serial, from_lease=True)
        return None if resp is None else Response(warnings=resp.warnings)

    # The lease type issuance registers (internal_data secret_type "pki"): ours replaces its stub.
    ctx.extra.setdefault("secret_types", {})["pki"] = SecretType(name="pki", revoke=lease_revoke)

    target_fields = {
        "serial_number": Field(FieldType.STRING, "Certificate serial number, in colon- or hyphen-separated "
                                                 "octal"),
        "certificate": Field(FieldType.STRING, "Certificate to revoke in PEM format; must be signed by an "
                                               "issuer in this mount."),
    }
    return [
        Path("revoke", fields=target_fields, operations={Operation.UPDATE: revoke}, display=pki("revoke"),
             synopsis="Revoke a certificate by serial number or with explicit certificate.",
             description="Revoke a certificate; the revocation is in storage when the call returns."),
        Path("revoke-with-key", fields={**target_fields, "private_key": Field(
                 FieldType.STRING, "Key to use to verify revocation permission; must be in PEM format.")},
             operations={Operation.UPDATE: revoke_with_key}, display=pki("revoke", "with-key"),
             synopsis="Revoke a certificate, proving possession of its private key."),
        Path("certs/revoked/?", fields={
                 "after": Field(FieldType.STRING, "Optional entry to list begin listing after.", query=True),
                 "limit": Field(FieldType.INT, "Optional number of entries to return.", default=-1, query=True)},
             operations={Operation.LIST: list_revoked}, display=pki("list", "revoked-certs"),
             synopsis="List all revoked serial numbers within the local cluster."),
        Path(f"issuer/{name_regex('issuer_ref')}/revoke", fields={
                 "issuer_ref": Field(FieldType.STRING, "Reference to an existing issuer.", default="default")},
             operations={Operation.UPDATE: revoke_issuer}, display=pki("revoke", "issuer"),
             synopsis="Revoke the specified issuer certificate."),
    ]


async def _revoke_issuer(req: Request, ctx: "PkiContext", ref: str) -> Response:
    """Irreversible: marks the issuer revoked, removes its issuing usage, and puts it on its parents' CRLs."""
    storage = req.storage
    issuers = ctx.issuers(storage)
    rec = await issuers.resolve(ref)
    warnings: list[str] = []
    if not rec.revoked:
        everyone = await issuers.all()
        parents = [p for p in everyone if p.id != rec.id and
                   p.certificate.subject == rec.certificate.issuer and signed_by(rec.certificate, p.certificate)]
        if rec.is_self_signed():
            warnings.append("This issuer is a self-signed (root) issuer; no CRLs in this mount will carry its "
                            "revocation. Distribute its revocation out of band.")
        elif not parents:
            warnings.append("This issuer's parent is not in this mount; no CRLs in this mount will carry its "
                            "revocation.")
        ns = time.time_ns()
        updated = rec.copy(revoked=True, revocation_time=ns // 1_000_000_000,
                           revocation_time_utc=now_rfc3339_nano(ns), usage=set(rec.usage) - {ISSUING})
        await issuers.put(updated)
        ctx.invalidate("config/issuer/" + rec.id)
        if await issuers.default_id() == rec.id:
            warnings.append("This issuer is the default issuer; it can no longer issue certificates. Choose "
                            "another default issuer with config/issuers.")
        warnings.extend(await crlmod.request_rebuild(storage, ctx))
        rec = await issuers.resolve(rec.id)
    return Response(data=_issuer_view(rec, await issuers.chain_pems(rec)), warnings=warnings)


def _issuer_view(rec: IssuerRecord, chain: list[str]) -> dict[str, object]:
    data: dict[str, object] = {
        "issuer_id": rec.id, "issuer_name": rec.name, "key_id": rec.key_id,
        "certificate": rec.certificate_pem, "ca_chain": chain, "manual_chain": rec.manual_chain or None,
        "leaf_not_after_behavior": rec.leaf_not_after_behavior, "usage": rec.usage_string,
        "revocation_signature_algorithm": rec.revocation_signature_algorithm, "revoked": rec.revoked,
    }
    if rec.revoked:
        data["revocation_time"] = rec.revocation_time
        data["revocation_time_rfc3339"] = rec.revocation_time_utc
    aia = rec.aia
    data["issuing_certificates"] = aia.issuing_certificates if aia else []
    data["crl_distribution_points"] = aia.crl_distribution_points if aia else []
    data["delta_crl_distribution_points"] = aia.delta_crl_distribution_points if aia else []
    data["ocsp_servers"] = aia.ocsp_servers if aia else []
    if aia is not None and aia.has_any():
        data["enable_aia_url_templating"] = aia.enable_templating
    return data

