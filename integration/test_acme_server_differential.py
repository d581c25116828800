"""Response shapes, statuses and headers of every ACME endpoint and error case: ours against the built-in's.

Each step runs on both mounts with the same request; the comparison keeps what a client can depend on (status,
content type, problem type, body keys and the URL shapes, which headers are present) and drops values that are
unique per mount (ids, nonces, times). Deliberate differences are asserted as such (README)."""
from __future__ import annotations

import re
from typing import Any

import pytest

from integration.acme_server_support import RawAcme, acme_pair  # noqa: F401 - fixture
from integration.acme_support import pebble_ca  # noqa: F401 - fixture
from tests.external_ca.flows import csr_pem

pytestmark = pytest.mark.acme
COMPARED_HEADERS = ("Replay-Nonce", "Link", "Location", "Cache-Control")


def _shape_value(value: Any, base: str) -> Any:
    if isinstance(value, str):
        text = value.replace(base, "<base>")
        text = re.sub(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", "<id>", text)
        text = re.sub(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", "<time>", text)
        return text if text.startswith("<") or value.startswith("urn:") or len(value) < 40 else "<text>"
    if isinstance(value, dict):
        return {k: ("<int>" if k.endswith("_time") and isinstance(v, int) else _shape_value(v, base))
                for k, v in value.items() if k not in ("token", "detail")}
    if isinstance(value, list):
        return [_shape_value(v, base) for v in value]
    return value


def shape(resp, mount) -> dict[str, Any]:  # noqa: ANN001
    ctype = resp.headers.get("Content-Type", "").split(";")[0]
    out: dict[str, Any] = {"status": resp.status_code, "type": ctype}
    if ctype in ("application/json", "application/problem+json") and resp.content:
        out["body"] = _shape_value(resp.json(), mount.base)
    out["headers"] = sorted(h for h in COMPARED_HEADERS if h in resp.headers)
    if "Link" in resp.headers:
        out["link"] = _shape_value(resp.headers["Link"], mount.base)
    if "Location" in resp.headers:
        out["location"] = _shape_value(resp.headers["Location"], mount.base)
    return out


def compare(ours, ref, mounts, label: str) -> None:  # noqa: ANN001
    a, b = shape(ours, mounts["ours"]), shape(ref, mounts["ref"])
    if a["type"] == "application/problem+json":
        # Deliberate: RFC 8555 section 6.5 wants a nonce on errors; the built-in sends none (and no Link).
        assert "Replay-Nonce" in a["headers"], label
        for s in (a, b):
            s["headers"] = [h for h in s["headers"] if h not in ("Replay-Nonce", "Link")]
            s.pop("link", None)
    # Deliberate: an order with no authorization left shows "authorizations": [] (the built-in sends null, which
    # RFC 8555 section 7.1.3 does not allow).
    if isinstance(b.get("body"), dict) and b["body"].get("authorizations", []) is None:
        assert a["body"]["authorizations"] == [], label
        b["body"]["authorizations"] = []
    assert a == b, f"{label}:\n ours {a}\n  ref {b}"


def both(mounts, fn):  # noqa: ANN001, ANN201
    return fn(mounts["ours"]), fn(mounts["ref"])


def test_every_endpoint_and_error_case(acme_pair, pebble_ca):
    m = acme_pair
    clients = {k: RawAcme(v) for k, v in m.items()}
    strangers = {k: RawAcme(v) for k, v in m.items()}

    def step(label: str, fn) -> tuple[Any, Any]:  # noqa: ANN001
        ours, ref = fn("ours"), fn("ref")
        compare(ours, ref, m, label)
        return ours, ref

    step("directory", lambda k: clients[k].http.get(m[k].directory, timeout=30))
    step("nonce HEAD", lambda k: clients[k].http.head(clients[k].url("new-nonce"), timeout=30))
    step("nonce GET", lambda k: clients[k].http.get(clients[k].url("new-nonce"), timeout=30))
    step("unknown role directory", lambda k: clients[k].http.get(m[k].directory_at("roles/nope/acme/"), timeout=30))
    step("bad nonce", lambda k: clients[k].post("new-account", {}, use_jwk=True, nonce="bm9ub25jZQ"))
    step("wrong url", lambda k: clients[k].post("new-account", {}, use_jwk=True,
                                                url=clients[k].url("new-order")))
    step("kid and jwk", lambda k: clients[k].post("new-account", {}, use_jwk=True, both=True))
    step("only existing, none", lambda k: clients[k].post("new-account", {"onlyReturnExisting": True},
                                                          use_jwk=True))
    step("bad payload", lambda k: clients[k].post("new-account", raw_payload=b"[1,2", use_jwk=True))
    step("new-order without kid", lambda k: clients[k].post("new-order", {"identifiers": []}, use_jwk=True))
    step("new-account", lambda k: clients[k].register(contact=["mailto:a@example.com"]))
    step("new-account again", lambda k: clients[k].register())
    step("only existing, found", lambda k: clients[k].post("new-account", {"onlyReturnExisting": True},
                                                           use_jwk=True))
    step("account update", lambda k: clients[k].post(clients[k].kid, {"contact": ["mailto:b@example.com"]}))
    step("unknown kid", lambda k: RawAcme(m[k]).__class__(m[k]).post("new-order", {"identifiers": []})
         if False else _with_kid(m[k], clients[k].kid.rsplit("/", 1)[0] + "/00000000-0000-0000-0000-000000000000"))
    step("order: no identifiers", lambda k: clients[k].post("new-order", {}))
    step("order: bad type", lambda k: clients[k].post("new-order", {"identifiers": [{"type": "email",
                                                                                     "value": "a@b"}]}))
    step("order: blank", lambda k: clients[k].post("new-order", {"identifiers": [{"type": "dns", "value": ""}]}))
    step("order: notAfter", lambda k: clients[k].post("new-order", {
        "identifiers": [{"type": "dns", "value": "a.example.com"}], "notAfter": "2040-01-01T00:00:00Z"}))
    step("order: IP as dns", lambda k: clients[k].post("new-order", {"identifiers": [{"type": "dns",
                                                                                      "value": "10.0.0.1"}]}))
    step("order: bad wildcard", lambda k: clients[k].post("new-order", {"identifiers": [
        {"type": "dns", "value": "a.*.example.com"}]}))
    orders = step("new-order", lambda k: clients[k].post("new-order", {"identifiers": [
        {"type": "dns", "value": "d.example.com"}, {"type": "dns", "value": "*.d.example.com"},
        {"type": "ip", "value": "10.0.0.9"}]}))
    step("orders list", lambda k: clients[k].post("orders"))
    order = {k: r.json() for k, r in zip(("ours", "ref"), orders)}
    step("order get", lambda k: clients[k].post(orders[0 if k == "ours" else 1].headers["Location"]))
    step("order of another account", lambda k: _stranger(strangers[k], orders[0 if k == "ours" else 1]
                                                         .headers["Location"]))
    step("finalize not ready", lambda k: clients[k].post(order[k]["finalize"], {"csr": "AAAA"}))
    step("finalize no csr", lambda k: clients[k].post(order[k]["finalize"], {}))
    step("cert not ready", lambda k: clients[k].post(order[k]["finalize"].replace("/finalize", "/cert")))
    for i in range(3):
        step(f"authz {i}", lambda k: clients[k].post(order[k]["authorizations"][i]))
    authz = {k: clients[k].post(order[k]["authorizations"][0]).json() for k in m}
    chal = {k: authz[k]["challenges"][0]["url"] for k in m}
    step("challenge get", lambda k: clients[k].post(chal[k]))
    step("challenge bad body", lambda k: clients[k].post(chal[k], {"x": 1}))
    step("challenge accept", lambda k: clients[k].post(chal[k], {}))
    step("challenge unknown type", lambda k: clients[k].post(chal[k].rsplit("/", 1)[0] + "/nope-01"))
    step("authz bad status", lambda k: clients[k].post(order[k]["authorizations"][1], {"status": "valid"}))
    step("authz deactivate", lambda k: clients[k].post(order[k]["authorizations"][1], {"status": "deactivated"}))
    step("authz deactivate again", lambda k: clients[k].post(order[k]["authorizations"][1],
                                                            {"status": "deactivated"}))
    step("order invalid now", lambda k: clients[k].post(orders[0 if k == "ours" else 1].headers["Location"]))
    step("revoke garbage", lambda k: clients[k].post("revoke-cert", {"certificate": "AAAA"}))
    step("revoke missing", lambda k: clients[k].post("revoke-cert", {}))
    # With "contact" repeated: the built-in clears the contacts of an update that omits them (we keep them).
    step("account deactivate", lambda k: clients[k].post(clients[k].kid, {"status": "deactivated",
                                                                          "contact": ["mailto:b@example.com"]}))
    step("order after deactivation", lambda k: clients[k].post("new-order", {"identifiers": [
        {"type": "dns", "value": "e.example.com"}]}))
    step("update after deactivation", lambda k: clients[k].post(clients[k].kid, {"contact": []}))


def _with_kid(mount, kid: str):  # noqa: ANN001, ANN201
    c = RawAcme(mount)
    c.kid = kid
    return c.post("new-order", {"identifiers": []})


def _stranger(c: RawAcme, url: str):  # noqa: ANN201
    if c.kid is None:
        c.register()
    return c.post(url)


def test_disabled_and_eab_policies(acme_pair, pebble_ca):
    m = acme_pair
    for k in m:
        m[k].write("config/acme", {"eab_policy": "new-account-required"})
    ours, ref = (RawAcme(m[k]) for k in ("ours", "ref"))
    compare(ours.http.get(m["ours"].directory), ref.http.get(m["ref"].directory), m, "eab directory")
    assert ours.http.get(m["ours"].directory).json()["meta"]["externalAccountRequired"] is True
    compare(ours.register(), ref.register(), m, "eab required")
    eab = {k: m[k].write("acme/new-eab") for k in m}
    clients = {"ours": ours, "ref": ref}
    compare(*(clients[k].register(externalAccountBinding=_binding(clients[k], eab[k], clients[k].url("new-account")))
              for k in ("ours", "ref")), m, "eab bound")
    again = {k: RawAcme(m[k]) for k in m}
    compare(*(again[k].register(externalAccountBinding=_binding(again[k], eab[k], again[k].url("new-account")))
              for k in ("ours", "ref")), m, "eab reused")
    wrong = {k: RawAcme(m[k]) for k in m}
    compare(*(wrong[k].register(externalAccountBinding=_binding(wrong[k], eab[k], wrong[k].url("new-order")))
              for k in ("ours", "ref")), m, "eab wrong url")
    for k in m:
        m[k].write("config/acme", {"enabled": False})
    compare(ours.http.get(m["ours"].directory), ref.http.get(m["ref"].directory), m, "disabled directory")
    compare(ours.post("new-account", {}, nonce="bm9uY2U", use_jwk=True),
            ref.post("new-account", {}, nonce="bm9uY2U", use_jwk=True), m, "disabled new-account")


def test_finalize_and_cert_shapes(acme_pair, pebble_ca):
    """A valid order through dns-01, then finalize errors and the cert answer, compared step by step."""
    import hashlib

    import josepy
    m = acme_pair
    c = {k: RawAcme(m[k]) for k in m}
    for k in m:
        c[k].register()
    names = ["f.example.com"]
    orders = {k: c[k].post("new-order", {"identifiers": [{"type": "dns", "value": n} for n in names]}) for k in m}
    for k in m:
        authz = c[k].post(orders[k].json()["authorizations"][0]).json()
        ch = next(x for x in authz["challenges"] if x["type"] == "dns-01")
        thumb = josepy.b64.b64encode(c[k].key.thumbprint()).decode()
        digest = josepy.b64.b64encode(hashlib.sha256(f"{ch['token']}.{thumb}".encode()).digest()).decode()
        pebble_ca.add_txt(f"_acme-challenge.{names[0]}", digest)
        accepted = {k2: None for k2 in m}
        accepted[k] = c[k].post(ch["url"], {})
        assert accepted[k].status_code == 200, accepted[k].text
        import time
        for _ in range(120):
            if c[k].post(orders[k].headers["Location"]).json()["status"] != "pending":
                break
            time.sleep(0.5)
        pebble_ca.clear_txt(f"_acme-challenge.{names[0]}")
    for k in m:
        assert c[k].post(orders[k].headers["Location"]).json()["status"] == "ready", k
    fin = {k: orders[k].json()["finalize"] for k in m}

    def pair(label: str, payload_of) -> None:  # noqa: ANN001
        compare(c["ours"].post(fin["ours"], payload_of()), c["ref"].post(fin["ref"], payload_of()), m, label)

    from cryptography.hazmat.primitives.serialization import Encoding
    from cryptography import x509

    def der_of(pem: str) -> str:
        return josepy.b64.b64encode(x509.load_pem_x509_csr(pem.encode()).public_bytes(Encoding.DER)).decode()

    pair("finalize bad base64", lambda: {"csr": "***"})
    pair("finalize wrong names", lambda: {"csr": der_of(csr_pem(["g.example.com"]))})
    pair("finalize extra name", lambda: {"csr": der_of(csr_pem(names + ["h.example.com"]))})
    pair("finalize", lambda: {"csr": der_of(csr_pem(names))})
    compare(c["ours"].post(fin["ours"], {"csr": der_of(csr_pem(names))}),
            c["ref"].post(fin["ref"], {"csr": der_of(csr_pem(names))}), m, "finalize twice")
    got = {k: c[k].post(orders[k].headers["Location"]).json() for k in m}
    compare(c["ours"].post(got["ours"]["certificate"]), c["ref"].post(got["ref"]["certificate"]), m, "cert")
    certs = {k: x509.load_pem_x509_certificates(c[k].post(got[k]["certificate"]).content)[0] for k in m}
    der = {k: josepy.b64.b64encode(certs[k].public_bytes(Encoding.DER)).decode() for k in m}
    strangers = {k: RawAcme(m[k]) for k in m}
    for k in m:
        strangers[k].register()
    compare(strangers["ours"].post("revoke-cert", {"certificate": der["ours"]}),
            strangers["ref"].post("revoke-cert", {"certificate": der["ref"]}), m, "revoke by another account")
    compare(c["ours"].post("revoke-cert", {"certificate": der["ours"], "reason": 4}),
            c["ref"].post("revoke-cert", {"certificate": der["ref"], "reason": 4}), m, "revoke bad reason")
    compare(c["ours"].post("revoke-cert", {"certificate": der["ours"]}),
            c["ref"].post("revoke-cert", {"certificate": der["ref"]}), m, "revoke")
    compare(c["ours"].post("revoke-cert", {"certificate": der["ours"]}),
            c["ref"].post("revoke-cert", {"certificate": der["ref"]}), m, "revoke again")


def _binding(c: RawAcme, eab: dict, url: str) -> dict:
    import base64
    import hashlib
    import hmac
    import json

    def b64(raw: bytes) -> str:
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")
    protected = b64(json.dumps({"alg": "HS256", "kid": eab["id"], "url": url}).encode())
    payload = b64(json.dumps(c.key.public_key().to_partial_json()).encode())
    key = base64.urlsafe_b64decode(eab["key"] + "==")
    return {"protected": protected, "payload": payload,
            "signature": b64(hmac.new(key, f"{protected}.{payload}".encode(), hashlib.sha256).digest())}
