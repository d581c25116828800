"""`HsmSigningKey`: the engine's `SigningKey` for a key that lives in a PKCS#11 token.

Every method blocks on the token (it takes a pooled session and the module lock); async callers go through
`engine.signing.sign_*`, which use the `a*` variants for keys marked `blocking`. Each signature the token returns is checked against the
public key recorded when the issuer was made, so a token whose key was swapped under the same label yields a
clear error instead of certificates nobody can verify.
"""
from __future__ import annotations

import asyncio
from typing import Any, Callable, TypeVar

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from cryptography.x509 import ocsp

from engine.hsm import assemble
from engine.hsm.errors import ManagedKeyConfigError
from engine.hsm.token import EXECUTOR, KeyRef, TokenHandle, attributes_op, sign_op

T = TypeVar("T")
HashAlg = hashes.HashAlgorithm | None


async def run_blocking(fn: Callable[..., T], *args: Any) -> T:
    return await asyncio.get_running_loop().run_in_executor(EXECUTOR, fn, *args)


class HsmSigningKey:
    blocking = True   # tells callers that know about it to keep these calls off the event loop

    def __init__(self, pool: Callable[[], TokenHandle], ref: KeyRef, key_type: str,
                 public_key: CertificatePublicKeyTypes) -> None:
        # The token's pool is looked up on each use: rewriting the managed key replaces it.
        self._pool = pool
        self.ref = ref
        self.key_type = key_type
        self._public = public_key

    @property
    def managed_key_name(self) -> str:
        return self.ref.name

    def public_key(self) -> CertificatePublicKeyTypes:
        return self._public

    def _hash(self, hash_alg: HashAlg) -> HashAlg:
        return None if self.key_type == "ed25519" else (hash_alg or hashes.SHA256())

    def _signer(self, hash_alg: HashAlg, use_pss: bool) -> Callable[[bytes], bytes]:
        pss = use_pss and self.key_type == "rsa"

        def sign(tbs: bytes) -> bytes:
            return self.sign_bytes(tbs, hash_alg, pss)

        return sign

    # -- SigningKey ---------------------------------------------------------------------------------------------

    def sign_bytes(self, data: bytes, hash_alg: HashAlg, use_pss: bool = False) -> bytes:
        h = self._hash(hash_alg)
        pss = use_pss and self.key_type == "rsa"
        signature = self._pool().run(self.ref.name, sign_op(self.ref, self.key_type, data, h, pss))
        self._check(signature, data, h, pss)
        return signature

    def sign_certificate(self, builder: x509.CertificateBuilder, hash_alg: HashAlg,
                         use_pss: bool = False) -> x509.Certificate:
        h = self._hash(hash_alg)
        return assemble.certificate(builder, self.key_type, h, use_pss, self._signer(h, use_pss))

    def sign_crl(self, builder: x509.CertificateRevocationListBuilder, hash_alg: HashAlg,
                 use_pss: bool = False) -> x509.CertificateRevocationList:
        h = self._hash(hash_alg)
        return assemble.crl(builder, self.key_type, h, use_pss, self._signer(h, use_pss))

    def sign_csr(self, builder: x509.CertificateSigningRequestBuilder, hash_alg: HashAlg,
                 use_pss: bool = False) -> x509.CertificateSigningRequest:
        h = self._hash(hash_alg)
        return assemble.csr(builder, self.key_type, h, use_pss, self._public, self._signer(h, use_pss))

    def sign_ocsp(self, builder: ocsp.OCSPResponseBuilder, hash_alg: HashAlg,
                  use_pss: bool = False) -> ocsp.OCSPResponse:
        h = self._hash(hash_alg)
        return assemble.ocsp_response(builder, self.key_type, h, use_pss, self._signer(h, use_pss))

    # -- async variants -----------------------------------------------------------------------------------------

    async def asign_certificate(self, builder: x509.CertificateBuilder, hash_alg: HashAlg,
                                use_pss: bool = False) -> x509.Certificate:
        return await run_blocking(self.sign_certificate, builder, hash_alg, use_pss)

    async def asign_crl(self, builder: x509.CertificateRevocationListBuilder, hash_alg: HashAlg,
                        use_pss: bool = False) -> x509.CertificateRevocationList:
        return await run_blocking(self.sign_crl, builder, hash_alg, use_pss)

    async def asign_csr(self, builder: x509.CertificateSigningRequestBuilder, hash_alg: HashAlg,
                        use_pss: bool = False) -> x509.CertificateSigningRequest:
        return await run_blocking(self.sign_csr, builder, hash_alg, use_pss)

    async def asign_ocsp(self, builder: ocsp.OCSPResponseBuilder, hash_alg: HashAlg,
                         use_pss: bool = False) -> ocsp.OCSPResponse:
        return await run_blocking(self.sign_ocsp, builder, hash_alg, use_pss)

    async def asign_bytes(self, data: bytes, hash_alg: HashAlg, use_pss: bool = False) -> bytes:
        return await run_blocking(self.sign_bytes, data, hash_alg, use_pss)

    async def token_attributes(self, names: list[Any]) -> dict[Any, Any]:
        """Non-secret attributes of the private key object as the token reports them."""
        return await run_blocking(self._pool().run, self.ref.name, attributes_op(self.ref, names))

    # -- internals ----------------------------------------------------------------------------------------------

    def _check(self, signature: bytes, data: bytes, hash_alg: HashAlg, pss: bool) -> None:
        pub = self._public
        try:
            if isinstance(pub, rsa.RSAPublicKey):
                assert hash_alg is not None
                pad = assemble.pss_padding(hash_alg) if pss else padding.PKCS1v15()
                pub.verify(signature, data, pad, hash_alg)
            elif isinstance(pub, ec.EllipticCurvePublicKey):
                assert hash_alg is not None
                pub.verify(signature, data, ec.ECDSA(hash_alg))
            elif isinstance(pub, ed25519.Ed25519PublicKey):
                pub.verify(signature, data)
        except InvalidSignature:
            raise ManagedKeyConfigError(self.ref.name, f"the token key with {self.ref.describe()} is not the key "
                                                       "this issuer was created with (signature does not verify)"
                                        ) from None
