"""Revocation records: the durable truth every CRL and OCSP answer is derived from.

A revoke writes one small entry, `revoked/<serial>` (the record, in the built-in engine's JSON shape), plus a
`delta-wal/<serial>` pointer when delta CRLs are on; nothing that grows with the number already revoked, so a
revoke costs the same at 10 or 100,000 revoked. The CRL builder folds new revocations into a chunked index
(engine.revocation_index); after a restart it finds records the index lacks by listing `revoked/` once, so a
crash right after a revoke's 200 loses nothing. The record is written before the WAL entry, and a WAL entry
without its record is ignored.
"""
from __future__ import annotations

import base64
import datetime as dt
import time
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization

from engine.issuers import IssuerRecord, IssuerStore
from engine.storage import Storage, get_json, put_json
from engine.x509util import cert_serial_colon, pem_blocks, serial_storage_form, serial_to_colon_hex
from plugin.framework import UserError

REVOKED_PREFIX = "revoked/"
WAL_PREFIX = "delta-wal/"
CERTS_PREFIX = "certs/"
# Keys inside delta-wal/ that are bookkeeping, not revoked serials (the built-in engine's names).
WAL_RESERVED = ("last-revoked-serial", "last-build-serial")

_SERIAL_CHARS = set("0123456789abcdefABCDEF:-")


@dataclass
class RevocationRecord:
    serial: str                 # colon form
    certificate_der: bytes
    revocation_time: int        # unix seconds
    revocation_time_utc: str    # RFC 3339 with nanoseconds, as the built-in engine stores it
    issuer_id: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "certificate_bytes": base64.b64encode(self.certificate_der).decode(),
            "revocation_time": self.revocation_time,
            "revocation_time_utc": self.revocation_time_utc,
            "issuer_id": self.issuer_id,
        }

    @classmethod
    def from_json(cls, serial: str, raw: dict[str, Any]) -> "RevocationRecord":
        return cls(
            serial=serial,
            certificate_der=base64.b64decode(raw.get("certificate_bytes") or ""),
            revocation_time=int(raw.get("revocation_time") or 0),
            revocation_time_utc=str(raw.get("revocation_time_utc") or ""),
            issuer_id=str(raw.get("issuer_id") or ""),
        )

    def certificate(self) -> x509.Certificate | None:
        try:
            return x509.load_der_x509_certificate(self.certificate_der)
        except ValueError:
            return None


@dataclass
class WalEntry:
    serial: int
    revocation_time: int
    issuer_id: str

    def to_json(self) -> dict[str, Any]:
        return {"serial": serial_to_colon_hex(self.serial), "revocation_time": self.revocation_time,
                "issuer_id": self.issuer_id}

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> "WalEntry":
        return cls(serial=int(str(raw["serial"]).replace(":", ""), 16),
                   revocation_time=int(raw.get("revocation_time") or 0), issuer_id=str(raw.get("issuer_id") or ""))


def canonical_serial(text: str) -> str | None:
    """Colon form of a user-supplied serial (colon or hyphen separated, any case); None if it is not one.

    Bare hex without separators is refused, as the built-in engine does (it answers "not found")."""
    raw = text.strip()
    if not raw or not set(raw) <= _SERIAL_CHARS:
        return None
    parts = raw.lower().replace("-", ":").split(":")
    if any(len(p) not in (1, 2) for p in parts):
        return None
    if len(parts) == 1 and len(parts[0]) > 2:
        return None
    value = int("".join(p.zfill(2) for p in parts), 16)
    return serial_to_colon_hex(value)


def serial_int(colon: str) -> int:
    return int(colon.replace(":", ""), 16)


