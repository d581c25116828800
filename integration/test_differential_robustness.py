"""Bad or odd input side by side with the built-in engine: never a 500 from ours where the built-in answers 4xx
or 200, and the same answer unless the README lists the difference.

Each case gives what the built-in answers (checked too, so a change in OpenBao shows up here) and what ours
must answer: "same" (the built-in's status class), or "400" for a deliberate refusal the built-in does not
make (README, "Differences from the built-in engine").
"""
from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from integration import csr_craft as cc
from integration.harness import BaoServer


@dataclass(frozen=True)
class Case:
    label: str
    path: str
    body: dict[str, Any] | None
    builtin: int            # the built-in's status
    ours: str = "same"      # "same" or the status we answer on purpose
    method: str = "POST"


def _explicit_curve_csr(tmp: Path) -> str:
    subprocess.run(["openssl", "ecparam", "-name", "prime256v1", "-param_enc", "explicit", "-genkey", "-noout",
                    "-out", str(tmp / "k.pem")], check=True, capture_output=True)
    subprocess.run(["openssl", "req", "-new", "-key", str(tmp / "k.pem"), "-subj", "/CN=explicit.example.com",
                    "-out", str(tmp / "r.pem")], check=True, capture_output=True)
    return (tmp / "r.pem").read_text()


ISSUE = "issue/r"
CN = {"common_name": "a.example.com"}

CASES = [
    Case("country of three letters", "root/generate/internal",
         {"common_name": "c.example.com", "country": "USA", "key_type": "ec"}, 200, "400"),
    Case("not_before_duration of 292 years", "root/generate/internal",
         {"common_name": "c.example.com", "not_before_duration": "2562047h", "key_type": "ec"}, 200, "400"),
    Case("default issuer ../..", "config/issuers", {"default": "../.."}, 400),
    Case("non-ASCII URI path", ISSUE, {**CN, "uri_sans": "https://a.example.com/\u00e9"}, 200),
    Case("URI with a space", ISSUE, {**CN, "uri_sans": "https://a.example.com/ x"}, 200),
    Case("non-ASCII URI host", ISSUE, {**CN, "uri_sans": "https://\u00e9.example.com/x"}, 500, "400"),
    Case("URI with NUL", ISSUE, {**CN, "uri_sans": "https://a.example.com/\x00"}, 400),
    Case("URI with CR", ISSUE, {**CN, "uri_sans": "https://a.example.com/\rx"}, 400),
    Case("URI with LF", ISSUE, {**CN, "uri_sans": "https://a.example.com/\nx"}, 400),
    Case("URI with a bad escape", ISSUE, {**CN, "uri_sans": "https://a.example.com/%zz"}, 400),
    Case("xn-- label alone", ISSUE, {**CN, "alt_names": "xn--.example.com"}, 400),
    Case("email SAN with a control character", ISSUE, {**CN, "alt_names": "b\x01@example.com"}, 200, "400"),
    Case("other SAN with a control character", ISSUE,
         {**CN, "other_sans": "1.3.6.1.4.1.311.20.2.3;UTF8:x\x01y"}, 200, "400"),
    Case("role name outside ASCII", "roles/r\u00f4le", {"allow_any_name": True}, 404),
    Case("issuer name outside ASCII", "issuer/d\u00e9faut", None, 404, method="GET"),
]

CSR_PATHS = ("sign/any", "sign-verbatim", "root/sign-intermediate")
CSR_CASES = [   # (label, how to make the CSR, built-in status, ours)
    ("version 1", lambda tmp: cc.csr(version=1), 200, "400"),
    ("duplicate SAN extension", lambda tmp: cc.csr(extensions=[cc.san(cc.dns_name(b"a.example.com")),
                                                               cc.san(cc.dns_name(b"b.example.com"))]), 400, "same"),
    ("invalid UTF-8 CN", lambda tmp: cc.csr(subject=cc.cn_name(cc.tlv(0x0C, b"\xff\xfe"))), 400, "same"),
    ("T61String CN", lambda tmp: cc.csr(subject=cc.cn_name(cc.tlv(0x14, b"t61.example.com"))), 200, "same"),
    ("INTEGER CN", lambda tmp: cc.csr(subject=cc.cn_name(cc.tlv(0x02, b"\x05"))), 200, "400"),
    ("x400Address SAN", lambda tmp: cc.csr(extensions=[cc.san(cc.x400_name(), cc.dns_name(b"a.example.com"))]),
     200, "400"),
    ("URI SAN with NUL", lambda tmp: cc.csr(extensions=[cc.san(cc.uri_name(b"https://a.example.com/\x00"))]),
     400, "same"),
    ("URI SAN with CR", lambda tmp: cc.csr(extensions=[cc.san(cc.uri_name(b"https://a.example.com/\rx"))]),
     400, "same"),
    ("URI SAN with LF", lambda tmp: cc.csr(extensions=[cc.san(cc.uri_name(b"https://a.example.com/\nx"))]),
     400, "same"),
    ("brainpoolP256r1 key", lambda tmp: cc.csr(key=ec.generate_private_key(ec.BrainpoolP256R1())), 400, "same"),
    ("secp256k1 key", lambda tmp: cc.csr(key=ec.generate_private_key(ec.SECP256K1())), 400, "same"),
    ("explicit curve parameters", _explicit_curve_csr, 400, "same"),
]


