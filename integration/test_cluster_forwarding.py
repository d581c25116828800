"""Every kind of write sent to a standby of a real raft cluster, on our mount and on the built-in `pki` beside it.

A standby serves requests itself on read-only storage (OpenBao >= 2.5). A write must fail there with the
read-only text, so that the server replays the request on the active node; with
`X-Vault-No-Request-Forwarding` the standby redirects (307) instead, and must have changed nothing. The test
writes the table (case, built-in answer, ours) to `forwarding.md` in its tmp dir and prints it.
"""

from __future__ import annotations

import datetime
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from integration.cluster import Cluster, RaftNode

pytestmark = [pytest.mark.cluster, pytest.mark.xdist_group("cluster")]


def csr_pem(cn: str, ca: bool = False) -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
    if ca:
        builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM).decode()


def self_signed_bundle(cn: str) -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                         crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
            .sign(key, hashes.SHA256()))
    return (cert.public_bytes(serialization.Encoding.PEM).decode()
            + key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode())


@dataclass
class Setup:
    """What a case may refer to on one mount: made on the active before the case runs."""
    mount: str
    serial: str = ""
    issuer_id: str = ""


@dataclass
class Case:
    name: str
    method: str
    path: str
    body: Callable[[Setup], Any] | None = None
    # Run on the active before the case (e.g. make the role it deletes); gets (active node, setup).
    prepare: Callable[[RaftNode, Setup], None] | None = None
    # After the forwarded request: did it take effect? Reads on the active; returns a failure text or "".
    effect: Callable[[RaftNode, Setup, requests.Response], str] | None = None


def _role_exists(name: str, want: bool) -> Callable[[RaftNode, Setup, requests.Response], str]:
    def check(active: RaftNode, s: Setup, _: requests.Response) -> str:
        code = active.http("GET", f"{s.mount}/roles/{name}").status_code
        return "" if (code == 200) == want else f"roles/{name} read {code} on the active"
    return check


def _cert_stored(active: RaftNode, s: Setup, resp: requests.Response) -> str:
    serial = (resp.json().get("data") or {}).get("serial_number", "")
    code = active.http("GET", f"{s.mount}/cert/{serial}").status_code
    return "" if serial and code == 200 else f"cert/{serial} read {code} on the active"


def _revoked(active: RaftNode, s: Setup, _: requests.Response) -> str:
    keys = (active.http("LIST", f"{s.mount}/certs/revoked").json().get("data") or {}).get("keys") or []
    return "" if s.serial in keys else f"{s.serial} not in certs/revoked on the active"


def _config_is(path: str, field: str, value: Any) -> Callable[[RaftNode, Setup, requests.Response], str]:
    def check(active: RaftNode, s: Setup, _: requests.Response) -> str:
        got = (active.http("GET", f"{s.mount}/{path}").json().get("data") or {}).get(field)
        return "" if got == value else f"{path} {field}={got!r} on the active"
    return check


def _issue_one(active: RaftNode, s: Setup) -> None:
    resp = active.http("POST", f"{s.mount}/issue/web", json={"common_name": "rev.example.com"})
    assert resp.status_code == 200, resp.text
    s.serial = resp.json()["data"]["serial_number"]


def _make_role(name: str) -> Callable[[RaftNode, Setup], None]:
    def prepare(active: RaftNode, s: Setup) -> None:
        assert active.http("POST", f"{s.mount}/roles/{name}", json={"allow_any_name": True}).status_code in (200, 204)
    return prepare


