"""Signing keys: the one abstraction every certificate, CRL and OCSP signature goes through.

`LocalSigningKey` wraps a private key held in storage; managed (HSM/KMS) keys plug in through
`register_managed_loader`, so CA code never needs to know where a key lives.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Awaitable, Callable, Protocol, runtime_checkable

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, mldsa, padding, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes, PrivateKeyTypes

from engine import workers
from engine.x509util import key_type_name
from plugin.framework import UserError

if TYPE_CHECKING:
    from engine.keys import KeyRecord
    from engine.storage import Storage

HashAlg = hashes.HashAlgorithm | None   # None for Ed25519 and ML-DSA (the hash is part of the algorithm)

KEY_TYPES = ("rsa", "ec", "ed25519", "mldsa")
RSA_BITS = (2048, 3072, 4096, 8192)
EC_BITS = (224, 256, 384, 521)
DEFAULT_BITS = {"rsa": 2048, "ec": 256, "ed25519": 0, "mldsa": 44}
# ML-DSA parameter sets by the key_bits value the built-in takes for them (FIPS 204 security levels 2, 3, 5).
MLDSA_KEYS: dict[int, type] = {44: mldsa.MLDSA44PrivateKey, 65: mldsa.MLDSA65PrivateKey, 87: mldsa.MLDSA87PrivateKey}
INTRINSIC_HASH_TYPES = ("ed25519", "mldsa")
MLDSA_SIGNATURE_OIDS = {44: "2.16.840.1.101.3.4.3.17", 65: "2.16.840.1.101.3.4.3.18", 87: "2.16.840.1.101.3.4.3.19"}
_EC_CURVES: dict[int, ec.EllipticCurve] = {224: ec.SECP224R1(), 256: ec.SECP256R1(), 384: ec.SECP384R1(),
                                           521: ec.SECP521R1()}
# The hash Vault pairs with each NIST curve, whatever signature_bits says on issue/root paths.
EC_CURVE_HASH_BITS = {224: 256, 256: 256, 384: 384, 521: 512}


@runtime_checkable
class SigningKey(Protocol):
    """Anything that can sign on behalf of a CA key."""

    key_type: str   # 'rsa' | 'ec' | 'ed25519'

    def public_key(self) -> CertificatePublicKeyTypes: ...

    def sign_certificate(self, builder: x509.CertificateBuilder, hash_alg: HashAlg,
                         use_pss: bool = False) -> x509.Certificate: ...

    def sign_crl(self, builder: x509.CertificateRevocationListBuilder, hash_alg: HashAlg,
                 use_pss: bool = False) -> x509.CertificateRevocationList: ...

    def sign_csr(self, builder: x509.CertificateSigningRequestBuilder,
                 hash_alg: HashAlg) -> x509.CertificateSigningRequest: ...

    def sign_bytes(self, data: bytes, hash_alg: HashAlg, use_pss: bool = False) -> bytes: ...


def _pss(hash_alg: hashes.HashAlgorithm) -> padding.PSS:
    # Salt length = digest length is what Go's crypto/x509 (and so Vault) uses for PSS certificates.
    return padding.PSS(mgf=padding.MGF1(hash_alg), salt_length=hash_alg.digest_size)


class LocalSigningKey:
    """A private key we hold in memory (loaded from seal-wrapped storage)."""

    def __init__(self, private_key: PrivateKeyTypes) -> None:
        kind = key_type_name(private_key)
        if kind not in KEY_TYPES:
            raise UserError("unsupported private key type")
        self.private_key = private_key
        self.key_type = kind
        self._public = private_key.public_key()

    def public_key(self) -> CertificatePublicKeyTypes:
        return self._public  # type: ignore[return-value]

    def _hash(self, hash_alg: HashAlg) -> HashAlg:
        return None if self.key_type in INTRINSIC_HASH_TYPES else (hash_alg or hashes.SHA256())

    def sign_certificate(self, builder: x509.CertificateBuilder, hash_alg: HashAlg,
                         use_pss: bool = False) -> x509.Certificate:
        h = self._hash(hash_alg)
        if use_pss and self.key_type == "rsa" and h is not None:
            return builder.sign(self.private_key, h, rsa_padding=_pss(h))  # type: ignore[arg-type]
        return builder.sign(self.private_key, h)  # type: ignore[arg-type]

    def sign_crl(self, builder: x509.CertificateRevocationListBuilder, hash_alg: HashAlg,
                 use_pss: bool = False) -> x509.CertificateRevocationList:
        h = self._hash(hash_alg)
        if use_pss and self.key_type == "rsa" and h is not None:
            return builder.sign(self.private_key, h, rsa_padding=_pss(h))  # type: ignore[arg-type]
        return builder.sign(self.private_key, h)  # type: ignore[arg-type]

    def sign_csr(self, builder: x509.CertificateSigningRequestBuilder,
                 hash_alg: HashAlg) -> x509.CertificateSigningRequest:
        return builder.sign(self.private_key, self._hash(hash_alg))  # type: ignore[arg-type]

    def sign_bytes(self, data: bytes, hash_alg: HashAlg, use_pss: bool = False) -> bytes:
        key = self.private_key
        if isinstance(key, rsa.RSAPrivateKey):
            h = hash_alg or hashes.SHA256()
            pad = _pss(h) if use_pss else padding.PKCS1v15()
            return key.sign(data, pad, h)
        if isinstance(key, ec.EllipticCurvePrivateKey):
            return key.sign(data, ec.ECDSA(hash_alg or hashes.SHA256()))
        if isinstance(key, (ed25519.Ed25519PrivateKey, *MLDSA_KEYS.values())):
            return key.sign(data)
        raise UserError("unsupported private key type")


# ---------------------------------------------------------------------------------------------------------------
# Signing from the event loop
#
# A key that talks to a device (HSM) sets `blocking = True` and offers `a*` coroutine variants that run the device
# calls off the loop. Local keys sign inline: a thread hop would cost more than the EC signature itself.

def is_blocking(key: SigningKey) -> bool:
    return bool(getattr(key, "blocking", False))


async def sign_certificate(key: SigningKey, builder: x509.CertificateBuilder, hash_alg: HashAlg,
                           use_pss: bool = False) -> x509.Certificate:
    if is_blocking(key):
        return await key.asign_certificate(builder, hash_alg, use_pss)  # type: ignore[attr-defined,no-any-return]
    return key.sign_certificate(builder, hash_alg, use_pss)


async def sign_crl(key: SigningKey, builder: x509.CertificateRevocationListBuilder, hash_alg: HashAlg,
                   use_pss: bool = False) -> x509.CertificateRevocationList:
    if is_blocking(key):
        return await key.asign_crl(builder, hash_alg, use_pss)  # type: ignore[attr-defined,no-any-return]
    return key.sign_crl(builder, hash_alg, use_pss)


async def sign_csr(key: SigningKey, builder: x509.CertificateSigningRequestBuilder,
                   hash_alg: HashAlg) -> x509.CertificateSigningRequest:
    if is_blocking(key):
        return await key.asign_csr(builder, hash_alg)  # type: ignore[attr-defined,no-any-return]
    return key.sign_csr(builder, hash_alg)


async def sign_bytes(key: SigningKey, data: bytes, hash_alg: HashAlg, use_pss: bool = False) -> bytes:
    if is_blocking(key):
        return await key.asign_bytes(data, hash_alg, use_pss)  # type: ignore[attr-defined,no-any-return]
    return key.sign_bytes(data, hash_alg, use_pss)


# ---------------------------------------------------------------------------------------------------------------
# Loading keys from records

ManagedLoader = Callable[["Storage", "KeyRecord"], Awaitable[SigningKey]]
_managed_loader: ManagedLoader | None = None


def register_managed_loader(fn: ManagedLoader | None) -> None:
    """Installed by the HSM/KMS module; called for key records with `managed_key` set."""
    global _managed_loader
    _managed_loader = fn


async def load_signing_key(storage: "Storage", record: "KeyRecord") -> SigningKey:
    if record.managed_key is not None:
        if _managed_loader is None:
            raise UserError("managed keys are not supported by this plugin build")
        return await _managed_loader(storage, record)
    if not record.private_key_pem:
        raise UserError(f"key {record.id} has no private key material")
    return LocalSigningKey(load_private_key_pem(record.private_key_pem, trusted=True))


def load_private_key_pem(pem: str | bytes, trusted: bool = False) -> PrivateKeyTypes:
    """Parse a PEM private key. `trusted` is for keys we made or validated on import and then stored:
    OpenSSL's RSA consistency check costs as much as generating the key (about 33 ms at 2048 bits)."""
    raw = pem.encode() if isinstance(pem, str) else pem
    try:
        return serialization.load_pem_private_key(raw, password=None, unsafe_skip_rsa_key_validation=trusted)
    except (ValueError, TypeError) as exc:
        raise UserError(f"error parsing private key: {_public_reason(exc)}") from None


