"""The issued-certificate store: `certs/<hyphen-serial>` holding DER, and revocation lookups for reads.

Serials arrive from users in colon or hyphen form, any case; bare hex (no separators) is not found, as in
Vault. Listing streams keys and renders them in colon form.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from engine.storage import Storage
from engine.x509util import serial_to_colon_hex

CERTS_PREFIX = "certs/"
REVOKED_PREFIX = "revoked/"
_SERIAL_TEXT = re.compile(r"^[0-9A-Fa-f]{1,2}([:-][0-9A-Fa-f]{1,2})+$|^[0-9A-Fa-f]{1,2}$")


def storage_serial(serial: str) -> str:
    """The storage form (lowercase, hyphens) of a colon/hyphen serial."""
    return serial.strip().lower().replace(":", "-")


def colon_serial(serial: str) -> str:
    return serial.strip().lower().replace("-", ":")


def looks_like_serial(serial: str) -> bool:
    return _SERIAL_TEXT.match(serial.strip()) is not None


async def store_certificate(storage: Storage, cert: x509.Certificate) -> str:
    """Writes the DER under its serial; returns the colon-form serial."""
    serial = serial_to_colon_hex(cert.serial_number)
    await storage.put(CERTS_PREFIX + storage_serial(serial), cert.public_bytes(Encoding.DER))
    return serial


async def load_certificate_der(storage: Storage, serial: str) -> bytes | None:
    if not serial or not looks_like_serial(serial):
        return None
    der = await storage.get(CERTS_PREFIX + storage_serial(serial))
    return der or None


async def list_serials(storage: Storage) -> list[str]:
    return [colon_serial(k) for k in await storage.list(CERTS_PREFIX) if not k.endswith("/")]


@dataclass
class RevocationInfo:
    revocation_time: int = 0
    revocation_time_rfc3339: str = ""
    issuer_id: str = ""


async def revocation_info(storage: Storage, serial: str) -> RevocationInfo | None:
    """The revocation record of a serial (`revoked/<hyphen-serial>` JSON), or None when not revoked."""
    raw = await storage.get(REVOKED_PREFIX + storage_serial(serial))
    if not raw:
        return None
    try:
        data = json.loads(raw)
    except ValueError:
        return None
    return RevocationInfo(
        revocation_time=int(data.get("revocation_time") or 0),
        revocation_time_rfc3339=str(data.get("revocation_time_utc") or data.get("revocation_time_rfc3339") or ""),
        issuer_id=str(data.get("issuer_id") or ""),
    )
