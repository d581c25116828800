"""Revocation through the real server: response shapes vs the built-in engine, openssl CRL and OCSP checks,
and crash safety (SIGKILL the plugin during a burst of revocations)."""
from __future__ import annotations

import base64
import os
import signal
import subprocess
import threading
import time
from pathlib import Path
from urllib.parse import quote

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509 import ocsp

from integration.harness import BaoServer


def setup(bao: BaoServer, mount: str) -> str:
    bao.tune_max_ttl(mount, "87600h")
    resp = bao.http("POST", f"{mount}/root/generate/internal",
                    json={"common_name": "Revocation Root", "key_type": "ec", "ttl": "87600h"})
    resp.raise_for_status()
    bao.http("POST", f"{mount}/roles/r", json={"allow_any_name": True, "key_type": "ec", "ttl": "1h"}).raise_for_status()
    return resp.json()["data"]["certificate"]


def issue(bao: BaoServer, mount: str, cn: str = "a.example.com") -> dict:
    resp = bao.http("POST", f"{mount}/issue/r", json={"common_name": cn})
    resp.raise_for_status()
    return resp.json()["data"]


def test_response_keys_match_the_builtin(bao: BaoServer, mounts) -> None:
    shapes = {}
    for m in (mounts.ours, mounts.ref):
        setup(bao, m)
        cert = issue(bao, m)
        out = {}
        revoke = bao.http("POST", f"{m}/revoke", json={"serial_number": cert["serial_number"]})
        assert revoke.status_code == 200, revoke.text
        out["revoke"] = set(revoke.json()["data"])
        out["config/crl"] = set(bao.http("GET", f"{m}/config/crl").json()["data"])
        out["tidy-status"] = set(bao.http("GET", f"{m}/tidy-status").json()["data"])
        listed = bao.http("LIST", f"{m}/certs/revoked").json()["data"]
        out["certs/revoked"] = (set(listed), listed["keys"] == [cert["serial_number"]])
        out["cert"] = set(bao.http("GET", f"{m}/cert/{cert['serial_number']}").json()["data"])
        out["rotate"] = bao.http("GET", f"{m}/crl/rotate").json()["data"]
        tidy = bao.http("POST", f"{m}/tidy", json={"tidy_cert_store": True})
        out["tidy"] = (tidy.status_code, tidy.headers.get("content-type", "").split(";")[0])
        time.sleep(0.5)
        out["tidy-status after"] = set(bao.http("GET", f"{m}/tidy-status").json()["data"])
        out["auto-tidy"] = set(bao.http("GET", f"{m}/config/auto-tidy").json()["data"])
        out["crl content type"] = bao.http("GET", f"{m}/crl").headers["content-type"]
        shapes[m] = out
    for key in shapes[mounts.ref]:
        assert shapes[mounts.ours][key] == shapes[mounts.ref][key], key


def _openssl_ocsp(tmp: Path, url: str, extra: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["openssl", "ocsp", "-issuer", str(tmp / "ca.pem"), "-cert", str(tmp / "leaf.pem"),
                           "-CAfile", str(tmp / "ca.pem"), "-url", url, *extra],
                          capture_output=True, text=True, timeout=30)


def test_openssl_crl_check_and_ocsp_good_then_revoked(bao: BaoServer, mounts, tmp_path: Path) -> None:
    m = mounts.ours
    ca_pem = setup(bao, m)
    cert = issue(bao, m)
    (tmp_path / "ca.pem").write_text(ca_pem)
    (tmp_path / "leaf.pem").write_text(cert["certificate"])
    url = f"{bao.addr}/v1/{m}/ocsp"
    leaf, ca = (x509.load_pem_x509_certificate(p.encode()) for p in (cert["certificate"], ca_pem))
    req = ocsp.OCSPRequestBuilder().add_certificate(leaf, ca, hashes.SHA1()).build().public_bytes(Encoding.DER)

    def status_via_get() -> ocsp.OCSPCertStatus:
        resp = requests.get(f"{url}/{quote(base64.b64encode(req).decode(), safe='')}", timeout=10)
        assert resp.headers["content-type"] == "application/ocsp-response"
        return ocsp.load_der_ocsp_response(resp.content).certificate_status

    assert status_via_get() == ocsp.OCSPCertStatus.GOOD
    # openssl ocsp -url POSTs the DER request; see the README for what the server forwards to a plugin.
    posted = _openssl_ocsp(tmp_path, url, [])
    post_works = ": good" in posted.stdout
    bao.http("POST", f"{m}/revoke", json={"serial_number": cert["serial_number"]}).raise_for_status()
    assert status_via_get() == ocsp.OCSPCertStatus.REVOKED
    if post_works:
        assert ": revoked" in _openssl_ocsp(tmp_path, url, []).stdout
    (tmp_path / "crl.pem").write_bytes(requests.get(f"{bao.addr}/v1/{m}/crl/pem", timeout=10).content)
    verify = subprocess.run(["openssl", "verify", "-crl_check", "-CAfile", str(tmp_path / "ca.pem"), "-CRLfile",
                             str(tmp_path / "crl.pem"), str(tmp_path / "leaf.pem")], capture_output=True, text=True)
    assert verify.returncode != 0 and "certificate revoked" in verify.stdout + verify.stderr
    good = issue(bao, m, "good.example.com")
    (tmp_path / "good.pem").write_text(good["certificate"])
    verify = subprocess.run(["openssl", "verify", "-crl_check", "-CAfile", str(tmp_path / "ca.pem"), "-CRLfile",
                             str(tmp_path / "crl.pem"), str(tmp_path / "good.pem")], capture_output=True, text=True)
    assert verify.returncode == 0, verify.stdout + verify.stderr


