"""EAB, key change, profiles and renewal information (RFC 9773), in-process."""
from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json

import josepy
from acme import jws as acme_jws
from cryptography import x509

from engine.acme.protocol import acme_state
from engine.acme.renewal import cert_id
from plugin.framework import Operation
from tests.acme_server.driver import BASE, AcmeMount, Client, csr_der, ec_key
from tests.acme_server.test_acme_flow import Responder, _thumb, responder  # noqa: F401 - fixture


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def eab_binding(c: Client, eab: dict, url: str) -> dict:
    protected = b64(json.dumps({"alg": "HS256", "kid": eab["id"], "url": url}).encode())
    payload = b64(json.dumps(c.key.public_key().to_partial_json()).encode())
    key = base64.urlsafe_b64decode(eab["key"] + "==")
    sig = hmac.new(key, f"{protected}.{payload}".encode(), hashlib.sha256).digest()
    return {"protected": protected, "payload": payload, "signature": b64(sig)}


def test_eab_policy_and_single_use_keys():
    async def go():
        m = AcmeMount()
        await m.setup(eab_policy="always-required")
        directory = (await m.raw(Operation.READ, "acme/directory")).json()
        assert directory["meta"]["externalAccountRequired"] is True
        c = Client(m)
        refused = await c.register()
        assert refused.status == 401 and refused.json()["type"].endswith(":externalAccountRequired")
        eab = await m.vault(Operation.UPDATE, "acme/new-eab")
        wrong_dir = await m.vault(Operation.UPDATE, "roles/x/acme/new-eab")
        bad = await c.register(externalAccountBinding=eab_binding(c, wrong_dir, c.url("new-account")))
        assert bad.status == 401
        ok = await c.register(externalAccountBinding=eab_binding(c, eab, c.url("new-account")))
        assert ok.status == 201, ok.body
        assert ok.json()["externalAccountBinding"]["protected"]
        reuse = Client(m)
        used = await reuse.register(externalAccountBinding=eab_binding(reuse, eab, reuse.url("new-account")))
        assert used.status == 401
        assert (await c.order("a.example.com")).status == 201
    asyncio.run(go())


def test_key_change_moves_the_account_to_the_new_key():
    async def go():
        m = AcmeMount()
        await m.setup()
        c = Client(m)
        created = await c.register()
        new_key = ec_key()
        url = c.url("key-change")
        inner = acme_jws.JWS.sign(json.dumps({"account": c.kid, "oldKey": c.key.public_key().to_partial_json()})
                                  .encode(), key=new_key, alg=josepy.ES256, nonce=None, url=url)
        resp = await c.post("key-change", json.loads(inner.json_dumps()))
        assert resp.status == 200, resp.body
        old = Client(m, key=c.key)
        assert (await old.post("new-account", {"onlyReturnExisting": True}, use_jwk=True)).status == 400
        moved = Client(m, key=new_key)
        found = await moved.post("new-account", {"onlyReturnExisting": True}, use_jwk=True)
        assert found.status == 200 and found.header("Location") == created.header("Location")
        moved.kid = c.kid
        assert (await moved.order("b.example.com")).status == 201
        assert (await c.order("c.example.com")).status == 400   # the old key no longer signs for the account
    asyncio.run(go())


def test_profiles_pick_the_role(responder):  # noqa: F811
    async def go():
        m = AcmeMount()
        await m.setup()
        await m.vault(Operation.UPDATE, "roles/short", allow_any_name=True, ttl="1h", max_ttl="1h",
                      key_type="any")
        await m.vault(Operation.UPDATE, "config/acme", profiles={"short": "short"})
        directory = (await m.raw(Operation.READ, "acme/directory")).json()
        assert set(directory["meta"]["profiles"]) == {"short"}
        c = Client(m)
        await c.register()
        unknown = await c.post("new-order", {"identifiers": [{"type": "ip", "value": "127.0.0.1"}],
                                             "profile": "long"})
        assert unknown.status == 400
        order = await c.post("new-order", {"identifiers": [{"type": "ip", "value": "127.0.0.1"}],
                                           "profile": "short"})
        assert order.status == 201 and order.json()["profile"] == "short"
        chal = (await c.post(c.sub_of(order.json()["authorizations"][0]))).json()["challenges"][0]
        responder.answers[chal["token"]] = f"{chal['token']}.{_thumb(c)}"
        await c.post(c.sub_of(chal["url"]), {})
        await acme_state(m.backend.pki_context).validator.idle()
        fin = await c.post(c.sub_of(order.json()["finalize"]), {"csr": csr_der(["127.0.0.1"])})
        assert fin.status == 200, fin.body
        pem = (await c.post(c.sub_of(fin.json()["certificate"]))).body
        leaf = x509.load_pem_x509_certificates(pem)[0]
        assert (leaf.not_valid_after_utc - leaf.not_valid_before_utc).total_seconds() <= 3600 + 60
    asyncio.run(go())


