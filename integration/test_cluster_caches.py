"""Every in-memory state of the plugin, on a real 3-node raft cluster: written on the active, read through each
standby (served by the standby itself, `X-Vault-No-Request-Forwarding`), fresh within raft lag. The built-in
`pki` mounted beside ours gets the same reads where it has the same state, so a stale answer cannot hide behind
a slow cluster. In-process versions with exact invalidation keys: tests/engine/test_standby.py."""

from __future__ import annotations

import base64
import time
from typing import Any, Callable
from urllib.parse import quote

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp

from integration.cluster import Cluster, RaftNode

pytestmark = [pytest.mark.cluster, pytest.mark.xdist_group("cluster")]

LAG = 10.0   # seconds a standby may take to show a write; measured lag is 0.05-0.16 s


def _ok(resp: requests.Response) -> dict[str, Any]:
    assert resp.status_code in (200, 204), f"{resp.status_code} {resp.text[:300]}"
    return (resp.json().get("data") or {}) if resp.status_code == 200 else {}


def eventually(node: RaftNode, path: str, check: Callable[[requests.Response], bool], what: str) -> None:
    """`check` holds for GET `path` served by `node` itself within LAG seconds."""
    deadline = time.monotonic() + LAG
    while True:
        resp = node.request("GET", path, forward=False, timeout=10)
        if check(resp):
            return
        if time.monotonic() > deadline:
            fwd = node.request("GET", path, timeout=10)
            raise AssertionError(f"{what}: {node.node_id} still answers {resp.status_code} {resp.text[:300]} "
                                 f"(forwarded: {fwd.status_code} {fwd.text[:200]})")
        time.sleep(0.05)


def data_of(resp: requests.Response) -> dict[str, Any]:
    return (resp.json().get("data") or {}) if resp.status_code == 200 else {}


def _ocsp_path(leaf: x509.Certificate, issuer: x509.Certificate) -> str:
    der = ocsp.OCSPRequestBuilder().add_certificate(leaf, issuer, hashes.SHA1()).build().public_bytes(
        serialization.Encoding.DER)
    return "ocsp/" + quote(base64.b64encode(der).decode(), safe="")   # the GET form both engines read


def _ocsp_status(resp: requests.Response) -> ocsp.OCSPCertStatus | None:
    if resp.status_code != 200:
        return None
    return ocsp.load_der_ocsp_response(resp.content).certificate_status


