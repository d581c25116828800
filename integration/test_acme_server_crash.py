"""Our ACME server's plugin process SIGKILLed while an order sits in each state (pending, a validation in its
retry back-off, ready, processing, valid), inside a real `bao`: each order completes afterwards, through ordinary
ACME requests, and what storage holds is never half an order."""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import signal
import time

import josepy
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from integration.acme_server_support import RawAcme, make_mount
from integration.acme_support import pebble_ca  # noqa: F401 - fixture
from integration.harness import BaoServer, HarnessError
from tests.external_ca.flows import csr_pem

pytestmark = pytest.mark.acme


def kill_plugin(bao: BaoServer) -> None:
    pids = bao.plugin_pids()
    assert pids, "no plugin process found"
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while set(pids) & set(bao.plugin_pids()):
        assert time.monotonic() < deadline, "the killed plugin process did not go away"
        time.sleep(0.05)
    time.sleep(1.0)   # the server notices the exit a little after the reap


def post(c: RawAcme, url: str, payload=None, tries: int = 5):  # noqa: ANN001, ANN201
    """A request right after the kill may meet the server's own 500 while it restarts the plugin."""
    for _ in range(tries):
        resp = c.post(url, payload)
        if resp.status_code != 500 or "problem+json" in resp.headers.get("Content-Type", ""):
            return resp
        time.sleep(1)
    return resp


def raw_key(bao: BaoServer, mount: str, key: str) -> str:
    uuid_ = bao.http("GET", "sys/mounts").json()["data"][mount + "/"]["uuid"]
    return f"sys/raw/logical/{uuid_}/{key}"


def wait_order(c: RawAcme, url: str, wanted: str, timeout: float = 90) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        body = post(c, url).json()
        if body["status"] == wanted or time.monotonic() > deadline:
            return body
        time.sleep(0.5)


def dns01(c: RawAcme, pebble, authz_url: str, set_txt: bool = True) -> str:  # noqa: ANN001
    authz = post(c, authz_url).json()
    ch = next(x for x in authz["challenges"] if x["type"] == "dns-01")
    if set_txt:
        answer_txt(c, pebble, authz, ch)
    return ch["url"]


def answer_txt(c: RawAcme, pebble, authz: dict, ch: dict) -> None:  # noqa: ANN001
    thumb = josepy.b64.b64encode(c.key.thumbprint()).decode()
    digest = josepy.b64.b64encode(hashlib.sha256(f"{ch['token']}.{thumb}".encode()).digest()).decode()
    pebble.add_txt(f"_acme-challenge.{authz['identifier']['value']}", digest)


def der_csr(names: list[str]) -> str:
    return josepy.b64.b64encode(x509.load_pem_x509_csr(csr_pem(names).encode()).public_bytes(Encoding.DER)).decode()


@pytest.fixture()
def ours(bao, pebble_ca):  # noqa: ANN001, ANN201
    mount = make_mount(bao, "ours", f"127.0.0.1:{pebble_ca.dns_port}")
    try:
        yield mount
    finally:
        try:
            bao.disable_mount(mount.path)
        except HarnessError:
            pass


def _new(mount, name: str) -> tuple[RawAcme, dict, str]:  # noqa: ANN001
    c = RawAcme(mount)
    assert c.register().status_code == 201
    resp = c.post("new-order", {"identifiers": [{"type": "dns", "value": name}]})
    assert resp.status_code == 201, resp.text
    return c, resp.json(), resp.headers["Location"]


def _finish(c: RawAcme, order: dict, url: str, name: str) -> x509.Certificate:
    fin = post(c, order["finalize"], {"csr": der_csr([name])})
    assert fin.status_code == 200 and fin.json()["status"] == "valid", fin.text
    chain = post(c, fin.json()["certificate"])
    assert chain.status_code == 200
    return x509.load_pem_x509_certificates(chain.content)[0]


