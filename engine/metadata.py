"""Certificate metadata (`cert_metadata` on issue/sign): opaque client bytes kept by serial.

Stored at `cert-metadata/<hyphen-serial>` whether or not the certificate itself is stored, unless the
role sets no_store_metadata. Vault Enterprise has this feature; we offer it in the open.
"""
from __future__ import annotations

import base64
from dataclasses import asdict, dataclass
from typing import Any

from cryptography import x509

from engine.certstore import colon_serial, looks_like_serial, storage_serial
from engine.storage import Storage, get_json, put_json
from engine.x509util import serial_to_colon_hex

METADATA_PREFIX = "cert-metadata/"


@dataclass
class CertMetadata:
    serial_number: str
    issuer_id: str
    role: str
    expiration: str          # RFC 3339 (Terraform reads this field as a string)
    cert_metadata: str       # base64, as the client sent it

    def to_response(self) -> dict[str, Any]:
        return asdict(self)


async def store(storage: Storage, cert: x509.Certificate, raw: bytes, issuer_id: str, role: str) -> None:
    serial = serial_to_colon_hex(cert.serial_number)
    record = CertMetadata(
        serial_number=serial, issuer_id=issuer_id, role=role,
        expiration=cert.not_valid_after_utc.strftime("%Y-%m-%dT%H:%M:%SZ"),
        cert_metadata=base64.b64encode(raw).decode(),
    )
    await put_json(storage, METADATA_PREFIX + storage_serial(serial), asdict(record))


async def load(storage: Storage, serial: str) -> CertMetadata | None:
    if not looks_like_serial(serial):
        return None
    data = await get_json(storage, METADATA_PREFIX + storage_serial(serial))
    if data is None:
        return None
    return CertMetadata(**{k: data.get(k, "") for k in CertMetadata.__dataclass_fields__})


async def list_serials(storage: Storage) -> list[str]:
    return [colon_serial(k) for k in await storage.list(METADATA_PREFIX) if not k.endswith("/")]


async def delete(storage: Storage, serial: str) -> None:
    await storage.delete(METADATA_PREFIX + storage_serial(serial))
