"""CRLs signed on request (issuer/:ref/resign-crls, issuer/:ref/sign-revocation-list); nothing is stored.

The request's lists of revoked certificates and extensions are loose JSON; they are read here with the built-in
engine's rules (serials as hex with any separators, times as RFC 3339 or Unix seconds, extension values in base64,
the CRL's own AKI, CRL number and delta indicator reserved) and its messages, which name the entry at fault.
"""
from __future__ import annotations

import asyncio
import base64
import binascii
import datetime as dt
import re
from dataclasses import dataclass, field
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtensionOID

from engine.crl import THREAD_THRESHOLD
from engine.issuers import CRL_SIGNING, IssuerNotFoundError, IssuerRecord, IssuerStore, require_usage
from engine.signing import hash_for_key, is_blocking, sign_crl, signature_params
from engine.x509util import aki_from_issuer, serial_to_colon_hex
from plugin.framework import UserError, goparse
from plugin.framework.fields import FieldError, parse_bool, parse_duration

RESERVED_EXTENSIONS = (
    (ExtensionOID.AUTHORITY_KEY_IDENTIFIER, "authority key"),
    (ExtensionOID.CRL_NUMBER, "crl number"),
    (ExtensionOID.DELTA_CRL_INDICATOR, "delta crl"),
)
_ARC = re.compile(r"[+-]?\d+")
_UTC = dt.timezone.utc


@dataclass
class CrlRequest:
    """What both paths share: numbering, lifetime and output format, checked in the built-in's order."""
    crl_number: int
    delta_base: int          # -1: no delta CRL indicator
    next_update_seconds: int
    der: bool


def crl_format(value: str) -> bool:
    """True for DER output, False for PEM."""
    low = value.lower()
    if low not in ("pem", "der"):
        raise UserError(f"unknown format value of {value}")
    return low == "der"


def crl_request(crl_number: int, delta_base: int, next_update: str, fmt: str, *, format_first: bool) -> CrlRequest:
    der = crl_format(fmt) if format_first else False
    try:
        seconds = parse_duration(next_update, signed=True)
    except FieldError as exc:
        raise UserError(f"invalid value for next_update: {exc}") from None
    if seconds <= 0:
        raise UserError("next_update parameter must be greater than 0")
    if crl_number < 0:
        raise UserError("crl_number parameter must be 0 or greater")
    if delta_base < -1:
        raise UserError("delta_crl_base_number parameter must be -1 or greater")
    if not format_first:
        der = crl_format(fmt)
    return CrlRequest(crl_number, delta_base, seconds, der)


# ---------------------------------------------------------------------------------------------------------------
# Loose JSON values, read as Go's parseutil reads them

def _as_string(raw: Any, name: str) -> str:
    if isinstance(raw, str):
        return raw
    if isinstance(raw, bool):
        return "1" if raw else "0"
    if isinstance(raw, (int, float)):
        return str(raw)
    raise ValueError(f"'{name}' field value was not a string")


def _go_hex_error(text: str) -> str:
    """encoding/hex's message: the first byte that is no hex digit, else the odd length."""
    for b in text.encode():
        if chr(b) not in "0123456789abcdefABCDEF":
            shown = f"U+{b:04X} '{chr(b)}'" if chr(b).isprintable() else f"U+{b:04X}"
            return f"encoding/hex: invalid byte: {shown}"
    return "encoding/hex: odd length hex string"


def parse_serial(entry: dict[str, Any]) -> int:
    if "serial_number" not in entry:
        raise ValueError("missing 'serial_number' field")
    text = _as_string(entry["serial_number"], "serial_number")
    for sep in (":", ".", "-", " "):
        text = text.replace(sep, "")
    if not re.fullmatch(r"(?:[0-9A-Fa-f]{2})*", text):
        raise ValueError(f"'serial_number' failed converting to bytes: {_go_hex_error(text)}")
    serial = int.from_bytes(bytes.fromhex(text), "big")
    # cryptography enforces RFC 5280 4.1.2.2 (a positive serial of at most 20 octets); the built-in encodes any.
    if serial <= 0 or serial.bit_length() > 159:
        raise ValueError("'serial_number' must be a positive integer of at most 20 octets (RFC 5280 4.1.2.2)")
    return serial


def parse_absolute_time(raw: Any) -> dt.datetime:
    """parseutil.ParseAbsoluteTime: RFC 3339 (with or without fraction) or Unix seconds."""
    if isinstance(raw, bool) or raw is None:
        raise ValueError("could not parse time from input type")
    if isinstance(raw, (int, float)):
        if raw != int(raw):
            raise ValueError(f'strconv.ParseInt: parsing "{raw}": invalid syntax')
        return dt.datetime.fromtimestamp(int(raw), _UTC)
    if not isinstance(raw, str):
        raise ValueError("could not parse time from input type")
    if re.fullmatch(r"[+-]?\d+", raw):
        return dt.datetime.fromtimestamp(int(raw), _UTC)
    if re.fullmatch(r"\d{4}-\d\d-\d\d[Tt]\d\d:\d\d:\d\d(\.\d+)?([Zz]|[+-]\d\d:\d\d)", raw):
        try:
            return dt.datetime.fromisoformat(raw.upper().replace("Z", "+00:00")).astimezone(_UTC)
        except ValueError:
            pass
    raise ValueError("could not parse string as date and time")