def test_every_cache_follows_the_active_on_each_standby(cluster: Cluster) -> None:
    pair = cluster.mount_pair()
    active = cluster.active()
    standbys = cluster.standbys()
    assert len(standbys) == 2
    for m in (pair.ours, pair.ref):
        root = _ok(active.http("POST", f"{m}/root/generate/internal",
                               json={"common_name": f"{m} root", "key_type": "ec", "ttl": "87600h"}))
        _ok(active.http("POST", f"{m}/roles/web", json={"allow_any_name": True, "ttl": "1h", "key_type": "ec"}))
        _ok(active.http("POST", f"{m}/roles/eph", json={"allow_any_name": True, "ttl": "1h", "key_type": "ec",
                                                        "no_store": True}))
        issuer_id, key_id = root["issuer_id"], root["key_id"]
        for sb in standbys:   # warm every cache on the standbys
            eventually(sb, f"{m}/roles/web", lambda r: data_of(r).get("ttl") == 3600, f"{m} role")
            eventually(sb, f"{m}/issuer/default", lambda r: data_of(r).get("issuer_id") == issuer_id, f"{m} issuer")
            eventually(sb, f"{m}/key/{key_id}", lambda r: r.status_code == 200, f"{m} key")
            eventually(sb, f"{m}/config/crl", lambda r: data_of(r).get("expiry") == "72h", f"{m} config/crl")
            eventually(sb, f"{m}/crl", lambda r: r.status_code == 200, f"{m} crl")

        # roles
        _ok(active.http("POST", f"{m}/roles/web", json={"allow_any_name": True, "ttl": "2h", "key_type": "ec"}))
        for sb in standbys:
            eventually(sb, f"{m}/roles/web", lambda r: data_of(r).get("ttl") == 7200, f"{m} role update")
        _ok(active.http("DELETE", f"{m}/roles/web"))
        for sb in standbys:
            eventually(sb, f"{m}/roles/web", lambda r: r.status_code == 404, f"{m} role delete")
        _ok(active.http("POST", f"{m}/roles/web", json={"allow_any_name": True, "ttl": "1h", "key_type": "ec"}))

        # issuers: rename, a second issuer, the default
        _ok(active.http("POST", f"{m}/issuer/{issuer_id}", json={"issuer_name": "first"}))
        second = _ok(active.http("POST", f"{m}/issuers/generate/root/internal",
                                 json={"common_name": f"{m} second", "key_type": "ec", "issuer_name": "second"}))
        _ok(active.http("POST", f"{m}/config/issuers", json={"default": "second"}))
        for sb in standbys:
            eventually(sb, f"{m}/issuer/first", lambda r: data_of(r).get("issuer_id") == issuer_id, f"{m} rename")
            eventually(sb, f"{m}/issuer/default",
                       lambda r: data_of(r).get("issuer_id") == second["issuer_id"], f"{m} default issuer")
        _ok(active.http("POST", f"{m}/config/issuers", json={"default": "first"}))
        for sb in standbys:
            eventually(sb, f"{m}/issuer/default", lambda r: data_of(r).get("issuer_id") == issuer_id,
                       f"{m} default back")

        # keys
        _ok(active.http("POST", f"{m}/key/{key_id}", json={"key_name": "root-key"}))
        _ok(active.http("POST", f"{m}/config/keys", json={"default": "root-key"}))
        for sb in standbys:
            eventually(sb, f"{m}/key/root-key", lambda r: data_of(r).get("key_id") == key_id, f"{m} key name")
            eventually(sb, f"{m}/config/keys", lambda r: data_of(r).get("default") == key_id, f"{m} default key")

        # config/urls and config/cluster reach what a standby signs itself (no_store issuance)
        _ok(active.http("POST", f"{m}/config/cluster", json={"path": f"http://ha.example/v1/{m}"}))
        _ok(active.http("POST", f"{m}/config/urls", json={"issuing_certificates": "{{cluster_path}}/ca",
                                                          "enable_templating": True}))
        for sb in standbys:
            def aia_is_new(r: requests.Response) -> bool:
                if r.status_code != 200:
                    return False
                cert = x509.load_pem_x509_certificate(data_of(r)["certificate"].encode())
                try:
                    aia = cert.extensions.get_extension_for_class(x509.AuthorityInformationAccess).value
                except x509.ExtensionNotFound:
                    return False
                return [d.access_location.value for d in aia] == [f"http://ha.example/v1/{m}/ca"]
            deadline = time.monotonic() + LAG
            while True:
                resp = sb.request("POST", f"{m}/issue/eph", json={"common_name": "u.example.com"}, forward=False)
                if aia_is_new(resp):
                    break
                assert time.monotonic() < deadline, f"{m} AIA on {sb.node_id}: {resp.status_code} {resp.text[:300]}"
                time.sleep(0.05)

        # config/crl and config/auto-tidy
        _ok(active.http("POST", f"{m}/config/crl", json={"expiry": "48h"}))
        _ok(active.http("POST", f"{m}/config/auto-tidy", json={"enabled": True, "interval_duration": "2h",
                                                               "tidy_cert_store": True}))
        for sb in standbys:
            eventually(sb, f"{m}/config/crl", lambda r: data_of(r).get("expiry") == "48h", f"{m} config/crl")
            eventually(sb, f"{m}/config/auto-tidy", lambda r: data_of(r).get("interval_duration") == 7200,
                       f"{m} auto-tidy")

        # revocation: OCSP answered (and cached) as good on each standby, then revoked on the active
        leaf = _ok(active.http("POST", f"{m}/issue/web", json={"common_name": "o.example.com"}))
        leaf_cert = x509.load_pem_x509_certificate(leaf["certificate"].encode())
        issuer_cert = x509.load_pem_x509_certificate(root["certificate"].encode())
        path = f"{m}/" + _ocsp_path(leaf_cert, issuer_cert)
        for sb in standbys:
            eventually(sb, path, lambda r: _ocsp_status(r) is ocsp.OCSPCertStatus.GOOD, f"{m} OCSP good")
            assert _ocsp_status(sb.request("GET", path, forward=False)) is ocsp.OCSPCertStatus.GOOD
        _ok(active.http("POST", f"{m}/revoke", json={"serial_number": leaf["serial_number"]}))

        def on_crl(r: requests.Response) -> bool:
            if r.status_code != 200:
                return False
            crl = x509.load_der_x509_crl(r.content)
            return crl.get_revoked_certificate_by_serial_number(leaf_cert.serial_number) is not None
        for sb in standbys:
            eventually(sb, path, lambda r: _ocsp_status(r) is ocsp.OCSPCertStatus.REVOKED, f"{m} OCSP revoked")
            eventually(sb, f"{m}/crl", on_crl, f"{m} CRL has the revocation")
            eventually(sb, f"{m}/certs/revoked?list=true",
                       lambda r: leaf["serial_number"] in data_of(r).get("keys", []), f"{m} certs/revoked")

        # CRL state: a rotation on the active gives each standby the new CRL number
        number = x509.load_der_x509_crl(active.http("GET", f"{m}/crl").content).extensions.get_extension_for_class(
            x509.CRLNumber).value.crl_number
        _ok(active.http("GET", f"{m}/crl/rotate"))

        def newer(r: requests.Response) -> bool:
            if r.status_code != 200:
                return False
            crl = x509.load_der_x509_crl(r.content)
            return crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number > number
        for sb in standbys:
            eventually(sb, f"{m}/crl", newer, f"{m} rotated CRL")


