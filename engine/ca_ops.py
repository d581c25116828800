"""Storage-changing CA operations shared by the generation, import and management paths.

Every operation validates its whole input first (parsing PEM, checking CA flags, names) and only then writes:
keys before issuers, the issuer record last, defaults after that.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

from engine import input_limits, workers
from engine.context import PkiContext
from engine.issuers import (
    ALL_USAGES, CRL_SIGNING, IssuerRecord, IssuerStore, cert_allows_crl_signing,
)
from engine.keys import KeyRecord, KeyStore
from engine.storage import Storage
from engine.x509util import key_type_name, pem_blocks, public_key_der, with_newline
from plugin.framework import UserError
from plugin.framework.fields import NAME_RE

NO_AIA_WARNING = (
    "This mount hasn't configured any authority information access (AIA) fields; this may make it harder for "
    "systems to find missing certificates in the chain or to validate revocation status of certificates. Consider "
    "updating /config/urls or the newly generated issuer with this information.")


# ---------------------------------------------------------------------------------------------------------------
# Names

def check_new_name(name: str, kind: str) -> str:
    """Validate a requested issuer/key name (trimmed); '' means no name. Uniqueness is checked by the caller."""
    name = name.strip()
    if not name:
        return ""
    if name.lower() == "default":
        raise UserError(f"reserved keyword 'default' can not be used as {kind} name")
    if not NAME_RE.match(name):
        raise UserError(f"{kind} name contained invalid characters")
    return name


async def requested_issuer_name(d: Any, issuers: IssuerStore) -> str:
    value, supplied = d.get_ok("issuer_name")
    if not supplied:
        return ""
    name = str(value).strip()
    if not name:
        raise UserError("expected non-empty issuer name")
    name = check_new_name(name, "issuer")
    if await issuers.find(name) is not None:
        raise UserError("issuer name already in use")
    return name


async def requested_key_name(d: Any, keys: KeyStore) -> str:
    value, supplied = d.get_ok("key_name")
    if not supplied:
        return ""
    name = check_new_name(str(value), "key")
    if name and await keys.find(name) is not None:
        raise UserError("key name already in use")
    return name


# ---------------------------------------------------------------------------------------------------------------
# Parsing input

_NON_KEY_LABELS = ("CERTIFICATE", "X509 CERTIFICATE", "CRL", "X509 CRL", "EC PARAMS", "EC PARAMETERS")


@dataclass
class ParsedBundle:
    keys: list[PrivateKeyTypes] = field(default_factory=list)
    certs: list[x509.Certificate] = field(default_factory=list)


async def parse_pem_bundle(text: str, keys_allowed: bool) -> ParsedBundle:
    """Every block of an import bundle, validated up front; errors in Vault's words."""
    if len(text) < 75:
        raise UserError("provided data for import was too short; perhaps a path was passed to the API rather than "
                        "the contents of a PEM file")
    out = ParsedBundle()
    raw = text.encode()
    pos = 0
    index = 0
    blocks = pem_blocks(raw)
    input_limits.check_bundle(text, len(blocks))
    key_blocks = [block for label, block in blocks if label not in _NON_KEY_LABELS] if keys_allowed else []
    loaded = dict(zip(key_blocks, await workers.load_private_keys(key_blocks)))
    # Anything that is not whitespace outside recognised blocks is an invalid block, as Go's pem.Decode sees it.
    spans = []
    for label, block in blocks:
        start = raw.find(block.rstrip(b"\n"), pos)
        spans.append((start, label, block))
        pos = start + len(block.rstrip(b"\n"))
    cursor = 0
    for start, label, block in spans:
        index += 1
        if raw[cursor:start].strip():
            raise UserError(f"error when parsing block {index}: invalid PEM data")
        cursor = start + len(block.rstrip(b"\n"))
        if label in ("CERTIFICATE", "X509 CERTIFICATE"):
            try:
                cert = x509.load_pem_x509_certificate(block.replace(b"X509 CERTIFICATE", b"CERTIFICATE"))
            except ValueError as exc:
                raise UserError(f"Error parsing issuer {len(out.certs)}: {exc}") from None
            input_limits.check_extension_count(cert.extensions, f"issuer {len(out.certs)}")
            out.certs.append(cert)
        elif label in ("CRL", "X509 CRL", "EC PARAMS", "EC PARAMETERS"):
            continue
        else:
            if not keys_allowed:
                raise UserError("private keys found in the PEM bundle but not allowed by the path; use "
                                "/issuers/import/bundle")
            key = loaded.get(block)
            if key is None:
                raise UserError(f"Error parsing key {len(out.keys)}: unable to parse private key")
            if key_type_name(key) == "unknown":
                raise UserError(f"Error parsing key {len(out.keys)}: unsupported private key type")
            out.keys.append(key)
    if raw[cursor:].strip():
        raise UserError(f"error when parsing block {index + 1}: invalid PEM data")
    if not spans:
        raise UserError("error when parsing block 1: invalid PEM data")
    for i, cert in enumerate(out.certs):
        check_ca_certificate(cert, i)
    return out


def check_ca_certificate(cert: x509.Certificate, index: int = 0) -> None:
    try:
        bc = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
        is_ca = bc.ca
    except x509.ExtensionNotFound:
        is_ca = False
    except ValueError:
        raise UserError(f"Error parsing issuer {index}: malformed extensions") from None
    if not is_ca:
        raise UserError(f"Error parsing issuer {index}: Refusing to import non-CA certificate")
    if key_type_name(cert.public_key()) == "unknown":  # type: ignore[arg-type]
        raise UserError(f"Error parsing issuer {index}: Refusing to import CA certificate with an unsupported "
                        "public key type")


