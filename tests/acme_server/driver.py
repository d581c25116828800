"""An in-process ACME client for the backend: JWS built with certbot's `acme.jws`, requests sent straight to
`Backend.handle` on one event loop (so the validation worker lives across calls), answers decoded like HTTP."""
from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from typing import Any

import josepy
from acme import jws as acme_jws
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from engine.backend import build_backend
from engine.storage import InMemoryStorage
from plugin.framework import Backend, Operation, Request, StaticSystemView

BASE = "https://bao.example:8200/v1/pki"


@dataclass
class Reply:
    status: int
    headers: dict[str, list[str]]
    body: bytes
    content_type: str

    def json(self) -> Any:
        return json.loads(self.body)

    def header(self, name: str) -> str:
        return (self.headers.get(name) or [""])[0]


@dataclass
class AcmeMount:
    backend: Backend = field(default_factory=build_backend)
    storage: InMemoryStorage = field(default_factory=InMemoryStorage)
    system: StaticSystemView = field(default_factory=lambda: StaticSystemView(default_ttl=30 * 86400,
                                                                               max_ttl=365 * 86400))

    async def call(self, op: Operation, path: str, data: dict[str, Any] | None = None) -> Any:
        req = Request(operation=op, path=path, storage=self.storage, system=self.system, data=data or {})
        out = await self.backend.handle(req)
        assert out.error is None, (path, out.error.message)
        return out.response

    async def vault(self, op: Operation, path: str, /, **data: Any) -> dict[str, Any]:
        resp = await self.call(op, path, data)
        assert resp is not None and not resp.is_error, (path, resp and resp.data)
        return resp.data or {}

    async def raw(self, op: Operation, path: str, data: dict[str, Any] | None = None) -> Reply:
        resp = await self.call(op, path, data)
        assert resp is not None and resp.data is not None and "http_status_code" in resp.data, (path, resp)
        body = resp.data.get("http_raw_body", b"")
        return Reply(resp.data["http_status_code"], resp.headers, body, resp.data.get("http_content_type", ""))

    async def setup(self, **acme: Any) -> str:
        await self.vault(Operation.UPDATE, "root/generate/internal", common_name="ACME Test Root", ttl="87600h",
                         key_type="ec")
        await self.vault(Operation.UPDATE, "config/cluster", path=BASE, aia_path=BASE)
        return (await self.vault(Operation.UPDATE, "config/acme", enabled=True, **acme))["enabled"]


def ec_key() -> josepy.JWKEC:
    return josepy.JWKEC(key=ec.generate_private_key(ec.SECP256R1()))


class Client:
    """One ACME account key talking to one directory of an AcmeMount."""

    def __init__(self, mount: AcmeMount, directory: str = "acme/", key: josepy.JWK | None = None) -> None:
        self.mount = mount
        self.directory = directory
        self.key = key or ec_key()
        self.kid: str | None = None

    def url(self, sub: str) -> str:
        return f"{BASE}/{self.directory}{sub}"

    async def nonce(self) -> str:
        reply = await self.mount.raw(Operation.HEADER, self.directory + "new-nonce")
        return reply.header("Replay-Nonce")

    def body(self, sub: str, payload: dict[str, Any] | None, nonce: str, *, use_jwk: bool = False,
             key: josepy.JWK | None = None, url: str | None = None) -> dict[str, Any]:
        raw = b"" if payload is None else json.dumps(payload).encode()
        kid = None if (use_jwk or self.kid is None) else self.kid
        signed = acme_jws.JWS.sign(raw, key=key or self.key, alg=josepy.ES256, nonce=josepy.b64.b64decode(nonce),
                                   url=url or self.url(sub), kid=kid)
        return json.loads(signed.json_dumps())

    async def post(self, sub: str, payload: dict[str, Any] | None = None, **kw: Any) -> Reply:
        nonce = kw.pop("nonce", None) or await self.nonce()
        path = kw.pop("path", None) or self.directory + sub
        return await self.mount.raw(Operation.UPDATE, path, self.body(sub, payload, nonce, **kw))

    async def register(self, **payload: Any) -> Reply:
        reply = await self.post("new-account", {"termsOfServiceAgreed": True, **payload}, use_jwk=True)
        if reply.status in (200, 201):
            self.kid = reply.header("Location")
        return reply

    async def order(self, *names: str) -> Reply:
        idents = [{"type": "ip" if n[0].isdigit() or ":" in n else "dns", "value": n} for n in names]
        return await self.post("new-order", {"identifiers": idents})

    def sub_of(self, url: str) -> str:
        prefix = f"{BASE}/{self.directory}"
        assert url.startswith(prefix), url
        return url[len(prefix):]


def csr_der(names: list[str], key: ec.EllipticCurvePrivateKey | None = None, ca: bool = False) -> str:
    import ipaddress
    key = key or ec.generate_private_key(ec.SECP256R1())
    sans: list[x509.GeneralName] = []
    for n in names:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(n)))
        except ValueError:
            sans.append(x509.DNSName(n))
    builder = x509.CertificateSigningRequestBuilder().subject_name(x509.Name([])).add_extension(
        x509.SubjectAlternativeName(sans), critical=False)
    if ca:
        builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
    csr = builder.sign(key, hashes.SHA256())
    return base64.urlsafe_b64encode(csr.public_bytes(serialization.Encoding.DER)).decode().rstrip("=")