def _public_reason(exc: Exception) -> str:
    # Never echo key bytes: parser messages are generic, but keep only the first line to be safe.
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text[:200]


# ---------------------------------------------------------------------------------------------------------------
# Key generation

def normalize_key_params(key_type: str, key_bits: int) -> tuple[str, int]:
    """Vault's defaulting and validation of (key_type, key_bits) for generated keys."""
    kt = (key_type or "rsa").lower()
    if kt not in KEY_TYPES:
        raise UserError(f"unknown key type {key_type}")
    bits = key_bits or DEFAULT_BITS[kt]
    if kt == "rsa":
        if bits < 2048:
            raise UserError(f"RSA keys < 2048 bits are unsafe and not supported: got {bits}")
        if bits not in RSA_BITS:
            raise UserError(f"unsupported bit length for RSA key: {bits}")
    elif kt == "ec":
        if bits not in EC_BITS:
            raise UserError(f"unsupported bit length for EC key: {bits}")
    elif kt == "mldsa":
        if bits not in MLDSA_KEYS:
            raise UserError(f"unsupported bit length for ML-DSA key: {bits}")
    else:
        bits = 0   # ed25519 ignores key_bits (Vault reports 0 in role reads; 256 elsewhere)
    return kt, bits


async def generate_private_key(key_type: str, key_bits: int) -> PrivateKeyTypes:
    """A fresh private key; RSA runs in the engine's process pool, EC/Ed25519 inline (sub-millisecond)."""
    kt, bits = normalize_key_params(key_type, key_bits)
    if kt == "rsa":
        return await workers.generate_rsa(bits)
    if kt == "ec":
        return ec.generate_private_key(_EC_CURVES[bits])
    if kt == "mldsa":
        return MLDSA_KEYS[bits].generate()
    return ed25519.Ed25519PrivateKey.generate()


