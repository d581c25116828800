"""Our ACME server and the built-in's, each on a fresh mount of the same `bao`, tuned as the README says, with
challtestsrv (from the pebble fixture) as the DNS server behind config/acme dns_resolver."""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, Iterator

import josepy
import pytest
from acme import client as acme_client
from acme import messages
from cryptography.hazmat.primitives.asymmetric import ec

from integration.harness import BaoServer, HarnessError, unique_name

HEADERS = ["Replay-Nonce", "Link", "Location", "Retry-After", "Last-Modified"]


@dataclass
class AcmeMount:
    bao: BaoServer
    path: str
    kind: str             # "ours" | "ref"
    root_pem: str

    @property
    def base(self) -> str:
        return f"{self.bao.addr}/v1/{self.path}"

    def directory(self, prefix: str = "acme/") -> str:
        return f"{self.base}/{prefix}directory"

    def write(self, sub: str, **data: Any) -> dict[str, Any]:
        resp = self.bao.http("POST", f"{self.path}/{sub}", json=data)
        assert resp.status_code in (200, 204), (self.kind, sub, resp.status_code, resp.text)
        return resp.json().get("data") or {} if resp.status_code == 200 else {}


def make_mount(bao: BaoServer, kind: str, dns_port: int, **acme: Any) -> AcmeMount:
    path = unique_name(f"acme-{kind}")
    if kind == "ours":
        bao.enable_plugin_mount(path)
    else:
        bao.enable_builtin_mount(path)
    resp = bao.http("POST", f"sys/mounts/{path}/tune", json={"allowed_response_headers": HEADERS,
                                                               "max_lease_ttl": "87600h"})
    assert resp.status_code in (200, 204), resp.text
    root = bao.http("POST", f"{path}/root/generate/internal",
                    json={"common_name": f"ACME {kind} Root", "ttl": "8760h", "key_type": "ec"})
    assert root.status_code == 200, root.text
    mount = AcmeMount(bao, path, kind, root.json()["data"]["certificate"])
    mount.write("config/cluster", path=mount.base, aia_path=mount.base)
    mount.write("config/acme", enabled=True, dns_resolver=f"127.0.0.1:{dns_port}", **acme)
    return mount


@pytest.fixture()
def acme_pair(bao: BaoServer, pebble_ca) -> Iterator[dict[str, AcmeMount]]:
    mounts: dict[str, AcmeMount] = {}
    try:
        for kind in ("ours", "ref"):
            mounts[kind] = make_mount(bao, kind, pebble_ca.dns_port)
        yield mounts
    finally:
        for m in mounts.values():
            try:
                bao.disable_mount(m.path)
            except HarnessError:
                pass


def acme_client_for(directory_url: str, key: josepy.JWK | None = None) -> acme_client.ClientV2:
    key = key or josepy.JWKEC(key=ec.generate_private_key(ec.SECP256R1()))
    net = acme_client.ClientNetwork(key, alg=josepy.ES256 if isinstance(key, josepy.JWKEC) else josepy.RS256,
                                    user_agent="python-pki-tests", verify_ssl=False)
    directory = messages.Directory.from_json(net.get(directory_url).json())
    return acme_client.ClientV2(directory, net=net)


def deadline(seconds: float = 90) -> dt.datetime:
    return dt.datetime.now() + dt.timedelta(seconds=seconds)


class RawAcme:
    """Hand-built JWS requests (certbot's `acme.jws`) over plain HTTP, for error cases no client would send."""

    def __init__(self, mount: AcmeMount, prefix: str = "acme/", key: josepy.JWK | None = None) -> None:
        import requests
        self.mount = mount
        self.prefix = prefix
        self.key = key or josepy.JWKEC(key=ec.generate_private_key(ec.SECP256R1()))
        self.kid: str | None = None
        self.http = requests.Session()

    def url(self, sub: str) -> str:
        return f"{self.mount.base}/{self.prefix}{sub}"

    def nonce(self) -> str:
        return self.http.head(self.url("new-nonce"), timeout=30).headers["Replay-Nonce"]

    def post(self, sub_or_url: str, payload: Any = None, *, nonce: str | None = None, url: str | None = None,
             use_jwk: bool = False, both: bool = False, raw_payload: bytes | None = None):  # noqa: ANN201
        import json as _json
        from acme import jws as acme_jws
        target = sub_or_url if sub_or_url.startswith("http") else self.url(sub_or_url)
        body = raw_payload if raw_payload is not None else (b"" if payload is None else _json.dumps(payload).encode())
        kid = None if use_jwk else self.kid
        alg = josepy.ES256
        signed = acme_jws.JWS.sign(body, key=self.key, alg=alg, nonce=josepy.b64.b64decode(nonce or self.nonce()),
                                   url=url or target, kid=kid)
        data = _json.loads(signed.json_dumps())
        if both:
            import base64
            header = _json.loads(base64.urlsafe_b64decode(data["protected"] + "=="))
            header["jwk"] = self.key.public_key().to_partial_json()
            header["kid"] = self.kid or "x"
            data["protected"] = base64.urlsafe_b64encode(_json.dumps(header).encode()).decode().rstrip("=")
        return self.http.post(target, json=data, headers={"Content-Type": "application/jose+json"}, timeout=60)

    def register(self, **payload: Any):  # noqa: ANN201
        resp = self.post("new-account", {"termsOfServiceAgreed": True, **payload}, use_jwk=True)
        if resp.status_code in (200, 201):
            self.kid = resp.headers["Location"]
        return resp