@pytest.fixture
def roles(bao: BaoServer, mounts) -> Any:
    for m in (mounts.ours, mounts.ref):
        bao.tune_max_ttl(m, "87600h")
        for path, body in (("root/generate/internal", {"common_name": "root.example.com", "key_type": "ec",
                                                       "ttl": "8760h"}),
                           ("roles/r", {"allow_any_name": True, "allowed_uri_sans": "*", "key_type": "ec",
                                        "allowed_other_sans": "*", "enforce_hostnames": False}),
                           ("roles/any", {"allow_any_name": True, "allowed_uri_sans": "*", "key_type": "any"}),
                           ("roles/eck", {"allow_any_name": True, "key_type": "ec"})):
            resp = bao.http("POST", f"{m}/{path}", json=body)
            assert resp.status_code in (200, 204), resp.text
    return mounts


def _both(bao: BaoServer, mounts: Any, method: str, path: str, body: Any) -> tuple[Any, Any]:
    return (bao.http(method, f"{mounts.ours}/{path}", json=body), bao.http(method, f"{mounts.ref}/{path}", json=body))


def _check(case_label: str, ours: Any, ref: Any, builtin: int, expect: str) -> None:
    assert ref.status_code == builtin, f"{case_label}: the built-in now answers {ref.status_code}: {ref.text}"
    want = builtin if expect == "same" else int(expect)
    assert ours.status_code // 100 == want // 100, f"{case_label}: ours {ours.status_code} {ours.text[:300]}"
    if ours.status_code >= 400:
        errors = ours.json()["errors"]
        assert errors and all(isinstance(e, str) and not any(ord(c) < 0x20 and c not in "\t\n" for c in e)
                              for e in errors), errors


@pytest.mark.parametrize("case", CASES, ids=[c.label for c in CASES])
def test_odd_request_fields(bao: BaoServer, roles, case: Case) -> None:
    ours, ref = _both(bao, roles, case.method, case.path, case.body)
    _check(case.label, ours, ref, case.builtin, case.ours)
    if ours.status_code == 200 and "uri_sans" in (case.body or {}):
        # Percent-encoded exactly as the built-in writes it.
        def uris(resp: Any) -> list[str]:
            cert = x509.load_pem_x509_certificate(resp.json()["data"]["certificate"].encode())
            return cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value \
                .get_values_for_type(x509.UniformResourceIdentifier)
        assert uris(ours) == uris(ref)


@pytest.mark.parametrize("label,make,builtin,expect", CSR_CASES, ids=[c[0] for c in CSR_CASES])
@pytest.mark.parametrize("path", CSR_PATHS)
def test_odd_csrs(bao: BaoServer, roles, tmp_path: Path, label, make, builtin, expect, path) -> None:
    body: dict[str, Any] = {"csr": make(tmp_path), "common_name": "x.example.com"}
    if path == "root/sign-intermediate":
        body["use_csr_values"] = True
    ours, ref = _both(bao, roles, "POST", path, body)
    _check(f"{label} on {path}", ours, ref, builtin, expect)


@pytest.mark.parametrize("label,make", [c[:2] for c in CSR_CASES if "key" in c[0] or "curve" in c[0]])
def test_csr_keys_off_the_four_nist_curves_are_refused_under_key_type_ec(bao: BaoServer, roles, tmp_path: Path,
                                                                          label, make) -> None:
    ours, ref = _both(bao, roles, "POST", "sign/eck", {"csr": make(tmp_path), "common_name": "x.example.com"})
    _check(label, ours, ref, 400, "same")
    assert ours.json()["errors"][0].startswith("certificate request could not be parsed: ")
