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
    """The built-in's order of checks: the certificate, the reason, expiry, the stored copy, an earlier
    revocation, and only then who signed."""
    payload = call.payload or {}
    raw = payload.get("certificate")
    if not isinstance(raw, str):
        raise problem("malformed", prefix="bad request was lacking required field 'certificate'")
    try:
        der = b64d(raw)
    except (ValueError, binascii.Error):
        raise problem("malformed", prefix="failed to base64 decode certificate") from None
    try:
        cert = x509.load_der_x509_certificate(der)
    except ValueError as exc:
        raise problem("malformed", prefix=f"failed to parse certificate: {exc}") from None
    if "reason" in payload:
        reason = payload["reason"]
        if isinstance(reason, bool) or not isinstance(reason, (int, float)):
            raise problem("malformed", prefix=f"invalid type ({type(reason).__name__}; expected number) for "
                                              "field 'reason'")
        if int(reason) != 0:
            raise AcmeProblem("badRevocationReason", prefix=f"revocation reasons are not supported (got "
                                                            f"{int(reason)}; expected omitted or 0/unspecified)")
    if cert.not_valid_after_utc < dt.datetime.now(dt.timezone.utc):
        raise problem("malformed", prefix="refusing to revoke expired certificate")
    serial = serial_storage_form(cert.serial_number)
    stored = await load_certificate_der(call.req.storage, serial)
    if stored is None:
        raise problem("serverInternal", prefix="unable to revoke certificate: no global cert entry found")
    if stored != der:
        raise problem("malformed", prefix="unable to revoke certificate: supplied certificate does not match "
                                          "CA's stored value")
    if await read_revocation(call.req.storage, serial_to_colon_hex(cert.serial_number)) is not None:
        raise AcmeProblem("alreadyRevoked", prefix="unable to revoke certificate")
    if call.account is not None:
        enforce_eab_for_existing(call.directory.cfg, call.account)
        if call.account.status != "valid":
            raise problem("unauthorized", prefix="failed to lookup account",
                          suffix=f"account in status: {call.account.status}")
        if await call.store.tracked_cert(call.account.kid, serial) is None:
            raise problem("malformed", prefix="unable to revoke certificate: no certificate with this serial "
                                              "was issued for this account")
    elif _spki(public_key_of(call.jwk)) != _spki(cert.public_key()):
        raise problem("malformed", prefix="unable to revoke certificate: unable to verify proof of possession of "
                                          "private key provided by proxy")
    assert call.ctx is not None
    resp = await revoke_serial(call.req, call.ctx, serial_to_colon_hex(cert.serial_number))
    return Answer(body=(resp.data if resp is not None and resp.data else {}))