# ---------------------------------------------------------------------------------------------------------------
# Keys

async def import_key(ctx: PkiContext, storage: Storage, record: KeyRecord) -> tuple[KeyRecord, bool]:
    """Store a key unless one with the same public key exists (then that one is returned, existed=True).

    Also attaches the key to key-less issuers holding its public key and fills unset defaults."""
    keys = ctx.keys(storage)
    issuers = ctx.issuers(storage)
    der = record.public_der()
    for existing in await keys.all():
        if existing.public_key_pem and existing.public_der() == der:
            return existing, True
    if record.name and await keys.find(record.name) is not None:
        raise UserError(f"an existing key is using the requested key name value: {record.name}")
    had_keys = bool(await keys.list())
    await keys.put(record)
    issuer_default = await issuers.default_id()
    for issuer in await issuers.all():
        if issuer.key_id:
            continue
        if public_key_der(issuer.certificate.public_key()) == der:  # type: ignore[arg-type]
            await issuers.put(issuer.copy(key_id=record.id))
            if not issuer_default:
                await issuers.set_default(issuer.id)
                issuer_default = issuer.id
    if not had_keys or not await keys.default_id():
        await keys.set_default(record.id)
    return record, False


async def delete_key_quietly(ctx: PkiContext, storage: Storage, key_id: str) -> None:
    """Undo a key written earlier in a request that then failed (no default left pointing at it)."""
    keys = ctx.keys(storage)
    await keys.delete(key_id)
    ctx.signers.pop(key_id, None)
    if await keys.default_id() == key_id:
        await keys.set_default("")


# ---------------------------------------------------------------------------------------------------------------
# Issuers

async def import_issuer(ctx: PkiContext, storage: Storage, cert: x509.Certificate, name: str = "",
                        *, revocation_signature_algorithm: str = "") -> tuple[IssuerRecord, bool]:
    """Store a CA certificate as an issuer unless the same certificate is already one (existed=True)."""
    issuers = ctx.issuers(storage)
    keys = ctx.keys(storage)
    existing = await issuers.find_by_certificate(cert)
    if existing is not None:
        return existing, True
    if name and await issuers.find(name) is not None:
        raise UserError(f"another issuer is using the requested name: {name}")
    pem = with_newline(cert.public_bytes(serialization.Encoding.PEM).decode())
    usage = set(ALL_USAGES)
    if not cert_allows_crl_signing(cert):
        usage.discard(CRL_SIGNING)
    key = await keys.find_by_public_key(cert.public_key())  # type: ignore[arg-type]
    had_issuers = bool(await issuers.list())
    record = IssuerRecord(id=IssuerStore.new_id(), name=name, key_id=key.id if key else "", certificate_pem=pem,
                          usage=usage, revocation_signature_algorithm=revocation_signature_algorithm)
    await issuers.put(record)
    if record.key_id and (not had_issuers or not await issuers.default_id()):
        await issuers.set_default(record.id)
    return await issuers.get(record.id) or record, False


@dataclass
class ImportOutcome:
    mapping: dict[str, str] = field(default_factory=dict)
    imported_keys: list[str] = field(default_factory=list)
    imported_issuers: list[str] = field(default_factory=list)
    existing_keys: list[str] = field(default_factory=list)
    existing_issuers: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def response_data(self) -> dict[str, Any]:
        # Go marshals empty (nil) id lists as null; consumers (Consul, Terraform) read `mapping`.
        return {
            "mapping": dict(self.mapping),
            "imported_keys": self.imported_keys or None,
            "imported_issuers": self.imported_issuers or None,
            "existing_keys": self.existing_keys or None,
            "existing_issuers": self.existing_issuers or None,
        }


async def import_bundle(ctx: PkiContext, storage: Storage, bundle: ParsedBundle) -> ImportOutcome:
    out = ImportOutcome()
    issuers = ctx.issuers(storage)
    for key in bundle.keys:
        rec, existed = await import_key(ctx, storage, KeyRecord.from_private_key(key))
        (out.existing_keys if existed else out.imported_keys).append(rec.id)
    for cert in bundle.certs:
        rec, existed = await import_issuer(ctx, storage, cert)
        current = await issuers.get(rec.id) or rec
        out.mapping[rec.id] = current.key_id
        (out.existing_issuers if existed else out.imported_issuers).append(rec.id)

    cfg = await issuers.config()
    keyed_new = [i for i in out.imported_issuers if out.mapping.get(i)]
    if keyed_new and cfg.default_follows_latest_issuer:
        if len(keyed_new) == 1:
            await issuers.set_default(keyed_new[0])
        else:
            out.warnings.append("Default issuer left unchanged: could not select new issuer automatically as "
                                "multiple imported issuers had key material in Vault.")
    cfg = await issuers.config()
    if cfg.default:
        if cfg.default in out.mapping and not out.mapping[cfg.default]:
            out.warnings.append(
                "The default issuer has no key associated with it. Some operations like issuing certificates and "
                "signing CRLs will be unavailable with the requested default issuer until a key is imported or the "
                "default issuer is changed.")
        if len(out.imported_issuers) > 1 and cfg.default in out.imported_issuers and len(keyed_new) > 1:
            out.warnings.append("The imported bundle contained multiple certs matching keys, the default issuer "
                                "that was selected should be verified and manually changed if incorrect.")
    return out
