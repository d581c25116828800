"""The OCSP responder (RFC 6960): parse a request, decide good / revoked / unknown, sign with the issuer's key.

Responses are assembled with asn1crypto and signed through `SigningKey.sign_bytes`, so HSM-held issuer keys
answer OCSP like any other. Differences from the built-in engine, on purpose: a request nonce is echoed (RFC 8954)
and a response without extensions carries no responseExtensions field at all (the built-in engine writes an
empty SEQUENCE, which violates the ASN.1 size constraint and fails pkilint).
Signed nonce-less responses are cached per serial until a revocation of that serial, a CRL rebuild or a config
change drops them, or half their validity has passed.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import time
from dataclasses import dataclass, field

from asn1crypto import core
from asn1crypto import ocsp as aocsp
from asn1crypto import x509 as ax509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding

from engine.issuers import OCSP_SIGNING, IssuerRecord, IssuerStore
from engine.signing import MLDSA_SIGNATURE_OIDS, SIGNATURE_ALGORITHMS, hash_for_key, sign_bytes
from engine.storage import Storage, get_json
from engine.revocation import REVOKED_PREFIX
from engine.x509util import key_bits_of, serial_to_colon_hex

MALFORMED = aocsp.OCSPResponse({"response_status": "malformed_request"}).dump()
INTERNAL_ERROR = aocsp.OCSPResponse({"response_status": "internal_error"}).dump()
UNAUTHORIZED = aocsp.OCSPResponse({"response_status": "unauthorized"}).dump()

_HASHLIB = {"sha1": "sha1", "sha256": "sha256", "sha384": "sha384", "sha512": "sha512"}
_CACHE_MAX = 20000


class OcspRequestError(ValueError):
    """The request cannot be parsed: answered with malformedRequest."""


@dataclass
class ParsedRequest:
    cert_id: aocsp.CertId
    hash_name: str
    name_hash: bytes
    key_hash: bytes
    serial: int
    nonce: aocsp.ResponseDataExtension | None


def parse_request(der: bytes) -> ParsedRequest:
    try:
        req = aocsp.OCSPRequest.load(der, strict=True)
        tbs = req["tbs_request"]
        requests = tbs["request_list"]
        if len(requests) == 0:
            raise OcspRequestError("no request in the list")
        cert_id = requests[0]["req_cert"]
        hash_name = cert_id["hash_algorithm"]["algorithm"].native
        if hash_name not in _HASHLIB:
            raise OcspRequestError(f"unsupported hash {hash_name}")
        nonce = None
        for ext in tbs["request_extensions"] or []:
            if ext["extn_id"].native == "nonce":
                nonce = aocsp.ResponseDataExtension({"extn_id": "nonce", "critical": False,
                                                     "extn_value": ext["extn_value"].parsed})
        parsed = ParsedRequest(cert_id=cert_id, hash_name=hash_name, name_hash=cert_id["issuer_name_hash"].native,
                               key_hash=cert_id["issuer_key_hash"].native, serial=cert_id["serial_number"].native,
                               nonce=nonce)
        cert_id.dump(force=True)   # surfaces structural errors now rather than while signing
        return parsed
    except OcspRequestError:
        raise
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise OcspRequestError(str(exc)) from None


def issuer_hashes(rec: IssuerRecord, hash_name: str) -> tuple[bytes, bytes]:
    cert = ax509.Certificate.load(rec.certificate.public_bytes(Encoding.DER))
    name = cert["tbs_certificate"]["subject"].dump()
    # The SubjectPublicKeyInfo read without its algorithm's spec: asn1crypto has none for ML-DSA keys.
    spki = core.Sequence.load(cert["tbs_certificate"]["subject_public_key_info"].dump())
    key_bits = spki[1].contents[1:]
    h = _HASHLIB[hash_name]
    return hashlib.new(h, name).digest(), hashlib.new(h, key_bits).digest()


@dataclass
class ResponseCache:
    entries: dict[int, dict[tuple[str, str], tuple[bytes, float]]] = field(default_factory=dict)
    hashes: dict[tuple[str, str], tuple[bytes, bytes]] = field(default_factory=dict)   # (issuer, alg) -> hashes
    # Counts drops: a response built from a read that a drop overtook (a revocation replicated meanwhile) is not
    # kept, or a standby would answer "good" for hours.
    epoch: int = 0

    def get(self, serial: int, key: tuple[str, str], max_age: float) -> bytes | None:
        hit = self.entries.get(serial, {}).get(key)
        if hit is None or time.monotonic() - hit[1] > max_age:
            return None
        return hit[0]

    def put(self, serial: int, key: tuple[str, str], der: bytes, epoch: int | None = None) -> None:
        if epoch is not None and epoch != self.epoch:
            return
        if len(self.entries) >= _CACHE_MAX:
            self.entries.pop(next(iter(self.entries)))
        self.entries.setdefault(serial, {})[key] = (der, time.monotonic())

    def drop_serial(self, serial: int) -> None:
        self.entries.pop(serial, None)
        self.epoch += 1

    def clear(self) -> None:
        self.entries.clear()
        self.hashes.clear()
        self.epoch += 1


@dataclass
class OcspSettings:
    disabled: bool
    expiry_seconds: int


async def respond(storage: Storage, issuers: IssuerStore, der: bytes, settings: OcspSettings,
                  cache: ResponseCache) -> tuple[bytes, int]:
    """(DER OCSP response, HTTP status) for a DER request."""
    try:
        parsed = parse_request(der)
    except OcspRequestError:
        return MALFORMED, 400
    if settings.disabled:
        return UNAUTHORIZED, 401
    epoch = cache.epoch
    everyone = await issuers.all()
    matches = []
    for rec in everyone:
        key = (rec.id, parsed.hash_name)
        hashes_ = cache.hashes.get(key)
        if hashes_ is None:
            hashes_ = cache.hashes[key] = issuer_hashes(rec, parsed.hash_name)
        if hashes_ == (parsed.name_hash, parsed.key_hash):
            matches.append(rec)
    if matches:
        signers = [r for r in matches if r.key_id and r.has_usage(OCSP_SIGNING)]
        if not signers:
            return UNAUTHORIZED, 401
        signer, status = signers[0], "check"
    else:
        default = await issuers.find("default")
        if default is None or not default.key_id or not default.has_usage(OCSP_SIGNING):
            return UNAUTHORIZED, 401
        signer, status = default, "unknown"

    cache_key = (signer.id, parsed.hash_name)
    max_age = settings.expiry_seconds / 2 if settings.expiry_seconds else 60.0
    if parsed.nonce is None:
        hit = cache.get(parsed.serial, cache_key, max_age)
        if hit is not None:
            return hit, 200
    revoked_at: dt.datetime | None = None
    if status == "check":
        raw = await get_json(storage, REVOKED_PREFIX + serial_to_colon_hex(parsed.serial).replace(":", "-"))
        if raw is not None:
            revoked_at = dt.datetime.fromtimestamp(int(raw.get("revocation_time") or 0), dt.timezone.utc)
        status = "revoked" if revoked_at else "good"
    out = await _sign_response(issuers, signer, parsed, status, revoked_at, settings.expiry_seconds)
    if parsed.nonce is None:
        cache.put(parsed.serial, cache_key, out, epoch)
    return out, 200


def _cert_status(status: str, revoked_at: dt.datetime | None) -> aocsp.CertStatus:
    if status == "revoked":
        return aocsp.CertStatus(name="revoked", value={"revocation_time": revoked_at})
    return aocsp.CertStatus(name=status, value=core.Null())


_ALGO_NAMES = {("rsa", "sha256"): "sha256_rsa", ("rsa", "sha384"): "sha384_rsa", ("rsa", "sha512"): "sha512_rsa",
               ("ec", "sha256"): "sha256_ecdsa", ("ec", "sha384"): "sha384_ecdsa", ("ec", "sha512"): "sha512_ecdsa"}
_HASH_CLASSES = {"sha256": hashes.SHA256, "sha384": hashes.SHA384, "sha512": hashes.SHA512}


async def _sign_response(issuers: IssuerStore, signer: IssuerRecord, parsed: ParsedRequest, status: str,
                         revoked_at: dt.datetime | None, expiry_seconds: int) -> bytes:
    key = await issuers.signing_key(signer)
    now = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    single: dict[str, object] = {"cert_id": parsed.cert_id, "cert_status": _cert_status(status, revoked_at),
                                 "this_update": now}
    if expiry_seconds:
        single["next_update"] = now + dt.timedelta(seconds=expiry_seconds)
    data: dict[str, object] = {
        "responder_id": aocsp.ResponderId(name="by_name", value=ax509.Name.load(
            signer.certificate.subject.public_bytes())),
        "produced_at": now,
        "responses": [aocsp.SingleResponse(single)],
    }
    if parsed.nonce is not None:
        data["response_extensions"] = [parsed.nonce]
    tbs = aocsp.ResponseData(data)
    # The issuer's revocation_signature_algorithm picks the hash; PSS is downgraded to PKCS#1 v1.5 as in Vault.
    if key.key_type == "ed25519":
        hash_alg, algo = None, "ed25519"
    elif key.key_type == "mldsa":
        # asn1crypto has no name for ML-DSA; the OID is the algorithm (RFC 9881: no parameters).
        hash_alg, algo = None, MLDSA_SIGNATURE_OIDS[key_bits_of(key.public_key())]
    else:
        wanted = SIGNATURE_ALGORITHMS.get(signer.revocation_signature_algorithm)
        if wanted is not None and wanted[1]:
            hash_alg = _HASH_CLASSES[f"sha{wanted[1]}"]()
        else:
            hash_alg = hash_for_key(key)
        assert hash_alg is not None
        algo = _ALGO_NAMES[(key.key_type, hash_alg.name)]
    signature = await sign_bytes(key, tbs.dump(), hash_alg, False)
    basic = aocsp.BasicOCSPResponse({"tbs_response_data": tbs, "signature_algorithm": {"algorithm": algo},
                                     "signature": signature})
    return aocsp.OCSPResponse({"response_status": "successful", "response_bytes": {
        "response_type": "basic_ocsp_response", "response": basic}}).dump()