CASES = [
    Case("role write", "POST", "roles/fw", lambda s: {"allow_any_name": True, "key_type": "ec"},
         effect=_role_exists("fw", True)),
    Case("role delete", "DELETE", "roles/gone", prepare=_make_role("gone"), effect=_role_exists("gone", False)),
    Case("issue", "POST", "issue/web", lambda s: {"common_name": "a.example.com"}, effect=_cert_stored),
    Case("sign", "POST", "sign/web", lambda s: {"csr": csr_pem("b.example.com")}, effect=_cert_stored),
    Case("sign-verbatim", "POST", "sign-verbatim", lambda s: {"csr": csr_pem("c.example.com")},
         effect=_cert_stored),
    Case("revoke", "POST", "revoke", lambda s: {"serial_number": s.serial}, prepare=_issue_one, effect=_revoked),
    Case("crl/rotate", "GET", "crl/rotate"),
    Case("crl/rotate-delta", "GET", "crl/rotate-delta"),
    Case("config/crl", "POST", "config/crl", lambda s: {"expiry": "48h"},
         effect=_config_is("config/crl", "expiry", "48h")),
    Case("config/urls", "POST", "config/urls", lambda s: {"issuing_certificates": ["http://pki.example/ca"]},
         effect=_config_is("config/urls", "issuing_certificates", ["http://pki.example/ca"])),
    Case("config/cluster", "POST", "config/cluster", lambda s: {"path": "http://pki.example/v1/x"},
         effect=_config_is("config/cluster", "path", "http://pki.example/v1/x")),
    Case("config/auto-tidy", "POST", "config/auto-tidy", lambda s: {"enabled": False, "interval_duration": "2h"},
         effect=_config_is("config/auto-tidy", "interval_duration", 7200)),
    Case("tidy", "POST", "tidy", lambda s: {"tidy_cert_store": True, "safety_buffer": "87600h"}),
    Case("tidy-cancel", "POST", "tidy-cancel"),
    Case("issuer update", "POST", "issuer/default", lambda s: {"leaf_not_after_behavior": "truncate"},
         effect=_config_is("issuer/default", "leaf_not_after_behavior", "truncate")),
    Case("keys generate", "POST", "keys/generate/internal", lambda s: {"key_type": "ec", "key_name": "fwkey"},
         effect=lambda a, s, r: "" if a.http("GET", f"{s.mount}/key/fwkey").status_code == 200 else "no key"),
    Case("root/generate", "POST", "root/generate/internal",
         lambda s: {"common_name": "Second Root", "key_type": "ec", "issuer_name": "second", "ttl": "8760h"},
         effect=lambda a, s, r: "" if a.http("GET", f"{s.mount}/issuer/second").status_code == 200 else "no issuer"),
    Case("intermediate/generate", "POST", "intermediate/generate/internal",
         lambda s: {"common_name": "Int", "key_type": "ec"}),
    Case("root/sign-intermediate", "POST", "root/sign-intermediate",
         lambda s: {"csr": csr_pem("Sub CA", ca=True), "ttl": "720h"}),
    Case("intermediate import (issuers/import/bundle)", "POST", "issuers/import/bundle",
         lambda s: {"pem_bundle": self_signed_bundle("Imported CA")},
         effect=lambda a, s, r: "" if (r.json().get("data") or {}).get("imported_issuers") else "nothing imported"),
    Case("config/issuers", "POST", "config/issuers", lambda s: {"default": s.issuer_id},
         effect=_config_is("config/issuers", "default", None)),   # replaced in run: compared to issuer_id
    Case("config/acme", "POST", "config/acme", lambda s: {"enabled": False}),
]


def _prepare_mount(active: RaftNode, mount: str) -> Setup:
    root = active.http("POST", f"{mount}/root/generate/internal",
                       json={"common_name": "Forwarding Root", "key_type": "ec", "ttl": "87600h",
                             "issuer_name": "main"})
    assert root.status_code == 200, root.text
    role = active.http("POST", f"{mount}/roles/web",
                       json={"allow_any_name": True, "key_type": "ec", "ttl": "1h"})
    assert role.status_code in (200, 204), role.text
    return Setup(mount=mount, issuer_id=root.json()["data"]["issuer_id"])


def _answer(resp: requests.Response) -> str:
    if resp.status_code < 400:
        return str(resp.status_code)
    try:
        errors = resp.json().get("errors") or []
    except ValueError:
        errors = [resp.text]
    text = " ".join(" ".join(str(e) for e in errors).split())
    return f"{resp.status_code} {text[:70]}"