def test_kill_in_every_order_state(bao, pebble_ca, ours):
    figures = {}
    # pending: nothing accepted yet
    c1, o1, u1 = _new(ours, "pending.crash.example.com")
    # a validation queued and failing (no TXT yet), waiting out its back-off when the plugin dies
    c2, o2, u2 = _new(ours, "validating.crash.example.com")
    authz2 = post(c2, o2["authorizations"][0]).json()
    ch2 = next(x for x in authz2["challenges"] if x["type"] == "dns-01")
    assert post(c2, ch2["url"], {}).json()["status"] == "processing"
    # ready
    c3, o3, u3 = _new(ours, "ready.crash.example.com")
    post(c3, dns01(c3, pebble_ca, o3["authorizations"][0]), {})
    assert wait_order(c3, u3, "ready")["status"] == "ready"
    # processing: the state a finalize leaves when the plugin dies between its first write and the signature
    c4, o4, u4 = _new(ours, "processing.crash.example.com")
    post(c4, dns01(c4, pebble_ca, o4["authorizations"][0]), {})
    assert wait_order(c4, u4, "ready")["status"] == "ready"
    key4 = raw_key(bao, ours.path, f"acme/accounts/{c4.kid.rsplit('/', 1)[-1]}/orders/{u4.rsplit('/', 1)[-1]}")
    rec4 = json.loads(bao.http("GET", key4).json()["data"]["value"])
    stamp = (dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=3)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert bao.http("PUT", key4, json={"value": json.dumps(rec4 | {"status": "processing",
                                                                    "finalizing_since": stamp})}).status_code \
        in (200, 204)
    # valid
    c5, o5, u5 = _new(ours, "valid.crash.example.com")
    post(c5, dns01(c5, pebble_ca, o5["authorizations"][0]), {})
    assert wait_order(c5, u5, "ready")["status"] == "ready"
    cert5 = _finish(c5, o5, u5, "valid.crash.example.com")

    time.sleep(1.5)   # the failing validation has made its first attempt and waits to retry
    kill_plugin(bao)
    started = time.monotonic()

    # pending completes
    post(c1, dns01(c1, pebble_ca, o1["authorizations"][0]), {})
    assert wait_order(c1, u1, "ready")["status"] == "ready"
    figures["pending"] = _finish(c1, o1, u1, "pending.crash.example.com")
    # the queued validation resumes in the new process once its TXT record exists
    answer_txt(c2, pebble_ca, authz2, ch2)
    assert wait_order(c2, u2, "ready")["status"] == "ready"
    figures["validating"] = _finish(c2, o2, u2, "validating.crash.example.com")
    # ready completes
    figures["ready"] = _finish(c3, o3, u3, "ready.crash.example.com")
    # processing (stale) is ready again, and completes
    assert post(c4, u4).json()["status"] == "ready"
    figures["processing"] = _finish(c4, o4, u4, "processing.crash.example.com")
    # valid: the same certificate
    again = post(c5, post(c5, u5).json()["certificate"])
    assert x509.load_pem_x509_certificates(again.content)[0] == cert5
    elapsed = time.monotonic() - started
    for name, cert in figures.items():
        assert cert.subject.rfc4514_string() == f"CN={name}.crash.example.com"
    print(f"\nACME crash figures: 5 orders (pending, validating, ready, processing, valid) completed "
          f"{elapsed:.1f} s after SIGKILL")


def test_recent_processing_is_not_finalized_twice(bao, pebble_ca, ours):
    c, o, u = _new(ours, "busy.crash.example.com")
    post(c, dns01(c, pebble_ca, o["authorizations"][0]), {})
    assert wait_order(c, u, "ready")["status"] == "ready"
    key = raw_key(bao, ours.path, f"acme/accounts/{c.kid.rsplit('/', 1)[-1]}/orders/{u.rsplit('/', 1)[-1]}")
    rec = json.loads(bao.http("GET", key).json()["data"]["value"])
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    bao.http("PUT", key, json={"value": json.dumps(rec | {"status": "processing", "finalizing_since": stamp})})
    kill_plugin(bao)
    got = post(c, u).json()
    assert got["status"] == "processing"
    refused = post(c, o["finalize"], {"csr": der_csr(["busy.crash.example.com"])})
    assert refused.status_code == 403 and refused.json()["type"].endswith(":orderNotReady")
