"""ACME Renewal Information (RFC 9773), beyond the built-in and off unless config/acme enable_ari is true:
`renewal-info/<certID>` suggests a renewal window, and new-order's `replaces` names the certificate renewed."""
from __future__ import annotations

import binascii
import datetime as dt
from typing import Any

from cryptography import x509

from engine.acme.errors import problem
from engine.acme.jws import b64d, b64e
from engine.acme.protocol import Answer, Call
from engine.certstore import load_certificate_der
from engine.revocation import read_revocation
from engine.x509util import serial_storage_form, serial_to_colon_hex

RETRY_AFTER = 6 * 3600


def _serial_bytes(serial: int) -> bytes:
    """The DER INTEGER content octets of a (positive) serial: big-endian, a leading zero when the top bit is set."""
    return serial.to_bytes(serial.bit_length() // 8 + 1, "big")


def cert_id(cert: x509.Certificate) -> str:
    aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value.key_identifier or b""
    return f"{b64e(aki)}.{b64e(_serial_bytes(cert.serial_number))}"


async def cert_for_id(call: Call, text: Any) -> x509.Certificate:
    if not isinstance(text, str) or text.count(".") != 1:
        raise problem("malformed", prefix="invalid certificate identifier")
    aki_text, serial_text = text.split(".")
    try:
        aki, serial = b64d(aki_text), int.from_bytes(b64d(serial_text), "big")
    except (ValueError, binascii.Error):
        raise problem("malformed", prefix="invalid certificate identifier") from None
    der = await load_certificate_der(call.req.storage, serial_storage_form(serial)) if serial > 0 else None
    if der is None:
        raise problem("malformed", prefix="no certificate with this identifier was issued here")
    cert = x509.load_der_x509_certificate(der)
    try:
        ours = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value.key_identifier
    except x509.ExtensionNotFound:
        ours = None
    if ours != aki:
        raise problem("malformed", prefix="no certificate with this identifier was issued here")
    return cert


async def renewal_info(call: Call) -> Answer:
    if not call.directory.cfg.enable_ari:
        raise problem("malformed", prefix="renewal information is not enabled on this mount")
    cert = await cert_for_id(call, call.d.get("cert_id"))
    not_before, not_after = cert.not_valid_before_utc, cert.not_valid_after_utc
    lifetime = not_after - not_before
    start, end = not_after - lifetime / 3, not_after - lifetime / 6
    if await read_revocation(call.req.storage, serial_to_colon_hex(cert.serial_number)) is not None:
        # Revoked: renew now (a window that has already begun).
        now = dt.datetime.now(dt.timezone.utc)
        start, end = now - dt.timedelta(hours=1), now
    fmt = "%Y-%m-%dT%H:%M:%SZ"
    return Answer(body={"suggestedWindow": {"start": start.strftime(fmt), "end": end.strftime(fmt)}},
                  headers={"Retry-After": [str(RETRY_AFTER)]})


async def check_replaces(call: Call, text: Any) -> str:
    """`replaces` must name a certificate ordered by this account (RFC 9773 section 5)."""
    cert = await cert_for_id(call, text)
    if await call.store.tracked_cert(call.kid, serial_storage_form(cert.serial_number)) is None:
        raise problem("malformed", prefix="the replaced certificate was not issued to this account")
    return str(text)
