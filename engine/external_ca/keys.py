"""Key types the API accepts, key generation, PEM round trips, the JWS algorithm of an account key, CSRs."""
from __future__ import annotations

import ipaddress
from typing import Union

import josepy as jose
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

PrivateKey = Union[ec.EllipticCurvePrivateKey, rsa.RSAPrivateKey]

ACCOUNT_KEY_TYPES = ("ec-256", "ec-384", "ec-521", "rsa-2048", "rsa-4096", "rsa-8192")
CERT_KEY_TYPES = ("ec-256", "ec-384", "ec-521", "rsa-2048", "rsa-4096")

_CURVES = {"ec-256": ec.SECP256R1, "ec-384": ec.SECP384R1, "ec-521": ec.SECP521R1}
_EC_ALGS = {"secp256r1": jose.ES256, "secp384r1": jose.ES384, "secp521r1": jose.ES512}


def generate(key_type: str) -> PrivateKey:
    if key_type in _CURVES:
        return ec.generate_private_key(_CURVES[key_type]())
    if key_type.startswith("rsa-"):
        return rsa.generate_private_key(public_exponent=65537, key_size=int(key_type[4:]))
    raise ValueError(f"unknown key type {key_type!r}")


def to_pem(key: PrivateKey) -> str:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


def from_pem(pem: str) -> PrivateKey:
    key = serialization.load_pem_private_key(pem.encode(), password=None)
    if not isinstance(key, (ec.EllipticCurvePrivateKey, rsa.RSAPrivateKey)):
        raise ValueError("unsupported key algorithm")
    return key


def private_key_type(key: PrivateKey) -> str:
    return "EC" if isinstance(key, ec.EllipticCurvePrivateKey) else "RSA"


def jwk_of(key: PrivateKey) -> jose.JWK:
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return jose.JWKEC(key=key)
    return jose.JWKRSA(key=key)


def jws_alg(key: PrivateKey) -> jose.JWASignature:
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return _EC_ALGS[key.curve.name]
    return jose.RS256


def build_csr(key: PrivateKey, dns_names: list[str], ips: list[str], common_name: str | None) -> str:
    """A CSR for the identifier workflow; CN only with `cn_first` (and only if it fits the 64-char limit)."""
    sans: list[x509.GeneralName] = [x509.DNSName(n) for n in dns_names]
    sans += [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
                        if common_name and len(common_name) <= 64 else [])
    builder = x509.CertificateSigningRequestBuilder().subject_name(subject).add_extension(
        x509.SubjectAlternativeName(sans), critical=False)
    digest = hashes.SHA384() if isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.key_size > 256 \
        else hashes.SHA256()
    return builder.sign(key, digest).public_bytes(serialization.Encoding.PEM).decode()