def parse_revocation_time(entry: dict[str, Any]) -> dt.datetime:
    if "revocation_time" not in entry:
        raise ValueError("missing 'revocation_time' field")
    raw = entry["revocation_time"]
    try:
        when = parse_absolute_time(raw)
    except ValueError as exc:
        raise ValueError(f"failed parsing time {raw}: {exc}") from None
    if when.year < 1950:
        # cryptography writes revocation dates as UTCTime or GeneralizedTime from 1950 on only.
        raise ValueError(f"failed parsing time {raw}: revocation dates before 1950 are not supported")
    return when


def _oid(entry: dict[str, Any]) -> x509.ObjectIdentifier:
    if "id" not in entry:
        raise ValueError("missing id field")
    text = _as_string(entry["id"], "id")
    if not text:
        raise ValueError("zero length object identifier")
    for i, part in enumerate(text.split(".")):
        if not _ARC.fullmatch(part):
            raise ValueError(f'failed parsing asn1 index element {i} value {part}: strconv.Atoi: parsing "{part}": '
                             "invalid syntax")
    try:
        return x509.ObjectIdentifier(text)
    except ValueError:
        raise ValueError(f"invalid object identifier {text}") from None


def _value(entry: dict[str, Any]) -> bytes:
    if "value" not in entry:
        raise ValueError("missing 'value' field")
    text = _as_string(entry["value"], "value")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        bad = next((i for i, c in enumerate(text) if not (c.isalnum() and c.isascii()) and c not in "+/="),
                   len(text) - len(text) % 4)
        raise ValueError(f"failed base64 decoding 'value' field: illegal base64 data at input byte {bad}") from None


def _critical(entry: dict[str, Any]) -> bool:
    raw = entry.get("critical")
    if raw is None or raw == "":
        return False
    try:
        return goparse.parse_bool(raw) if isinstance(raw, str) else parse_bool(raw)
    except (FieldError, goparse.GoSyntaxError) as exc:
        # Go's parsers' messages here never repeat the value (plugin/framework/goparse.py).
        raise ValueError(f"critical field value failed to be parsed: cannot parse '' as bool: {exc}") from None


def parse_extension(entry: dict[str, Any]) -> x509.Extension[x509.UnrecognizedExtension]:
    oid = _oid(entry)
    for reserved, label in RESERVED_EXTENSIONS:
        if oid == reserved:
            raise ValueError(f"{label} object identifier ({oid.dotted_string}) is reserved")
    critical = _critical(entry)
    return x509.Extension(oid, critical, x509.UnrecognizedExtension(oid, _value(entry)))


def parse_extensions(raw: list[Any]) -> list[x509.Extension[x509.UnrecognizedExtension]]:
    out: list[x509.Extension[x509.UnrecognizedExtension]] = []
    seen: set[str] = set()
    for i, entry in enumerate(raw):
        if not isinstance(entry, dict):
            raise ValueError(f"extension entry {i} not a map")
        try:
            ext = parse_extension(entry)
        except ValueError as exc:
            raise ValueError(f"failed parsing extension entry {i}: {exc}") from None
        if ext.oid.dotted_string in seen:
            raise ValueError(f"duplicate extension id: {ext.oid.dotted_string}")
        seen.add(ext.oid.dotted_string)
        out.append(ext)
    return out


@dataclass
class RevokedEntry:
    serial: int
    when: dt.datetime
    extensions: list[x509.Extension[x509.UnrecognizedExtension]] = field(default_factory=list)

    def build(self) -> x509.RevokedCertificate:
        builder = x509.RevokedCertificateBuilder().serial_number(self.serial).revocation_date(self.when)
        for ext in self.extensions:
            builder = builder.add_extension(ext.value, ext.critical)
        return builder.build()


def parse_revoked_certs(raw: list[Any]) -> list[RevokedEntry]:
    """Entries that are not maps are skipped, as the built-in skips them; a repeated serial is refused."""
    entries: list[RevokedEntry] = []
    seen: dict[int, int] = {}
    for i, entry in enumerate(raw):
        if not isinstance(entry, dict):
            continue
        try:
            serial = parse_serial(entry)
        except ValueError as exc:
            raise UserError(f"failed parsing serial_number from entry {i}: {exc}") from None
        if serial in seen:
            raise UserError(f"duplicate serial number: {entry['serial_number']}, original entry {seen[serial]} "
                            f"and {i}")
        seen[serial] = i
        try:
            when = parse_revocation_time(entry)
        except ValueError as exc:
            raise UserError(f"failed parsing revocation_time from entry {i}: {exc}") from None
        exts_raw = entry.get("extensions")
        try:
            if exts_raw is None or exts_raw == "":
                exts = []
            elif not isinstance(exts_raw, list):
                raise ValueError("'extensions' field did not contain a slice")
            else:
                exts = parse_extensions(exts_raw)
        except ValueError as exc:
            raise UserError(f"failed parsing extensions from entry {i}: {exc}") from None
        entries.append(RevokedEntry(serial, when, exts))
    return entries


