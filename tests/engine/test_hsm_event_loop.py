"""Signing with a token-held key never runs on the event loop; local keys sign inline, without a thread hop.

`SlowTokenKey` stands in for `HsmSigningKey`: it signs with a local key, but only on a worker thread and only
once the test releases it, so a signature stays "in progress" for as long as the test wants. While it is in
progress a second coroutine on the same loop must be able to run.
"""
from __future__ import annotations

import asyncio
import base64
import datetime as dt
import threading
from typing import Any, Callable, TypeVar
from urllib.parse import quote

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509 import ocsp
from cryptography.x509.oid import NameOID

from engine import signing
from engine.backend import build_backend
from engine.context import PkiContext
from engine.signing import LocalSigningKey, SigningKey
from revocation_helpers import AsyncMount, Reply, pem_cert

T = TypeVar("T")


class SlowTokenKey:
    blocking = True

    def __init__(self, inner: SigningKey) -> None:
        self.inner = inner
        self.key_type = inner.key_type
        self.loop_thread: threading.Thread | None = None
        self.started = threading.Event()
        self.release = threading.Event()
        self.on_loop: list[str] = []
        self.signatures = 0

    def public_key(self) -> Any:
        return self.inner.public_key()

    def _device(self, what: str, fn: Callable[..., T], *args: Any) -> T:
        if threading.current_thread() is self.loop_thread:
            self.on_loop.append(what)
            self.started.set()   # let the test go on and report, instead of waiting for a release that can't come
            raise RuntimeError(f"{what} called on the event loop")
        self.started.set()
        if not self.release.wait(60):   # a deadlock guard, not a timing assertion
            raise RuntimeError("the test never released the signature")
        self.signatures += 1
        return fn(*args)

    def sign_certificate(self, builder: Any, hash_alg: Any, use_pss: bool = False) -> Any:
        return self._device("sign_certificate", self.inner.sign_certificate, builder, hash_alg, use_pss)

    def sign_crl(self, builder: Any, hash_alg: Any, use_pss: bool = False) -> Any:
        return self._device("sign_crl", self.inner.sign_crl, builder, hash_alg, use_pss)

    def sign_csr(self, builder: Any, hash_alg: Any) -> Any:
        return self._device("sign_csr", self.inner.sign_csr, builder, hash_alg)

    def sign_bytes(self, data: bytes, hash_alg: Any, use_pss: bool = False) -> bytes:
        return self._device("sign_bytes", self.inner.sign_bytes, data, hash_alg, use_pss)

    async def asign_certificate(self, builder: Any, hash_alg: Any, use_pss: bool = False) -> Any:
        return await asyncio.to_thread(self.sign_certificate, builder, hash_alg, use_pss)

    async def asign_crl(self, builder: Any, hash_alg: Any, use_pss: bool = False) -> Any:
        return await asyncio.to_thread(self.sign_crl, builder, hash_alg, use_pss)

    async def asign_csr(self, builder: Any, hash_alg: Any) -> Any:
        return await asyncio.to_thread(self.sign_csr, builder, hash_alg)

    async def asign_bytes(self, data: bytes, hash_alg: Any, use_pss: bool = False) -> bytes:
        return await asyncio.to_thread(self.sign_bytes, data, hash_alg, use_pss)


def _ocsp_path(leaf: x509.Certificate, ca: x509.Certificate) -> str:
    der = ocsp.OCSPRequestBuilder().add_certificate(leaf, ca, hashes.SHA1()).build().public_bytes(Encoding.DER)
    return "ocsp/" + quote(base64.b64encode(der).decode(), safe="")


def _csr_pem() -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Sub CA")])).sign(key, hashes.SHA256()))
    return csr.public_bytes(Encoding.PEM).decode()


async def _setup() -> tuple[AsyncMount, SlowTokenKey, dict[str, Any], x509.Certificate]:
    ctx = PkiContext()
    m = AsyncMount(backend=build_backend(ctx))
    root = await m.ok("root/generate/internal", common_name="Loop Root", key_type="ec", ttl="87600h")
    await m.ok("roles/r", allow_any_name=True, key_type="ec", ttl="1h")
    leaf = pem_cert((await m.ok("issue/r", common_name="before.example.com"))["certificate"])
    # From here on, the issuer's key behaves like a token key.
    slow = SlowTokenKey(ctx.signers[root["key_id"]])
    ctx.signers[root["key_id"]] = slow
    return m, slow, root, leaf


def _request(kind: str, root: dict[str, Any], leaf: x509.Certificate) -> tuple[str, str, dict[str, Any]]:
    ca = pem_cert(root["certificate"])
    return {
        "leaf": ("write", "issue/r", {"common_name": "during.example.com"}),
        "crl": ("read", "crl/rotate", {}),
        "ocsp": ("read", _ocsp_path(leaf, ca), {}),
        "sign-intermediate": ("write", "root/sign-intermediate", {"csr": _csr_pem(), "ttl": "8760h"}),
        "csr": ("write", "intermediate/generate/existing", {"key_ref": root["key_id"], "common_name": "Again"}),
        "root-existing": ("write", "issuers/generate/root/existing", {"key_ref": root["key_id"],
                                                                     "common_name": "Second Root"}),
        "self-issued": ("write", "root/sign-self-issued", {"certificate": root["certificate"]}),
    }[kind]


@pytest.mark.parametrize("kind", ["leaf", "crl", "ocsp", "sign-intermediate", "csr", "root-existing",
                                  "self-issued"])
def test_other_coroutines_run_while_a_token_signature_is_in_progress(kind: str) -> None:
    async def scenario() -> tuple[Reply, int, SlowTokenKey]:
        m, slow, root, leaf = await _setup()
        slow.loop_thread = threading.current_thread()
        op, path, data = _request(kind, root, leaf)
        task = asyncio.create_task(getattr(m, op)(path, **data))
        ticks = 0

        async def neighbour() -> None:
            nonlocal ticks
            # Wait (off the loop) until the token is busy, then keep working on the loop before letting it finish.
            await asyncio.to_thread(slow.started.wait, 60)
            for _ in range(5):
                await asyncio.sleep(0)
                ticks += 1
            assert not task.done()
            slow.release.set()

        await neighbour()
        return await task, ticks, slow

    reply, ticks, slow = asyncio.run(scenario())
    assert slow.on_loop == []
    assert reply.status == 200, reply.data
    assert ticks == 5
    assert slow.signatures >= 1


def test_local_keys_sign_without_leaving_the_loop_turn() -> None:
    """The helpers complete on their first step for a local key: no executor hop on the EC issuance path."""
    key = LocalSigningKey(ec.generate_private_key(ec.SECP256R1()))
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "x")])
    now = dt.datetime.now(dt.timezone.utc)
    builder = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
               .serial_number(1).not_valid_before(now).not_valid_after(now + dt.timedelta(days=1)))
    coro = signing.sign_certificate(key, builder, hashes.SHA256())
    with pytest.raises(StopIteration) as done:
        coro.send(None)
    cert = done.value.value
    assert isinstance(cert, x509.Certificate)
    cert.verify_directly_issued_by(cert)

    coro_bytes = signing.sign_bytes(key, b"data", hashes.SHA256())
    with pytest.raises(StopIteration) as done_bytes:
        coro_bytes.send(None)
    key.public_key().verify(done_bytes.value.value, b"data", ec.ECDSA(hashes.SHA256()))  # type: ignore[union-attr]