def test_renewal_info_and_replaces(responder):  # noqa: F811
    async def go():
        m = AcmeMount()
        await m.setup()
        c = Client(m)
        await c.register()
        assert "renewalInfo" not in (await m.raw(Operation.READ, "acme/directory")).json()
        await m.vault(Operation.UPDATE, "config/acme", enable_ari=True)
        assert (await m.raw(Operation.READ, "acme/directory")).json()["renewalInfo"] == f"{BASE}/acme/renewal-info"
        order = await c.order("127.0.0.1")
        chal = (await c.post(c.sub_of(order.json()["authorizations"][0]))).json()["challenges"][0]
        responder.answers[chal["token"]] = f"{chal['token']}.{_thumb(c)}"
        await c.post(c.sub_of(chal["url"]), {})
        await acme_state(m.backend.pki_context).validator.idle()
        fin = await c.post(c.sub_of(order.json()["finalize"]), {"csr": csr_der(["127.0.0.1"])})
        leaf = x509.load_pem_x509_certificates((await c.post(c.sub_of(fin.json()["certificate"]))).body)[0]
        info = await m.raw(Operation.READ, f"acme/renewal-info/{cert_id(leaf)}")
        assert info.status == 200 and info.header("Retry-After")
        window = info.json()["suggestedWindow"]
        assert window["start"] < window["end"]
        stranger = Client(m)
        await stranger.register()
        refused = await stranger.post("new-order", {"identifiers": [{"type": "ip", "value": "127.0.0.1"}],
                                                    "replaces": cert_id(leaf)})
        assert refused.status == 400
        renewal = await c.post("new-order", {"identifiers": [{"type": "ip", "value": "127.0.0.1"}],
                                             "replaces": cert_id(leaf)})
        assert renewal.status == 201 and renewal.json()["replaces"] == cert_id(leaf)
        assert (await m.raw(Operation.READ, "acme/renewal-info/AAAA.AAAA")).status == 400
    asyncio.run(go())


def test_account_keys_eddsa_and_rsa():
    from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    async def go():
        m = AcmeMount()
        await m.setup()
        probe = Client(m)
        # Ed25519 (RFC 8037), signed by hand: josepy has no EdDSA.
        key = ed25519.Ed25519PrivateKey.generate()
        x = b64(key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw))
        header = {"alg": "EdDSA", "jwk": {"kty": "OKP", "crv": "Ed25519", "x": x}, "nonce": await probe.nonce(),
                  "url": probe.url("new-account")}
        protected = b64(json.dumps(header).encode())
        payload = b64(json.dumps({"termsOfServiceAgreed": True}).encode())
        body = {"protected": protected, "payload": payload,
                "signature": b64(key.sign(f"{protected}.{payload}".encode()))}
        made = await m.raw(Operation.UPDATE, "acme/new-account", body)
        assert made.status == 201, made.body
        body["signature"] = b64(key.sign(b"something else"))
        header["nonce"] = await probe.nonce()
        protected = b64(json.dumps(header).encode())
        forged = await m.raw(Operation.UPDATE, "acme/new-account",
                             {"protected": protected, "payload": payload, "signature": body["signature"]})
        assert forged.status == 400 and forged.json()["type"].endswith(":malformed")
        # RSA with RS256 through certbot's own JWS code.
        rsa_client = Client(m, key=josepy.JWKRSA(key=rsa.generate_private_key(65537, 2048)))
        nonce = await rsa_client.nonce()
        signed = acme_jws.JWS.sign(json.dumps({"termsOfServiceAgreed": True}).encode(), key=rsa_client.key,
                                   alg=josepy.RS256, nonce=josepy.b64.b64decode(nonce),
                                   url=rsa_client.url("new-account"), kid=None)
        assert (await m.raw(Operation.UPDATE, "acme/new-account", json.loads(signed.json_dumps()))).status == 201
        # HMAC and "none" are refused for account keys.
        header = {"alg": "HS256", "jwk": {"kty": "OKP", "crv": "Ed25519", "x": x}, "nonce": await probe.nonce(),
                  "url": probe.url("new-account")}
        hs = await m.raw(Operation.UPDATE, "acme/new-account", {"protected": b64(json.dumps(header).encode()),
                                                                "payload": payload, "signature": "AA"})
        assert hs.status == 400 and "unexpected value for 'algo'" in hs.json()["detail"]
    asyncio.run(go())