# ---------------------------------------------------------------------------------------------------------------
# resign-crls input

_PEM_CRL = re.compile(r"-----BEGIN ([^-\r\n]+)-----\r?\n(.*?)-----END \1-----", re.S)


def decode_pem_crls(raw: list[str]) -> list[x509.CertificateRevocationList]:
    crls = []
    for i, text in enumerate(raw):
        blocks = list(_PEM_CRL.finditer(text))
        # One block; what precedes it must end a line (PEM skips leading lines), only whitespace may follow.
        if len(blocks) != 1 or text[blocks[0].end():].strip() or (blocks[0].start() and
                                                                  text[blocks[0].start() - 1] != "\n"):
            raise UserError(f"failed decoding crl {i}: invalid crl; should be one PEM block only")
        try:
            der = base64.b64decode("".join(blocks[0].group(2).split()), validate=True)
            crls.append(x509.load_der_x509_crl(der))
        except ValueError:
            raise UserError(f"failed decoding crl {i}: x509: malformed crl") from None
    return crls


def check_signed_by(issuer: IssuerRecord, crls: list[x509.CertificateRevocationList]) -> None:
    public_key = issuer.certificate.public_key()
    for i, crl in enumerate(crls):
        try:
            valid = crl.is_signature_valid(public_key)  # type: ignore[arg-type]
        except Exception:   # noqa: BLE001 - an unsupported algorithm is as good as a wrong signer here
            valid = False
        if not valid:
            raise UserError(f"CRL index: {i} was not signed by requested issuer")


def merged_entries(crls: list[x509.CertificateRevocationList]) -> tuple[list[RevokedEntry], list[str]]:
    """Every serial once, at its oldest revocation time, without entry extensions; sorted by serial."""
    oldest: dict[int, dt.datetime] = {}
    warnings: list[str] = []
    for crl in crls:
        for revoked in crl:
            when = revoked.revocation_date_utc
            known = oldest.get(revoked.serial_number)
            if known is None:
                oldest[revoked.serial_number] = when
                continue
            if known == when:
                continue
            warnings.append(f"Duplicate serial {serial_to_colon_hex(revoked.serial_number)} with different "
                            "revocation times detected, using oldest revocation time")
            oldest[revoked.serial_number] = min(known, when)
    return [RevokedEntry(s, oldest[s]) for s in sorted(oldest)], warnings


# ---------------------------------------------------------------------------------------------------------------
# Signing

async def crl_signer(issuers: IssuerStore, ref: str) -> IssuerRecord:
    try:
        issuer = await issuers.resolve(ref)
    except IssuerNotFoundError as exc:
        raise UserError(f"failed to resolve issuer issuer_ref: {exc}") from None
    require_usage(issuer, CRL_SIGNING)
    await issuers.signing_key(issuer)     # a key-less issuer fails here, with the built-in's text
    return issuer


async def sign(issuers: IssuerStore, issuer: IssuerRecord, req: CrlRequest, entries: list[RevokedEntry],
               extensions: list[x509.Extension[x509.UnrecognizedExtension]]) -> str:
    """The signed CRL as PEM, or base64 DER."""
    key = await issuers.signing_key(issuer)
    hash_alg, pss = signature_params(issuer.revocation_signature_algorithm)
    if hash_alg is None and key.key_type not in ("ed25519", "mldsa"):
        hash_alg = hash_for_key(key)
    now = dt.datetime.now(_UTC).replace(microsecond=0)

    def make() -> x509.CertificateRevocationListBuilder:
        builder = x509.CertificateRevocationListBuilder(
            issuer_name=issuer.certificate.subject, last_update=now,
            next_update=now + dt.timedelta(seconds=req.next_update_seconds),
            revoked_certificates=[e.build() for e in entries])
        builder = builder.add_extension(aki_from_issuer(issuer.certificate), critical=False)
        builder = builder.add_extension(x509.CRLNumber(req.crl_number), critical=False)
        for ext in extensions:
            builder = builder.add_extension(ext.value, ext.critical)
        if req.delta_base > -1:
            builder = builder.add_extension(x509.DeltaCRLIndicator(req.delta_base), critical=True)
        return builder

    large = len(entries) > THREAD_THRESHOLD
    builder = await asyncio.to_thread(make) if large else make()
    if is_blocking(key) or not large:
        crl = await sign_crl(key, builder, hash_alg, pss)
    else:
        crl = await asyncio.to_thread(key.sign_crl, builder, hash_alg, pss)
    if req.der:
        return base64.b64encode(crl.public_bytes(serialization.Encoding.DER)).decode()
    return crl.public_bytes(serialization.Encoding.PEM).decode()
