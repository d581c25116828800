"""Our ACME server and the built-in's, each on a fresh mount of the same `bao`, tuned as the README says, with
challtestsrv (from the pebble fixture) as the DNS server behind config/acme dns_resolver."""
from __future__ import annotations

import contextlib
import datetime as dt
from dataclasses import dataclass
from typing import Any, Iterator

import josepy
import pytest
from acme import client as acme_client
from acme import messages
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from integration.harness import BaoServer, HarnessError, unique_name

HEADERS = ["Replay-Nonce", "Link", "Location", "Retry-After", "Last-Modified"]   # the README's tuning


@dataclass
class AcmeMount:
    """A PKI mount (ours or the built-in) set up the way the built-in's docs ask: tuned response headers, an EC root,
    `config/cluster` path, `config/acme` enabled with `dns_resolver` pointing at the test DNS server."""

    bao: BaoServer
    kind: str            # "ours" or "builtin"
    path: str
    root_pem: str
    dns_resolver: str

    @property
    def base(self) -> str:
        return f"{self.bao.addr}/v1/{self.path}"

    @property
    def directory(self) -> str:
        return self.directory_at("acme/")

    def directory_at(self, prefix: str) -> str:
        return f"{self.base}/{prefix}directory"

    def write(self, sub: str, body: dict | None = None) -> dict:
        resp = self.bao.http("POST", f"{self.path}/{sub}", json=body or {})
        if resp.status_code not in (200, 204):
            raise HarnessError(f"{self.kind} {sub}: HTTP {resp.status_code}: {resp.text.strip()}")
        return resp.json().get("data") or {} if resp.status_code == 200 else {}

    def read(self, sub: str) -> dict:
        resp = self.bao.http("GET", f"{self.path}/{sub}")
        if resp.status_code != 200:
            raise HarnessError(f"{self.kind} GET {sub}: HTTP {resp.status_code}: {resp.text.strip()}")
        return resp.json()["data"]

    def directory_json(self) -> dict:
        resp = self.bao.http("GET", f"{self.path}/acme/directory", token=False)
        if resp.status_code != 200:
            raise HarnessError(f"{self.kind} mount's ACME directory: HTTP {resp.status_code}: {resp.text[:200]}")
        return resp.json()

    def configure_acme(self, **fields: object) -> None:
        """config/acme enabled with our DNS server, plus `fields`."""
        self.write("config/acme", {"enabled": True, "dns_resolver": self.dns_resolver, **fields})

    def new_eab(self) -> tuple[str, str]:
        data = self.write("acme/new-eab")
        return data["id"], data["key"]

    def revoked(self, cert: x509.Certificate) -> bool:
        digits = f"{cert.serial_number:x}"
        digits = "0" * (len(digits) % 2) + digits     # Vault's form: colon-separated bytes, no leading 00
        serial = ":".join(digits[i:i + 2] for i in range(0, len(digits), 2))
        return bool(self.read(f"cert/{serial}").get("revocation_time"))


def make_mount(bao: BaoServer, kind: str, dns_resolver: str, **acme_config: object) -> AcmeMount:
    """A fresh mount of `kind` ("ours" or "builtin") serving ACME; the directory is checked to answer before a
    client is started."""
    path = unique_name(f"acme-{kind}")
    if kind == "builtin":
        bao.enable_builtin_mount(path)
    elif kind == "ours":
        bao.enable_plugin_mount(path)
    else:
        raise ValueError(f"mount kind {kind!r}: 'ours' or 'builtin'")
    try:
        resp = bao.http("POST", f"sys/mounts/{path}/tune",
                        json={"allowed_response_headers": HEADERS, "max_lease_ttl": "87600h"})
        if resp.status_code not in (200, 204):
            raise HarnessError(f"tune {path}: {resp.status_code} {resp.text}")
        root = bao.http("POST", f"{path}/root/generate/internal",
                        json={"common_name": f"ACME test root ({kind})", "key_type": "ec", "ttl": "8760h"})
        if root.status_code != 200:
            raise HarnessError(f"root on {path}: {root.status_code} {root.text}")
        mount = AcmeMount(bao, kind, path, root.json()["data"]["certificate"], dns_resolver)
        mount.write("config/cluster", {"path": mount.base, "aia_path": mount.base})
        mount.configure_acme(**acme_config)
        mount.directory_json()
        return mount
    except BaseException:
        with contextlib.suppress(HarnessError):
            bao.disable_mount(path)
        raise


@pytest.fixture()
def acme_pair(bao: BaoServer, pebble_ca) -> Iterator[dict[str, AcmeMount]]:
    mounts: dict[str, AcmeMount] = {}
    try:
        # Keyed "ref" (the reference the differential tests compare against); the mount's kind is "builtin".
        for key, kind in (("ours", "ours"), ("ref", "builtin")):
            mounts[key] = make_mount(bao, kind, f"127.0.0.1:{pebble_ca.dns_port}")
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