def test_ocsp_post_body_reaches_the_plugin_or_is_malformed(bao: BaoServer, mounts) -> None:
    """Pins what the server does with a DER POST: a valid answer, or malformedRequest (never a JSON error)."""
    m = mounts.ours
    ca_pem = setup(bao, m)
    cert = issue(bao, m)
    leaf, ca = (x509.load_pem_x509_certificate(p.encode()) for p in (cert["certificate"], ca_pem))
    req = ocsp.OCSPRequestBuilder().add_certificate(leaf, ca, hashes.SHA1()).build().public_bytes(Encoding.DER)
    resp = requests.post(f"{bao.addr}/v1/{m}/ocsp", data=req, headers={"Content-Type": "application/ocsp-request"},
                         timeout=10)
    assert resp.headers["content-type"] == "application/ocsp-response"
    parsed = ocsp.load_der_ocsp_response(resp.content)
    assert parsed.response_status in (ocsp.OCSPResponseStatus.SUCCESSFUL, ocsp.OCSPResponseStatus.MALFORMED_REQUEST)
    print(f"OCSP POST through the plugin protocol: {parsed.response_status.name} (HTTP {resp.status_code})")


@pytest.mark.slow
def test_sigkill_during_revocation_burst_loses_nothing(bao: BaoServer, mounts) -> None:
    m = mounts.ours
    ca_pem = setup(bao, m)
    serials = []
    for i in range(2000):
        serials.append(issue(bao, m, f"h{i}.example.com")["serial_number"])
    confirmed: list[str] = []
    lock = threading.Lock()

    def worker(chunk: list[str]) -> None:
        session = requests.Session()
        for s in chunk:
            try:
                r = session.post(f"{bao.addr}/v1/{m}/revoke", json={"serial_number": s},
                                 headers={"X-Vault-Token": bao.token}, timeout=30)
            except requests.RequestException:
                continue
            if r.status_code == 200:
                with lock:
                    confirmed.append(s)

    threads = [threading.Thread(target=worker, args=(serials[i::8],)) for i in range(8)]
    for t in threads:
        t.start()
    while len(confirmed) < 500:
        time.sleep(0.01)
    for pid in bao.plugin_pids():
        os.kill(pid, signal.SIGKILL)
    for t in threads:
        t.join()
    assert confirmed
    deadline = time.time() + 60
    while True:    # the server restarts the plugin on the next request
        rotate = bao.http("GET", f"{m}/crl/rotate")
        if rotate.status_code == 200 or time.time() > deadline:
            break
        time.sleep(0.5)
    assert rotate.status_code == 200, rotate.text
    crl = x509.load_der_x509_crl(requests.get(f"{bao.addr}/v1/{m}/crl", timeout=30).content)
    on_crl = {r.serial_number for r in crl}
    missing = [s for s in confirmed if int(s.replace(":", ""), 16) not in on_crl]
    assert not missing, f"{len(missing)} of {len(confirmed)} confirmed revocations missing from the CRL"
    ca = x509.load_pem_x509_certificate(ca_pem.encode())
    for s in confirmed[:: max(1, len(confirmed) // 50)]:
        der = bao.http("GET", f"{m}/cert/{s}/raw").content
        leaf = x509.load_der_x509_certificate(der)
        req = ocsp.OCSPRequestBuilder().add_certificate(leaf, ca, hashes.SHA1()).build().public_bytes(Encoding.DER)
        resp = requests.get(f"{bao.addr}/v1/{m}/ocsp/{quote(base64.b64encode(req).decode(), safe='')}", timeout=10)
        assert ocsp.load_der_ocsp_response(resp.content).certificate_status == ocsp.OCSPCertStatus.REVOKED
