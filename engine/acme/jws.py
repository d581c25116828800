"""Flattened JWS requests (RFC 8555 section 6.2) verified with josepy, certbot's JOSE library.

josepy has no EdDSA, which RFC 8037 clients (and the built-in) accept: Ed25519 keys are verified here with
cryptography directly, the only JOSE code written by hand.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from dataclasses import dataclass, field
from typing import Any

import josepy
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ed25519

from engine.acme.errors import AcmeProblem, problem

ACCOUNT_ALGS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA")
EAB_ALGS = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}


def b64d(text: str) -> bytes:
    if not isinstance(text, str):
        raise ValueError("not a string")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def b64e(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def malformed(why: str) -> AcmeProblem:
    return problem("malformed", prefix=why)


@dataclass
class SignedRequest:
    """The parts of one JWS request body (`protected`, `payload`, `signature`, as the server hands them over)."""

    protected_b64: str
    payload_b64: str
    signature_b64: str
    header: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> "SignedRequest":
        for name in ("protected",):
            if name not in data:
                raise malformed(f"missing required field '{name}'")
        protected = data["protected"]
        try:
            header = json.loads(b64d(protected))
        except (ValueError, binascii.Error, UnicodeDecodeError):
            raise problem("malformed", prefix="failed to base64 parse 'protected'") from None
        if not isinstance(header, dict):
            raise problem("malformed", prefix="failed to json unmarshal 'protected'")
        return cls(protected, data.get("payload"), data.get("signature"), header)  # type: ignore[arg-type]

    @property
    def alg(self) -> str:
        return str(self.header.get("alg") or "")

    def check_parts(self) -> None:
        if self.payload_b64 is None:
            raise malformed("missing required field 'payload'")
        if self.signature_b64 is None:
            raise malformed("missing required field 'signature'")
        if not isinstance(self.payload_b64, str) or not isinstance(self.signature_b64, str):
            raise malformed("error parsing signature")

    def verify(self, jwk: dict[str, Any]) -> dict[str, Any] | None:
        """The payload (None for POST-as-GET's empty payload) once the signature checks out with `jwk`."""
        self.check_parts()
        signing_input = f"{self.protected_b64}.{self.payload_b64}".encode()
        try:
            signature = b64d(self.signature_b64)
            payload = b64d(self.payload_b64)
        except (ValueError, binascii.Error):
            raise malformed("error parsing signature") from None
        if not _signature_ok(self.alg, jwk, signing_input, signature):
            raise malformed("failed to verify signature: go-jose/go-jose: error in cryptographic primitive")
        if not payload:
            return None
        try:
            parsed = json.loads(payload)
        except ValueError:
            raise malformed("failed to json unmarshal 'payload'") from None
        if not isinstance(parsed, dict):
            raise malformed("failed to json unmarshal 'payload'")
        return parsed


def _signature_ok(alg: str, jwk: dict[str, Any], signing_input: bytes, signature: bytes) -> bool:
    if alg == "EdDSA":
        if jwk.get("kty") != "OKP" or jwk.get("crv") != "Ed25519":
            return False
        try:
            ed25519.Ed25519PublicKey.from_public_bytes(b64d(jwk["x"])).verify(signature, signing_input)
        except (InvalidSignature, KeyError, ValueError):
            return False
        return True
    try:
        key = josepy.JWK.from_json(jwk)
        algorithm = josepy.JWASignature.from_json(alg)
    except (josepy.DeserializationError, KeyError, ValueError, TypeError):
        return False
    try:
        return bool(algorithm.verify(key.key, signing_input, signature))
    except Exception:  # noqa: BLE001 - a key of the wrong kind for the algorithm is just a bad signature
        return False


def check_public_key(jwk: Any) -> dict[str, Any]:
    """A public JWK the server accepts as an account key, or a malformed problem."""
    if not isinstance(jwk, dict):
        raise malformed("received invalid jwk")
    if jwk.get("kty") == "OKP":
        if jwk.get("crv") != "Ed25519" or "d" in jwk:
            raise malformed("received invalid jwk")
        try:
            if len(b64d(jwk["x"])) != 32:
                raise ValueError
        except (KeyError, ValueError, binascii.Error):
            raise malformed("received invalid jwk") from None
        return jwk
    try:
        key = josepy.JWK.from_json(jwk)
    except (josepy.DeserializationError, KeyError, ValueError, TypeError):
        raise malformed("received invalid jwk") from None
    if isinstance(key, josepy.JWKOct) or key.public_key().to_json() != key.to_json():
        raise malformed("received invalid jwk")
    return jwk


def thumbprint(jwk: dict[str, Any]) -> str:
    """RFC 7638 SHA-256 thumbprint, base64url."""
    if jwk.get("kty") == "OKP":
        canonical = json.dumps({"crv": jwk["crv"], "kty": "OKP", "x": jwk["x"]}, separators=(",", ":"),
                               sort_keys=True)
        return b64e(hashlib.sha256(canonical.encode()).digest())
    return b64e(josepy.JWK.from_json(jwk).thumbprint())


def public_key_of(jwk: dict[str, Any]) -> Any:
    """The cryptography public key of an account JWK."""
    if jwk.get("kty") == "OKP":
        return ed25519.Ed25519PublicKey.from_public_bytes(b64d(jwk["x"]))
    return josepy.JWK.from_json(jwk).public_key().key


def verify_hmac(alg: str, key: bytes, signing_input: bytes, signature: bytes) -> bool:
    digest = EAB_ALGS.get(alg)
    return digest is not None and hmac.compare_digest(hmac.new(key, signing_input, digest).digest(), signature)