# ---------------------------------------------------------------------------------------------------------------
# Hash and signature algorithm choice

_HASHES = {256: hashes.SHA256, 384: hashes.SHA384, 512: hashes.SHA512}


def validate_signature_bits(bits: int) -> None:
    if bits not in (0, 256, 384, 512):
        raise UserError(f"unsupported hash signature algorithm: {bits}")


def hash_for_key(key: SigningKey | CertificatePublicKeyTypes, signature_bits: int = 0,
                 ec_honours_bits: bool = False) -> HashAlg:
    """The hash Vault signs with: RSA -> SHA-256 unless 384/512 asked; EC -> by curve (unless the sign-path quirk
    `ec_honours_bits` applies and bits are set); Ed25519 -> none."""
    pub = key.public_key() if isinstance(key, SigningKey) else key
    kind = key_type_name(pub)  # type: ignore[arg-type]
    if kind in INTRINSIC_HASH_TYPES:
        return None
    validate_signature_bits(signature_bits)
    if kind == "ec":
        if ec_honours_bits and signature_bits:
            return _HASHES[signature_bits]()
        assert isinstance(pub, ec.EllipticCurvePublicKey)
        return _HASHES[EC_CURVE_HASH_BITS.get(pub.curve.key_size, 256)]()
    return _HASHES[signature_bits or 256]()


