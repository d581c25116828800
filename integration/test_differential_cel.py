"""Differential: OpenBao's CEL roles (cel/roles, cel/issue, cel/sign) on our mount and the built-in one.

The same programs are written to both mounts; role reads and lists must match, certificates issued or signed must
have the same profile (subject, SANs, key usages, lifetime, key kind), warnings must match, and refusals must carry
the same text. Deliberate difference: every refusal is a 400 here, where the built-in answers 500 (its handler
returns the program's verdict as an internal error).
"""
from __future__ import annotations

import datetime as dt
import time
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from integration.conftest import Mounts
from integration.differential import Reply, call, must, patch
from integration.harness import BaoServer

ISSUE_PROGRAM = {
    "variables": [{"name": "cn", "expression": "request.common_name"},
                  {"name": "allowed", "expression": 'cn.endsWith(".example.com")'}],
    "expression": (
        'allowed ? ValidationOutput{template: CertTemplate{'
        'Subject: PKIX.Name{CommonName: cn, Organization: ["Example"], OrganizationUnit: ["Ops"], Country: ["FR"]}, '
        'DNSNames: [cn, "www." + cn], EmailAddresses: ["ops@example.com"], '
        'IPAddresses: [net.IP{IP: b"\\x0a\\x00\\x00\\x01"}], '
        'NotBefore: now - duration("30s"), NotAfter: now + duration("2h"), '
        'KeyUsage: 1, ExtKeyUsage: [1, 2]}, key_type: "ec", key_bits: 384u, warnings: ["issued by CEL"]} '
        ': (cn == "deny-bool.example.org" ? false : "name " + cn + " is not allowed")'),
}
SIGN_PROGRAM = {
    "expression": (
        'parsed_csr.Subject.CommonName.endsWith(".example.com") ? ValidationOutput{template: CertTemplate{'
        'Subject: PKIX.Name{CommonName: parsed_csr.Subject.CommonName}, DNSNames: parsed_csr.DNSNames, '
        'NotBefore: now - duration("30s"), NotAfter: now + duration("1h"), KeyUsage: 1, ExtKeyUsage: [1]}, '
        'no_store: true} : "CSR refused"'),
}


def _errors(reply: Reply) -> list[str]:
    """Error texts without Go's multierror wrapping (`1 error occurred:\\n\\t* ...\\n\\n`)."""
    out = []
    for e in reply.body.get("errors") or []:
        if e.startswith("1 error occurred:\n\t* "):
            e = e[len("1 error occurred:\n\t* "):].rstrip("\n")
        out.append(e)
    return out


def _both(bao: BaoServer, mounts: Mounts, method: str, path: str, body: dict[str, Any] | None = None
          ) -> tuple[Reply, Reply]:
    return call(bao, method, f"{mounts.ours}/{path}", body), call(bao, method, f"{mounts.ref}/{path}", body)


def _refused_alike(ours: Reply, ref: Reply) -> None:
    assert ref.status == 500 and ours.status == 400, (ours.describe(), ref.describe())
    assert _errors(ours) == _errors(ref)


def _profile(cert: x509.Certificate) -> dict[str, Any]:
    exts = {e.oid.dotted_string: (e.critical, e.value) for e in cert.extensions
            if e.oid.dotted_string not in ("2.5.29.14", "2.5.29.35")}
    return {"subject": cert.subject.rfc4514_string(), "extensions": exts,
            "lifetime": cert.not_valid_after_utc - cert.not_valid_before_utc,
            "key": type(cert.public_key()).__name__, "key_size": getattr(cert.public_key(), "key_size", None)}


@pytest.fixture
def roots(bao: BaoServer, mounts: Mounts) -> None:
    for mount in mounts.ours, mounts.ref:
        must(call(bao, "POST", f"{mount}/root/generate/internal", {"common_name": "CEL Root", "key_type": "ec"}),
             "root")


def test_role_crud_matches(bao: BaoServer, mounts: Mounts) -> None:
    for mount in mounts.ours, mounts.ref:
        assert call(bao, "LIST", f"{mount}/cel/roles").status == 404
    ours, ref = _both(bao, mounts, "POST", "cel/roles/web", {"cel_program": ISSUE_PROGRAM})
    assert ours.data == ref.data and ref.data["name"] == "web"
    ours, ref = _both(bao, mounts, "POST", "cel/roles/other", {"cel_program": {"expression": "false"}})
    assert ours.data == ref.data
    assert _both(bao, mounts, "GET", "cel/roles/web")[0].data == _both(bao, mounts, "GET", "cel/roles/web")[1].data
    ours, ref = _both(bao, mounts, "LIST", "cel/roles")
    assert ours.data["keys"] == ref.data["keys"] == ["other", "web"]
    ours, ref = _both(bao, mounts, "LIST", "cel/roles?after=other")
    assert ours.data["keys"] == ref.data["keys"] == ["web"]
    replies = [patch(bao, f"{m}/cel/roles/other", {"cel_program": {"expression": "'no'"}})
               for m in mounts.__dict__.values()]
    assert replies[0].data == replies[1].data and replies[1].data["cel_program"] == {"expression": "'no'"}
    ours, ref = _both(bao, mounts, "DELETE", "cel/roles/other")
    assert ours.status == ref.status == 200
    ours, ref = _both(bao, mounts, "GET", "cel/roles/other")
    assert ours.status == ref.status == 404