def test_every_write_through_a_standby_is_forwarded_as_on_the_builtin(cluster: Cluster, tmp_path: Path) -> None:
    pair = cluster.mount_pair()
    active = cluster.active()
    setups = {m: _prepare_mount(active, m) for m in (pair.ours, pair.ref)}
    for m in (pair.ours, pair.ref):
        cluster.wait_readable(f"{m}/roles/web")
        cluster.wait_readable(f"{m}/issuer/main")
    standby = cluster.standbys()[0]
    rows, problems = [], []
    for case in CASES:
        answers: dict[str, tuple[str, str, str]] = {}
        for m in (pair.ref, pair.ours):
            s = setups[m]
            if case.prepare:
                case.prepare(active, s)
                cluster.wait_readable(f"{m}/config/crl")
                if case.name == "role delete":
                    cluster.wait_readable(f"{m}/roles/gone", nodes=[standby])
                if s.serial:
                    cluster.wait_readable(f"{m}/cert/{s.serial}", nodes=[standby])
            body = case.body(s) if case.body else None
            # First without forwarding: the standby must refuse (307 to the active) and change nothing.
            direct = standby.request(case.method, f"{m}/{case.path}", json=body, forward=False)
            resp = standby.request(case.method, f"{m}/{case.path}", json=body)
            effect = ""
            if resp.status_code < 400:
                if case.name == "config/issuers":
                    got = (active.http("GET", f"{m}/config/issuers").json().get("data") or {}).get("default")
                    effect = "" if got == s.issuer_id else f"default {got!r}"
                elif case.effect:
                    effect = case.effect(active, s, resp)
            answers[m] = (str(direct.status_code), _answer(resp), effect)
        ref, ours = answers[pair.ref], answers[pair.ours]
        same = ref[1].split()[0] == ours[1].split()[0] and ref[0] == ours[0] and not ours[2]
        rows.append(f"| {case.name} | {case.method} {case.path} | {ref[1]} (no-forward {ref[0]}) "
                    f"| {ours[1]} (no-forward {ours[0]}){' ' + ours[2] if ours[2] else ''} | "
                    f"{'same' if same else 'DIFFERENT'} |")
        if not same:
            problems.append(rows[-1])
        assert not ref[2], f"built-in effect check failed for {case.name}: {ref[2]} (the test is wrong)"
    table = "\n".join(["| write | request | built-in via standby | ours via standby | |", "|---|---|---|---|---|",
                       *rows])
    (tmp_path / "forwarding.md").write_text(table + "\n")
    print(f"\nwrites sent to standby {standby.node_id} (table also in {tmp_path / 'forwarding.md'}):\n{table}")
    assert not problems, "answered differently from the built-in:\n" + "\n".join(problems)


def test_tidy_through_a_standby_runs_on_the_active_and_its_status_reads_the_same_everywhere(cluster: Cluster) -> None:
    pair = cluster.mount_pair()
    active = cluster.active()
    for m in (pair.ours, pair.ref):
        _prepare_mount(active, m)
        cluster.wait_readable(f"{m}/issuer/main")
    standby = cluster.standbys()[0]
    states = {}
    for m in (pair.ref, pair.ours):
        resp = standby.request("POST", f"{m}/tidy", json={"tidy_cert_store": True, "safety_buffer": "1s"})
        assert resp.status_code == 202, resp.text
        cluster.wait_readable(f"{m}/tidy-status", nodes=[active], timeout=60,
                              ok=lambda r: (r.json().get("data") or {}).get("state") not in (None, "Inactive", "Running"))
        # What a client asking each node sees (the built-in forwards tidy-status to the active), once the
        # run's last write has had time to replicate.
        deadline = time.monotonic() + 10
        while True:
            states[m] = {n.node_id: n.request("GET", f"{m}/tidy-status").json()["data"]["state"]
                         for n in cluster.nodes}
            if set(states[m].values()) == {"Finished"} or time.monotonic() > deadline:
                break
            time.sleep(0.2)
    assert states[pair.ours] == states[pair.ref] == {n.node_id: "Finished" for n in cluster.nodes}
