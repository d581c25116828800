"""To-be-signed bytes from pyca/cryptography builders, and the signed DER put back together.

The builders only sign with an in-memory private key. We let them sign with a throwaway key of the same
algorithm family: the TBS part (which for certificates and CRLs embeds the signature algorithm) is then
exactly what the real key must sign; we cut it out, have the token sign it and splice the token's signature
in. The throwaway key never appears in the output: certificates carry the builder's subject key, CSRs get the
token key's SubjectPublicKeyInfo swapped in before signing, and its signature is discarded.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import threading
from typing import Any, Callable

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes, PrivateKeyTypes
from cryptography.x509 import ocsp
from cryptography.x509.oid import NameOID

from engine.hsm import der

Signer = Callable[[bytes], bytes]   # TBS bytes -> signature in X.509 encoding

_lock = threading.Lock()
_throwaway: dict[str, PrivateKeyTypes] = {}
_pss_algids: dict[str, bytes] = {}


def throwaway_key(key_type: str) -> PrivateKeyTypes:
    """One per family and process. RSA 2048 fits PSS with a SHA-512-sized salt; the key size never shows."""
    with _lock:
        key = _throwaway.get(key_type)
        if key is None:
            if key_type == "rsa":
                key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            elif key_type == "ec":
                key = ec.generate_private_key(ec.SECP256R1())
            elif key_type == "ed25519":
                key = ed25519.Ed25519PrivateKey.generate()
            else:
                raise ValueError(f"unsupported key type {key_type}")
            _throwaway[key_type] = key
        return key


def pss_padding(hash_alg: hashes.HashAlgorithm) -> padding.PSS:
    # Salt length = digest length, as Go's crypto/x509 (and so Vault) signs PSS certificates.
    return padding.PSS(mgf=padding.MGF1(hash_alg), salt_length=hash_alg.digest_size)


def _sign_kwargs(key_type: str, hash_alg: hashes.HashAlgorithm | None, use_pss: bool) -> dict[str, object]:
    if key_type == "rsa" and use_pss and hash_alg is not None:
        return {"rsa_padding": pss_padding(hash_alg)}
    return {}


def _hash(key_type: str, hash_alg: hashes.HashAlgorithm | None) -> hashes.HashAlgorithm | None:
    if key_type == "ed25519":
        return None
    return hash_alg or hashes.SHA256()


def _draft_parts(builder: Any, key_type: str, hash_alg: hashes.HashAlgorithm | None,
                 use_pss: bool) -> tuple[bytes, bytes, list[bytes]]:
    """(to-be-signed, algorithm identifier, trailing) of the builder's output signed by the throwaway key."""
    h = _hash(key_type, hash_alg)
    draft = builder.sign(throwaway_key(key_type), h, **_sign_kwargs(key_type, h, use_pss))
    return der.signed_parts(draft.public_bytes(serialization.Encoding.DER))


def certificate(builder: x509.CertificateBuilder, key_type: str, hash_alg: hashes.HashAlgorithm | None,
                use_pss: bool, sign: Signer) -> x509.Certificate:
    tbs, algid, trailing = _draft_parts(builder, key_type, hash_alg, use_pss)
    return x509.load_der_x509_certificate(der.assemble_signed(tbs, algid, sign(tbs), trailing))


def crl(builder: x509.CertificateRevocationListBuilder, key_type: str, hash_alg: hashes.HashAlgorithm | None,
        use_pss: bool, sign: Signer) -> x509.CertificateRevocationList:
    tbs, algid, trailing = _draft_parts(builder, key_type, hash_alg, use_pss)
    return x509.load_der_x509_crl(der.assemble_signed(tbs, algid, sign(tbs), trailing))


def csr(builder: x509.CertificateSigningRequestBuilder, key_type: str, hash_alg: hashes.HashAlgorithm | None,
        use_pss: bool, public_key: CertificatePublicKeyTypes, sign: Signer) -> x509.CertificateSigningRequest:
    info, algid, trailing = _draft_parts(builder, key_type, hash_alg, use_pss)
    # CertificationRequestInfo ::= SEQUENCE { version, subject, subjectPKInfo, attributes [0] }
    fields = der.children(der.parse_one(info).value)
    spki = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    info = der.encode(der.SEQUENCE, fields[0].raw + fields[1].raw + spki + b"".join(f.raw for f in fields[3:]))
    return x509.load_der_x509_csr(der.assemble_signed(info, algid, sign(info), trailing))