@pytest.mark.parametrize("body, prefix", [
    ({}, "missing required field 'cel_program'"),
    ({"cel_program": {"expression": ""}}, "cel_program.expression cannot be empty"),
    ({"cel_program": {"expression": "1 +"}}, "invalid CEL syntax for main expression: ERROR: <input>:"),
    ({"cel_program": {"variables": [{"name": "v", "expression": "(("}], "expression": "v"}},
     "failed to validate variables: variable[0].v: failed to validate: invalid CEL syntax for variable 'v': "
     "ERROR: <input>:"),
], ids=["missing", "empty", "syntax", "variable-syntax"])
def test_bad_programs_are_refused_alike(bao: BaoServer, mounts: Mounts, body: dict[str, Any], prefix: str) -> None:
    ours, ref = _both(bao, mounts, "POST", "cel/roles/bad", body)
    assert ref.status == 500 and ours.status == 400, (ours.describe(), ref.describe())
    # cel-go and cel-python word syntax errors differently after the location; the rest is the built-in's chain.
    assert _errors(ref)[0].startswith(prefix) and _errors(ours)[0].startswith(prefix.split(": ERROR")[0])
    assert call(bao, "GET", f"{mounts.ours}/cel/roles/bad").status == 404


def test_issue_matches(bao: BaoServer, mounts: Mounts, roots: None) -> None:
    _both(bao, mounts, "POST", "cel/roles/web", {"cel_program": ISSUE_PROGRAM})
    ours, ref = _both(bao, mounts, "POST", "cel/issue/web", {"common_name": "a.example.com", "extra": "ignored"})
    assert ours.ok and ref.ok, (ours.describe(), ref.describe())
    assert sorted(ours.data) == sorted(ref.data)
    assert ours.body.get("warnings") == ref.body.get("warnings") == ["issued by CEL"]
    certs = [x509.load_pem_x509_certificate(r.data["certificate"].encode()) for r in (ours, ref)]
    assert _profile(certs[0]) == _profile(certs[1])
    assert ours.data["private_key_type"] == ref.data["private_key_type"] == "ec"
    for mount, reply in zip(mounts.__dict__.values(), (ours, ref)):
        assert call(bao, "GET", f"{mount}/cert/{reply.data['serial_number']}").ok      # stored by default

    _refused_alike(*_both(bao, mounts, "POST", "cel/issue/web", {"common_name": "x.example.org"}))
    _refused_alike(*_both(bao, mounts, "POST", "cel/issue/web", {"common_name": "deny-bool.example.org"}))
    _refused_alike(*_both(bao, mounts, "POST", "cel/issue/web", {}))
    _refused_alike(*_both(bao, mounts, "POST", "cel/issue/missing", {"common_name": "a.example.com"}))


def test_sign_matches(bao: BaoServer, mounts: Mounts, roots: None) -> None:
    _both(bao, mounts, "POST", "cel/roles/csr", {"cel_program": SIGN_PROGRAM})
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "svc.example.com")]))
           .add_extension(x509.SubjectAlternativeName([x509.DNSName("svc.example.com"),
                                                       x509.DNSName("alt.example.com")]), critical=False)
           .sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM).decode())
    ours, ref = _both(bao, mounts, "POST", "cel/sign/csr", {"csr": csr})
    assert ours.ok and ref.ok, (ours.describe(), ref.describe())
    assert sorted(ours.data) == sorted(ref.data)
    assert ours.data["private_key"] == ref.data["private_key"] == ""
    certs = [x509.load_pem_x509_certificate(r.data["certificate"].encode()) for r in (ours, ref)]
    assert _profile(certs[0]) == _profile(certs[1])
    assert certs[0].public_key().public_numbers() == key.public_key().public_numbers()
    for mount, reply in zip(mounts.__dict__.values(), (ours, ref)):       # no_store
        assert call(bao, "GET", f"{mount}/cert/{reply.data['serial_number']}").status == 404

    other = (x509.CertificateSigningRequestBuilder()
             .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "svc.example.org")]))
             .sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM).decode())
    _refused_alike(*_both(bao, mounts, "POST", "cel/sign/csr", {"csr": other}))


def test_hostile_program_is_stopped(bao: BaoServer, mounts: Mounts, roots: None) -> None:
    """Not compared (the built-in sets no evaluation limit): a program that would run for hours is stopped at the
    time limit with a 400, and the plugin keeps serving meanwhile."""
    ten = "[1,2,3,4,5,6,7,8,9,10]"
    expression = f"{ten}.map(a, {ten}.map(b, {ten}.map(c, {ten}.map(d, {ten}.map(e, {ten}.map(f, {ten}.map(g, " \
                 "a+b+c+d+e+f+g))))))).size() > 0"
    must(call(bao, "POST", f"{mounts.ours}/cel/roles/slow", {"cel_program": {"expression": expression}}), "write")
    started = time.monotonic()
    results: dict[str, Reply] = {}

    import threading
    worker = threading.Thread(target=lambda: results.setdefault(
        "slow", call(bao, "POST", f"{mounts.ours}/cel/issue/slow", {"common_name": "a.example.com"})))
    worker.start()
    time.sleep(0.5)
    assert call(bao, "GET", f"{mounts.ours}/cel/roles/slow").ok      # the plugin still answers
    worker.join(120)
    slow = results["slow"]
    assert slow.status == 400 and "did not finish within" in slow.body["errors"][0], slow.describe()
    assert time.monotonic() - started < 60
