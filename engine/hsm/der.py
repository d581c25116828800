"""Just enough DER to swap a signature into a structure that a throwaway key signed.

Certificates, CRLs, CSRs and OCSP BasicResponses all share the shape SEQUENCE { tbs, algorithm, BIT STRING
signature, ... }. We never interpret the TBS: we cut it out byte for byte, so what the token signs is
exactly what pyca/cryptography built. Beside that, the OBJECT IDENTIFIER content of a key's CKA_EC_PARAMS.
"""
from __future__ import annotations

from dataclasses import dataclass

SEQUENCE = 0x30
BIT_STRING = 0x03
OCTET_STRING = 0x04
OBJECT_IDENTIFIER = 0x06


class DerError(ValueError):
    """The input is not the DER shape we expected (a bug in the caller, never user input)."""


@dataclass(frozen=True)
class Tlv:
    tag: int
    value: bytes      # the content octets
    raw: bytes        # tag + length + content, exactly as encoded


def encode_length(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(body)]) + body


def encode(tag: int, value: bytes) -> bytes:
    return bytes([tag]) + encode_length(len(value)) + value


def read_tlv(data: bytes, offset: int = 0) -> tuple[Tlv, int]:
    """One TLV at `offset` (single-byte tags only, which is all X.509 needs here); returns it and the next offset."""
    if offset + 2 > len(data):
        raise DerError("truncated TLV")
    tag = data[offset]
    if tag & 0x1F == 0x1F:
        raise DerError("multi-byte tags are not supported")
    first = data[offset + 1]
    pos = offset + 2
    if first < 0x80:
        length = first
    else:
        count = first & 0x7F
        if count == 0 or count > 4 or pos + count > len(data):
            raise DerError("bad length")
        length = int.from_bytes(data[pos:pos + count], "big")
        pos += count
    end = pos + length
    if end > len(data):
        raise DerError("truncated value")
    return Tlv(tag, data[pos:end], data[offset:end]), end


def children(value: bytes) -> list[Tlv]:
    out: list[Tlv] = []
    pos = 0
    while pos < len(value):
        tlv, pos = read_tlv(value, pos)
        out.append(tlv)
    return out


def parse_one(data: bytes) -> Tlv:
    tlv, end = read_tlv(data)
    if end != len(data):
        raise DerError("trailing data")
    return tlv


def signed_parts(signed_der: bytes) -> tuple[bytes, bytes, list[bytes]]:
    """(tbs DER, algorithm identifier DER, any trailing elements) of a signed SEQUENCE."""
    outer = parse_one(signed_der)
    if outer.tag != SEQUENCE:
        raise DerError("not a SEQUENCE")
    parts = children(outer.value)
    if len(parts) < 3 or parts[2].tag != BIT_STRING:
        raise DerError("not a signed structure")
    return parts[0].raw, parts[1].raw, [p.raw for p in parts[3:]]


def assemble_signed(tbs: bytes, algorithm: bytes, signature: bytes, trailing: list[bytes] | None = None) -> bytes:
    """SEQUENCE { tbs, algorithm, BIT STRING signature (no unused bits), trailing... }."""
    body = tbs + algorithm + encode(BIT_STRING, b"\x00" + signature) + b"".join(trailing or [])
    return encode(SEQUENCE, body)


def octet_string_content(data: bytes) -> bytes:
    tlv = parse_one(data)
    if tlv.tag != OCTET_STRING:
        raise DerError("not an OCTET STRING")
    return tlv.value


def oid_body(dotted: str) -> bytes:
    """The content octets of an OBJECT IDENTIFIER (base-128 arcs, the first two folded into one)."""
    parts = [int(p) for p in dotted.split(".")]
    out = bytearray([40 * parts[0] + parts[1]])
    for value in parts[2:]:
        chunk = [value & 0x7F]
        value >>= 7
        while value:
            chunk.append(0x80 | (value & 0x7F))
            value >>= 7
        out.extend(reversed(chunk))
    return bytes(out)


def oid_dotted(body: bytes) -> str:
    """The dotted form of an OBJECT IDENTIFIER's content octets ("" for none)."""
    if not body:
        return ""
    parts = [body[0] // 40, body[0] % 40] if body[0] < 80 else [2, body[0] - 80]
    value = 0
    for byte in body[1:]:
        value = (value << 7) | (byte & 0x7F)
        if not byte & 0x80:
            parts.append(value)
            value = 0
    return ".".join(map(str, parts))
