"""Hand-made CSRs for robustness tests: DER assembled field by field, so a test can put in what no builder
would (a wrong version, a duplicate extension, a CN of the wrong string type, an x400Address SAN...)."""
from __future__ import annotations

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from engine.hsm import der
from engine.hsm.der import encode as tlv

_ECDSA_SHA256 = "1.2.840.10045.4.3.2"
_CN = "2.5.4.3"
_EXTENSION_REQUEST = "1.2.840.113549.1.9.14"
_SAN = "2.5.29.17"


def oid(dotted: str) -> bytes:
    return tlv(der.OBJECT_IDENTIFIER, der.oid_body(dotted))


def seq(*items: bytes) -> bytes:
    return tlv(der.SEQUENCE, b"".join(items))


def cn_name(value_tlv: bytes) -> bytes:
    """A subject of one CN whose value is given as a ready TLV (any string type, or none at all)."""
    return seq(tlv(0x31, seq(oid(_CN), value_tlv)))


def utf8_cn(text: str) -> bytes:
    return cn_name(tlv(0x0C, text.encode()))


def extension(ext_oid: str, value: bytes, critical: bool = False) -> bytes:
    return seq(oid(ext_oid), *([tlv(0x01, b"\xff")] if critical else []), tlv(0x04, value))


def san(*general_names: bytes) -> bytes:
    return extension(_SAN, seq(*general_names))


def uri_name(text: bytes) -> bytes:
    return tlv(0x86, text)


def dns_name(text: bytes) -> bytes:
    return tlv(0x82, text)


def x400_name() -> bytes:
    # ORAddress ::= SEQUENCE { built-in-standard-attributes SEQUENCE {...}, ... }: the smallest one.
    return tlv(0xA3, seq(seq()))


def csr(subject: bytes | None = None, extensions: list[bytes] | None = None, version: int = 0,
        key: ec.EllipticCurvePrivateKey | None = None) -> str:
    key = key or ec.generate_private_key(ec.SECP256R1())
    spki = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    attrs = b""
    if extensions:
        attrs = seq(oid(_EXTENSION_REQUEST), tlv(0x31, seq(*extensions)))
    info = seq(tlv(0x02, bytes([version])), subject if subject is not None else utf8_cn("crafted.example.com"),
               spki, tlv(0xA0, attrs))
    signature = key.sign(info, ec.ECDSA(hashes.SHA256()))
    der = seq(info, seq(oid(_ECDSA_SHA256)), tlv(0x03, b"\x00" + signature))
    return pem(der)


def pem(der: bytes) -> str:
    import base64
    body = base64.encodebytes(der).decode().replace("\n", "")
    lines = [body[i:i + 64] for i in range(0, len(body), 64)]
    return "-----BEGIN CERTIFICATE REQUEST-----\n" + "\n".join(lines) + "\n-----END CERTIFICATE REQUEST-----\n"