# Vault's revocation_signature_algorithm names (Go x509.SignatureAlgorithm.String()) and what they mean.
SIGNATURE_ALGORITHMS: dict[str, tuple[str, int, bool]] = {
    # name: (key type, hash bits (0 = intrinsic), pss)
    "SHA256WithRSA": ("rsa", 256, False),
    "SHA384WithRSA": ("rsa", 384, False),
    "SHA512WithRSA": ("rsa", 512, False),
    "SHA256WithRSAPSS": ("rsa", 256, True),
    "SHA384WithRSAPSS": ("rsa", 384, True),
    "SHA512WithRSAPSS": ("rsa", 512, True),
    "ECDSAWithSHA256": ("ec", 256, False),
    "ECDSAWithSHA384": ("ec", 384, False),
    "ECDSAWithSHA512": ("ec", 512, False),
    "Ed25519": ("ed25519", 0, False),
    "MLDSA44": ("mldsa", 0, False),
    "MLDSA65": ("mldsa", 0, False),
    "MLDSA87": ("mldsa", 0, False),
}
_SIG_ALIASES = {"pureed25519": "Ed25519"}


def canonical_signature_algorithm(name: str) -> str:
    """'' stays '' (library default); otherwise Vault's canonical spelling or UserError."""
    if not name:
        return ""
    low = name.lower()
    if low in _SIG_ALIASES:
        return _SIG_ALIASES[low]
    for known in SIGNATURE_ALGORITHMS:
        if known.lower() == low:
            return known
    raise UserError(f"Unknown signature algorithm: {name}")


def signature_algorithm_of(cert: x509.Certificate) -> str:
    """Go's name for a certificate's signature algorithm (what generated roots store as their CRL algorithm)."""
    oid = cert.signature_algorithm_oid.dotted_string
    return _SIG_OID_NAMES.get(oid, "")


def signature_params(name: str) -> tuple[HashAlg, bool]:
    """(hash, use_pss) for a canonical algorithm name; (None, False) for '' or Ed25519."""
    if not name:
        return None, False
    _, bits, pss = SIGNATURE_ALGORITHMS[name]
    return (_HASHES[bits]() if bits else None), pss


def check_algorithm_fits_key(name: str, key_type: str) -> None:
    if name and SIGNATURE_ALGORITHMS[name][0] != key_type:
        raise UserError(f"issuer key type ({key_type}) does not match the revocation signature algorithm ({name})")


_SIG_OID_NAMES = {
    "2.16.840.1.101.3.4.3.17": "MLDSA44",
    "2.16.840.1.101.3.4.3.18": "MLDSA65",
    "2.16.840.1.101.3.4.3.19": "MLDSA87",
    "1.2.840.113549.1.1.11": "SHA256WithRSA",
    "1.2.840.113549.1.1.12": "SHA384WithRSA",
    "1.2.840.113549.1.1.13": "SHA512WithRSA",
    "1.2.840.113549.1.1.5": "SHA1WithRSA",
    "1.2.840.10045.4.3.2": "ECDSAWithSHA256",
    "1.2.840.10045.4.3.3": "ECDSAWithSHA384",
    "1.2.840.10045.4.3.4": "ECDSAWithSHA512",
    "1.3.101.112": "Ed25519",
}


def _pss_name(cert: x509.Certificate) -> str:
    h = cert.signature_hash_algorithm
    return {"sha256": "SHA256WithRSAPSS", "sha384": "SHA384WithRSAPSS", "sha512": "SHA512WithRSAPSS"}.get(
        h.name if h else "", "")


def certificate_signature_algorithm(cert: x509.Certificate) -> str:
    if cert.signature_algorithm_oid.dotted_string == "1.2.840.113549.1.1.10":
        return _pss_name(cert)
    return signature_algorithm_of(cert)