def test_tidy_status_on_standbys_is_the_active_run(cluster: Cluster) -> None:
    pair = cluster.mount_pair()
    m = pair.ours
    active, standbys = cluster.active(), cluster.standbys()
    _ok(active.http("POST", f"{m}/root/generate/internal", json={"common_name": "t", "key_type": "ec"}))
    # Sent to a standby: forwarded to the active, which runs it (the built-in answers 202 too).
    resp = standbys[0].request("POST", f"{m}/tidy", json={"tidy_cert_store": True})
    assert resp.status_code == 202, resp.text
    deadline = time.monotonic() + 30
    while True:
        status = data_of(active.http("GET", f"{m}/tidy-status"))
        if status.get("state") == "Finished":
            break
        assert time.monotonic() < deadline, status
        time.sleep(0.1)
    for sb in standbys:
        eventually(sb, f"{m}/tidy-status", lambda r: data_of(r).get("state") == "Finished"
                   and data_of(r).get("time_started") == status["time_started"], "tidy-status on a standby")


def test_writes_through_a_standby_answer_as_on_the_active(cluster: Cluster) -> None:
    """The read-only refusal keeps its text, so the server replays the request on the active: no 500s."""
    pair = cluster.mount_pair()
    sb = cluster.standbys()[0]
    offset = {n.node_id: n.log_size() for n in cluster.nodes}
    for m in (pair.ours, pair.ref):
        steps: list[tuple[str, str, dict[str, Any], tuple[int, ...]]] = [
            ("POST", "root/generate/internal", {"common_name": "fw", "key_type": "ec", "ttl": "87600h"}, (200,)),
            ("POST", "roles/web", {"allow_any_name": True, "key_type": "ec", "ttl": "1h"}, (200, 204)),
            ("POST", "issue/web", {"common_name": "f.example.com"}, (200,)),
            ("POST", "config/crl", {"expiry": "48h"}, (200, 204)),
            ("GET", "crl/rotate", {}, (200,)),
            ("POST", "tidy-cancel", {}, (200,)),
            ("DELETE", "roles/web", {}, (204,)),
        ]
        for method, path, body, want in steps:
            resp = sb.request(method, f"{m}/{path}", json=body or None)
            assert resp.status_code in want, f"{m} {method} {path}: {resp.status_code} {resp.text[:300]}"
            if path == "roles/web" and method == "POST":   # the next step reads it on the standby
                eventually(sb, f"{m}/roles/web", lambda r: r.status_code == 200, f"{m} role replicated")
    for node in cluster.nodes:
        errors = [line for line in node.log_since(offset[node.node_id])
                  if "python-pki" in line and ("[ERROR]" in line or "internal error" in line)]
        assert not errors, (node.node_id, errors[:5])
