"""revoke-cert: signed by the account that ordered the certificate, or by the certificate's own key."""
from __future__ import annotations

import binascii
import datetime as dt

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from engine.acme.errors import AcmeProblem, problem
from engine.acme.jws import b64d, public_key_of
from engine.acme.protocol import Answer, Call, enforce_eab_for_existing
from engine.api.revoke import revoke_serial
from engine.certstore import load_certificate_der
from engine.revocation import read_revocation
from engine.x509util import serial_storage_form, serial_to_colon_hex


def _spki(key: object) -> bytes:
    return key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)  # type: ignore[attr-defined]


async def revoke_cert(call: Call) -> Answer:
    payload = call.payload or {}
    raw = payload.get("certificate")
    if not isinstance(raw, str) or not raw:
        raise problem("malformed", prefix="missing required certificate field")
    reason = payload.get("reason")
    if reason is not None and reason != 0:
        raise problem("badRevocationReason", prefix=f"reason {reason} is not allowed; only 0 (unspecified)")
    try:
        der = b64d(raw)
        cert = x509.load_der_x509_certificate(der)
    except (ValueError, binascii.Error):
        raise problem("malformed", prefix="failed to parse certificate") from None
    serial = serial_storage_form(cert.serial_number)
    stored = await load_certificate_der(call.req.storage, serial)
    if stored is None or stored != der:
        raise problem("malformed", prefix="certificate was not issued by this mount")
    if cert.not_valid_after_utc < dt.datetime.now(dt.timezone.utc):
        raise problem("malformed", prefix="refusing to revoke an expired certificate")
    if call.account is not None:
        enforce_eab_for_existing(call.directory.cfg, call.account)
        if call.account.status != "valid":
            raise problem("unauthorized", suffix=f"account in status: {call.account.status}")
        if await call.store.tracked_cert(call.account.kid, serial) is None:
            raise problem("unauthorized", prefix="certificate was not issued to this account")
    elif _spki(public_key_of(call.jwk)) != _spki(cert.public_key()):
        raise problem("unauthorized", prefix="the request is not signed by the certificate's key")
    if await read_revocation(call.req.storage, serial_to_colon_hex(cert.serial_number)) is not None:
        raise AcmeProblem("alreadyRevoked")
    assert call.ctx is not None
    resp = await revoke_serial(call.req, call.ctx, serial_to_colon_hex(cert.serial_number))
    return Answer(body=(resp.data if resp is not None and resp.data else {}))