def ocsp_response(builder: ocsp.OCSPResponseBuilder, key_type: str, hash_alg: hashes.HashAlgorithm | None,
                  use_pss: bool, sign: Signer) -> ocsp.OCSPResponse:
    """A successful OCSPResponse whose BasicOCSPResponse the token signed.

    The OCSP builder insists that the responder certificate matches the signing key, so the draft names a
    stand-in certificate (the responder's subject on the throwaway key) and the responder id is corrected in
    the DER afterwards. The builder has no PSS option either; here the algorithm identifier sits outside the
    signed part, so for PSS we put the right one in ourselves.
    """
    h = _hash(key_type, hash_alg)
    # The builder keeps what it was given in private attributes; its constructor takes them back.
    responder_cert, encoding = builder._responder_id  # type: ignore[attr-defined,misc]
    draft_builder = ocsp.OCSPResponseBuilder(
        builder._response, (_stand_in(responder_cert, key_type), encoding),  # type: ignore[attr-defined]
        builder._certs, builder._extensions)  # type: ignore[attr-defined]
    draft = draft_builder.sign(throwaway_key(key_type), h)  # type: ignore[arg-type]
    # OCSPResponse ::= SEQUENCE { responseStatus, responseBytes [0] EXPLICIT SEQUENCE { OID, OCTET STRING } }
    status, wrapped = der.children(der.parse_one(draft.public_bytes(serialization.Encoding.DER)).value)
    oid, octets = der.children(der.parse_one(wrapped.value).value)
    tbs, algid, trailing = der.signed_parts(octets.value)
    if encoding is ocsp.OCSPResponderEncoding.HASH:
        tbs = _with_key_hash(tbs, responder_cert.public_key())
    if key_type == "rsa" and use_pss and h is not None:
        algid = pss_algorithm_identifier(h)
    basic = der.assemble_signed(tbs, algid, sign(tbs), trailing)
    response_bytes = der.encode(der.SEQUENCE, oid.raw + der.encode(der.OCTET_STRING, basic))
    out = der.encode(der.SEQUENCE, status.raw + der.encode(0xA0, response_bytes))
    return ocsp.load_der_ocsp_response(out)


_stand_ins: dict[tuple[bytes, str], x509.Certificate] = {}


def _stand_in(responder: x509.Certificate, key_type: str) -> x509.Certificate:
    """A certificate with the responder's subject on the throwaway key (cached; never leaves this module)."""
    cache_key = (responder.subject.public_bytes(), key_type)
    with _lock:
        hit = _stand_ins.get(cache_key)
    if hit is not None:
        return hit
    key = throwaway_key(key_type)
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(responder.subject).issuer_name(responder.subject)
            .public_key(key.public_key()).serial_number(1).not_valid_before(now)
            .not_valid_after(now + dt.timedelta(days=1))
            .sign(key, None if key_type == "ed25519" else hashes.SHA256()))  # type: ignore[arg-type]
    with _lock:
        if len(_stand_ins) > 256:
            _stand_ins.clear()
        _stand_ins[cache_key] = cert
    return cert


def _with_key_hash(tbs: bytes, responder_key: CertificatePublicKeyTypes) -> bytes:
    """ResponseData with its byKey ResponderID ([2] KeyHash) recomputed for the real responder key."""
    spki = der.parse_one(responder_key.public_bytes(serialization.Encoding.DER,
                                                    serialization.PublicFormat.SubjectPublicKeyInfo))
    bits = der.children(spki.value)[1].value[1:]   # subjectPublicKey BIT STRING without its unused-bits octet
    key_hash = hashlib.sha1(bits).digest()  # noqa: S324 - RFC 6960 fixes SHA-1 for KeyHash
    parts = der.children(der.parse_one(tbs).value)
    rebuilt = [der.encode(0xA2, der.encode(der.OCTET_STRING, key_hash)) if p.tag == 0xA2 else p.raw for p in parts]
    return der.encode(der.SEQUENCE, b"".join(rebuilt))


def pss_algorithm_identifier(hash_alg: hashes.HashAlgorithm) -> bytes:
    """RSASSA-PSS AlgorithmIdentifier exactly as cryptography writes it for certificates (cached per hash)."""
    with _lock:
        cached = _pss_algids.get(hash_alg.name)
    if cached is not None:
        return cached
    key = throwaway_key("rsa")
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "pss")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now).not_valid_after(now + dt.timedelta(days=1))
            .sign(key, hash_alg, rsa_padding=pss_padding(hash_alg)))  # type: ignore[arg-type]
    _, algid, _ = der.signed_parts(cert.public_bytes(serialization.Encoding.DER))
    with _lock:
        _pss_algids[hash_alg.name] = algid
    return algid