def now_rfc3339_nano(ns: int) -> str:
    secs, frac = divmod(ns, 1_000_000_000)
    base = dt.datetime.fromtimestamp(secs, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    frac_text = f"{frac:09d}".rstrip("0")
    return base + (f".{frac_text}" if frac_text else "") + "Z"


# ---------------------------------------------------------------------------------------------------------------
# Storage access (E2's `cert/:serial` read path calls `read_revocation`)

async def read_revocation(storage: Storage, serial: str) -> RevocationRecord | None:
    """The revocation record of a serial in colon or hyphen form, or None when it is not revoked."""
    colon = canonical_serial(serial)
    if colon is None:
        return None
    raw = await get_json(storage, REVOKED_PREFIX + serial_storage_form(colon))
    return None if raw is None else RevocationRecord.from_json(colon, raw)


async def read_stored_cert(storage: Storage, colon: str) -> bytes | None:
    return await storage.get(CERTS_PREFIX + serial_storage_form(colon))


async def write_revocation(storage: Storage, record: RevocationRecord, wal: bool) -> None:
    """Record first, WAL pointer second (see the module docstring for why this order). The WAL entry is only
    needed for delta CRLs, so like the built-in engine we write it only when they are enabled."""
    key = serial_storage_form(record.serial)
    await put_json(storage, REVOKED_PREFIX + key, record.to_json())
    if not wal:
        return
    wal = WalEntry(serial_int(record.serial), record.revocation_time, record.issuer_id)
    await put_json(storage, WAL_PREFIX + key, wal.to_json())


def new_record(cert: x509.Certificate, der: bytes, issuer_id: str) -> RevocationRecord:
    ns = time.time_ns()
    return RevocationRecord(serial=cert_serial_colon(cert), certificate_der=der,
                            revocation_time=ns // 1_000_000_000, revocation_time_utc=now_rfc3339_nano(ns),
                            issuer_id=issuer_id)


# ---------------------------------------------------------------------------------------------------------------
# Which issuer in the mount signed a certificate

def signed_by(cert: x509.Certificate, issuer_cert: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(issuer_cert)
        return True
    except (ValueError, TypeError, InvalidSignature):
        return False


def _aki(cert: x509.Certificate) -> bytes | None:
    try:
        return cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value.key_identifier
    except x509.ExtensionNotFound:
        return None


def _skid(cert: x509.Certificate) -> bytes | None:
    try:
        return cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    except x509.ExtensionNotFound:
        return None


async def find_signing_issuer(issuers: IssuerStore, cert: x509.Certificate,
                              verify: bool = True) -> IssuerRecord | None:
    """The issuer in the mount whose certificate signed `cert`: subject and key id narrow the candidates, then
    the signature decides (`verify=False` trusts the narrowing, for certificates we stored ourselves)."""
    aki = _aki(cert)
    candidates = [r for r in await issuers.all() if r.certificate.subject == cert.issuer]
    if aki is not None:
        narrowed = [r for r in candidates if _skid(r.certificate) in (aki, None)]
        candidates = narrowed or candidates
    # Prefer issuers holding a key: they are the ones that can sign CRLs for the certificate.
    candidates.sort(key=lambda r: (0 if r.key_id else 1, r.id))
    for rec in candidates:
        if not verify or signed_by(cert, rec.certificate):
            return rec
    return None


def issuer_serials(all_issuers: list[IssuerRecord]) -> dict[str, str]:
    return {r.serial_number: r.id for r in all_issuers}


def parse_certificate_pem(text: str) -> tuple[x509.Certificate, bytes]:
    """The one certificate in a PEM string, with the built-in engine's error texts."""
    if len(text.strip()) < 75:
        raise UserError("provided certificate data was too short; perhaps a path was passed to the API rather "
                        "than the contents of a PEM file")
    blocks = [b for label, b in pem_blocks(text) if label == "CERTIFICATE"]
    if len(blocks) != 1:
        raise UserError("certificate contains no PEM-encoded certificate" if not blocks else
                        "certificate contained more than one PEM-encoded certificate")
    try:
        cert = x509.load_pem_x509_certificate(blocks[0])
    except ValueError:
        raise UserError("unable to parse certificate: invalid PEM or DER data") from None
    return cert, cert.public_bytes(serialization.Encoding.DER)
