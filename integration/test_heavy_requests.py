"""One plugin process serves every mount: a heavy or oversized request on one mount must not hold up another.

Input caps (see the README's security notes) give a 4xx above them; CPU-heavy work below them runs off the
event loop, which the ordering test shows: a read on another mount, sent while the heavy request is being worked
on, is answered first.
"""
from __future__ import annotations

import datetime as dt
import threading
import time
from typing import Any, Iterator

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from integration.harness import BaoServer, unique_name

MAX_EXTENSIONS = 100        # engine/input_limits.py; the README lists them
MAX_CSR_BYTES = 128 * 1024
MAX_SANS = 1000


@pytest.fixture
def two_mounts(bao: BaoServer) -> Iterator[tuple[str, str]]:
    a, b = unique_name("heavy"), unique_name("light")
    for m in (a, b):
        bao.enable_plugin_mount(m)
        bao.tune_max_ttl(m, "87600h")
        _ok(bao.http("POST", f"{m}/root/generate/internal", json={"common_name": f"{m} root", "key_type": "ec",
                                                                 "ttl": "8760h"}))
    _ok(bao.http("POST", f"{a}/roles/web", json={"allow_any_name": True, "key_type": "any"}))
    _ok(bao.http("POST", f"{a}/roles/names", json={"allow_any_name": True, "key_type": "ec",
                                                   "allow_ip_sans": True, "allowed_uri_sans": "*"}))
    try:
        yield a, b
    finally:
        for m in (a, b):
            bao.disable_mount(m)


def _ok(resp: requests.Response) -> dict[str, Any]:
    assert resp.status_code in (200, 204), resp.text
    return resp.json().get("data", {}) if resp.status_code == 200 else {}


def _unknown_ext(i: int) -> x509.Extension[x509.ExtensionType]:
    oid = x509.ObjectIdentifier(f"1.3.6.1.4.1.55555.{i}")
    return x509.Extension(oid, False, x509.UnrecognizedExtension(oid, b"\x05\x00"))


def _csr(n_extensions: int, pad: int = 0) -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    exts = [_unknown_ext(i) for i in range(n_extensions)]
    if pad:
        oid = x509.ObjectIdentifier("1.3.6.1.4.1.55555.999999")
        exts.append(x509.Extension(oid, False, x509.UnrecognizedExtension(oid, b"\x04\x83" + pad.to_bytes(3, "big")
                                                                          + b"a" * pad)))
    # The constructor takes every extension at once (add_extension re-checks the list each time).
    builder = x509.CertificateSigningRequestBuilder(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "big.example.com")]),
                                                    exts)
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM).decode()


def _self_issued(n_extensions: int) -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "self issued")])
    now = dt.datetime.now(dt.timezone.utc)
    exts = [x509.Extension(x509.BasicConstraints.oid, True, x509.BasicConstraints(ca=True, path_length=None))]
    exts += [_unknown_ext(i) for i in range(n_extensions - 1)]
    builder = x509.CertificateBuilder(name, name, key.public_key(), 1234, now, now + dt.timedelta(days=1), exts)
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM).decode()


@pytest.mark.parametrize("path,body", [
    ("sign-verbatim", {}),
    ("sign-verbatim/web", {}),
    ("root/sign-intermediate", {"use_csr_values": True}),
    ("sign/web", {}),
])
def test_csr_with_too_many_extensions_is_refused(bao: BaoServer, two_mounts, path, body) -> None:
    a, _ = two_mounts
    resp = bao.http("POST", f"{a}/{path}", json={"csr": _csr(MAX_EXTENSIONS + 1), **body})
    assert resp.status_code == 400, resp.text
    assert f"more than {MAX_EXTENSIONS} extensions" in resp.json()["errors"][0]
    ok = bao.http("POST", f"{a}/{path}", json={"csr": _csr(MAX_EXTENSIONS - 2), "common_name": "big.example.com",
                                              **body})
    assert ok.status_code == 200, ok.text


def test_csr_over_the_size_cap_is_refused(bao: BaoServer, two_mounts) -> None:
    a, _ = two_mounts
    resp = bao.http("POST", f"{a}/sign-verbatim", json={"csr": _csr(1, pad=MAX_CSR_BYTES)})
    assert resp.status_code == 400, resp.text
    assert "larger than" in resp.json()["errors"][0]


def test_self_issued_with_too_many_extensions_is_refused(bao: BaoServer, two_mounts) -> None:
    a, _ = two_mounts
    resp = bao.http("POST", f"{a}/root/sign-self-issued", json={"certificate": _self_issued(MAX_EXTENSIONS + 1)})
    assert resp.status_code == 400, resp.text
    assert f"more than {MAX_EXTENSIONS} extensions" in resp.json()["errors"][0]
    ok = bao.http("POST", f"{a}/root/sign-self-issued", json={"certificate": _self_issued(10)})
    assert ok.status_code == 200, ok.text


@pytest.mark.parametrize("field,make", [
    ("alt_names", lambda i: f"h{i}.example.com"),
    ("ip_sans", lambda i: f"10.{i // 65536 % 256}.{i // 256 % 256}.{i % 256}"),
    ("uri_sans", lambda i: f"https://h{i}.example.com/"),
])
def test_too_many_requested_names_are_refused(bao: BaoServer, two_mounts, field, make) -> None:
    a, _ = two_mounts
    names = ",".join(make(i) for i in range(MAX_SANS + 1))
    resp = bao.http("POST", f"{a}/issue/names", json={"common_name": "a.example.com", field: names})
    assert resp.status_code == 400, resp.text
    assert f"more than {MAX_SANS} names" in resp.json()["errors"][0]


@pytest.fixture(scope="module")
def rsa_bundle() -> str:
    keys = [rsa.generate_private_key(65537, 4096) for _ in range(6)]
    pems = [k.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode() for k in keys]
    # A broken last block: the request fails only after every key has been checked, so nothing is stored.
    return "".join(pems) + "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n"


def test_heavy_request_on_one_mount_does_not_hold_up_a_read_on_another(bao: BaoServer, two_mounts,
                                                                      rsa_bundle) -> None:
    """RSA private-key checks cost tens to hundreds of ms each: a bundle of them is CPU work the loop must not do."""
    a, b = two_mounts
    finished: list[str] = []
    lock = threading.Lock()
    results: dict[str, requests.Response] = {}

    def call(tag: str, method: str, path: str, body: Any = None) -> None:
        resp = bao.http(method, path, json=body)
        with lock:
            finished.append(tag)
            results[tag] = resp

    heavy = threading.Thread(target=call, args=("heavy", "POST", f"{a}/issuers/import/bundle",
                                                 {"pem_bundle": rsa_bundle}))
    heavy.start()
    time.sleep(0.5)    # sequencing only: let the heavy request reach the plugin first
    read = threading.Thread(target=call, args=("read", "GET", f"{b}/cert/ca"))
    read.start()
    read.join(120)
    heavy.join(120)
    assert results["read"].status_code == 200, results["read"].text
    assert results["heavy"].status_code == 400, results["heavy"].text
    assert finished == ["read", "heavy"]
