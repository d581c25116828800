"""Certificate fields rendered the way Go's crypto/x509 renders them, for responses that must read as the built-in's.

The built-in engine reports some certificate details straight from Go's parsed certificate (`certs/detailed`): the
issuer as `pkix.Name.String()`, key sizes by Go's rules. Go's rendering is not RFC 4514 as cryptography writes it:
the standard attributes come out in a fixed order whatever the certificate's order, each attribute's values merged
into one multi-valued RDN, attributes Go has no name for as `OID=value` (`OID=#<DER hex>` when the value is no string).
No library renders names Go's way, so it is written out here.
"""
from __future__ import annotations

from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, mldsa, rsa
from cryptography.x509.oid import NameOID

# Go's pkix.Name fields in ToRDNSequence order, with the names RDNSequence.String() gives them.
_GO_FIELDS: tuple[tuple[x509.ObjectIdentifier, str], ...] = (
    (NameOID.COUNTRY_NAME, "C"),
    (NameOID.STATE_OR_PROVINCE_NAME, "ST"),
    (NameOID.LOCALITY_NAME, "L"),
    (NameOID.STREET_ADDRESS, "STREET"),
    (NameOID.POSTAL_CODE, "POSTALCODE"),
    (NameOID.ORGANIZATION_NAME, "O"),
    (NameOID.ORGANIZATIONAL_UNIT_NAME, "OU"),
    (NameOID.COMMON_NAME, "CN"),
    (NameOID.SERIAL_NUMBER, "SERIALNUMBER"),
)
_GO_NAMED = {oid for oid, _ in _GO_FIELDS}
_SINGLE_VALUED = {NameOID.COMMON_NAME, NameOID.SERIAL_NUMBER}   # Go keeps only the last one of these


def _der_len(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(body)]) + body


def _bit_string_der(contents: bytes) -> bytes:
    """cryptography's value of a BIT STRING attribute is its contents (the unused-bits octet first)."""
    return b"\x03" + _der_len(len(contents)) + contents


def _escape(value: str) -> str:
    out: list[str] = []
    last = len(value) - 1
    for i, c in enumerate(value):
        if c in ',+"\\<>;' or (c == " " and i in (0, last)) or (c == "#" and i == 0):
            out.append("\\")
        out.append(c)
    return "".join(out)


def name_string(name: x509.Name) -> str:
    """pkix.Name.String() of a parsed certificate name."""
    attrs = [attr for rdn in name.rdns for attr in rdn]
    named: dict[x509.ObjectIdentifier, list[str]] = {}
    others: list[x509.NameAttribute] = []
    for attr in attrs:
        if attr.oid in _GO_NAMED:
            if isinstance(attr.value, str):
                if attr.oid in _SINGLE_VALUED:
                    named[attr.oid] = [attr.value]
                else:
                    named.setdefault(attr.oid, []).append(attr.value)
        else:
            others.append(attr)
    # Go lists the unnamed attributes first and renders the sequence last-to-first, so they end the string.
    rdns: list[str] = [
        f"{attr.oid.dotted_string}={_escape(attr.value)}" if isinstance(attr.value, str)
        else f"{attr.oid.dotted_string}=#{_bit_string_der(attr.value).hex()}"
        for attr in others
    ]
    for oid, label in _GO_FIELDS:
        values = [v for v in named.get(oid, []) if v or oid not in _SINGLE_VALUED]
        if values:
            rdns.append("+".join(f"{label}={_escape(v)}" for v in values))
    return ",".join(reversed(rdns))


def common_name(name: x509.Name) -> str:
    """Go's Name.CommonName: the last CN attribute's value."""
    values = [a.value for a in name.get_attributes_for_oid(NameOID.COMMON_NAME) if isinstance(a.value, str)]
    return values[-1] if values else ""


def dns_names(cert: x509.Certificate) -> list[str]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return list(san.get_values_for_type(x509.DNSName))


_MLDSA_LEVELS: tuple[tuple[type, int], ...] = (
    (mldsa.MLDSA44PublicKey, 44), (mldsa.MLDSA65PublicKey, 65), (mldsa.MLDSA87PublicKey, 87),
)


def key_type_and_bits(public_key: Any) -> tuple[str, int]:
    """The built-in's (key_type, key_bits) of a certificate's public key; ("unknown", 0) for other kinds."""
    if isinstance(public_key, rsa.RSAPublicKey):
        return "rsa", (public_key.key_size + 7) // 8 * 8    # Go: the modulus size in bytes, times eight
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        return "ec", public_key.curve.key_size
    if isinstance(public_key, ed25519.Ed25519PublicKey):
        return "ed25519", 256
    for cls, level in _MLDSA_LEVELS:
        if isinstance(public_key, cls):
            return "mldsa", level
    return "unknown", 0
