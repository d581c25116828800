"""Differential: issuer/:ref/sign-revocation-list and issuer/:ref/resign-crls on our mount and the built-in one.

Both mounts import the same CA (key included), so a CRL either signs verifies under the other's issuer and the two
CRLs can be compared field by field: everything but the signature and the clock must be equal. Bad input must be
refused by both with the same message, and nothing may change in storage.
"""
from __future__ import annotations

import base64
import datetime as dt
import subprocess
from typing import Any, Iterator

import pytest
from asn1crypto import crl as asn1crl
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from integration.conftest import Mounts
from integration.differential import Reply, call, must, patch, pem_bundle, self_signed_ca
from integration.harness import BaoServer, mount_storage_keys

REASON_KEY_COMPROMISE = base64.b64encode(b"\x0a\x01\x01").decode()
ENTRIES = [
    {"serial_number": "01:02:03", "revocation_time": "2026-01-01T00:00:00Z"},
    {"serial_number": "0A-0B", "revocation_time": 1700000000,
     "extensions": [{"id": "2.5.29.21", "value": REASON_KEY_COMPROMISE}]},
    {"serial_number": "7f ff", "revocation_time": "1700000001"},
    "not a map: skipped",
]
CRL_EXTENSIONS = [{"id": "1.3.6.1.4.1.55555.7", "critical": True, "value": ""},
                  {"id": "1.3.6.1.4.1.55555.8", "critical": "false", "value": base64.b64encode(b"\x05\x00").decode()}]


def _ca(kind: str, name: str) -> tuple[Any, x509.Certificate, str]:
    key = ec.generate_private_key(ec.SECP384R1()) if kind == "ec" else rsa.generate_private_key(65537, 2048)
    cert = self_signed_ca(key, x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
    return key, cert, pem_bundle(cert, key)


@pytest.fixture
def cas(bao: BaoServer, mounts: Mounts) -> Iterator[dict[str, x509.Certificate]]:
    """The same two CAs (EC `ec-ca`, RSA `rsa-ca` with PSS revocation signatures) in both mounts, plus a
    key-less `keyless` issuer and `no-crl` without crl-signing usage."""
    certs = {}
    for kind in ("ec", "rsa", "nocrl"):
        _, cert, bundle = _ca("rsa" if kind == "rsa" else "ec", f"CRL {kind} CA")
        certs[kind] = (cert, bundle)
    _, keyless, _ = _ca("ec", "Keyless CA")
    for mount in mounts.ours, mounts.ref:
        for kind, name in (("ec", "ec-ca"), ("rsa", "rsa-ca"), ("nocrl", "no-crl")):
            data = must(call(bao, "POST", f"{mount}/issuers/import/bundle", {"pem_bundle": certs[kind][1]}), kind)
            must(patch(bao, f"{mount}/issuer/{data['imported_issuers'][0]}", {"issuer_name": name}), name)
        must(patch(bao, f"{mount}/issuer/rsa-ca", {"revocation_signature_algorithm": "SHA256WithRSAPSS"}), "pss")
        must(patch(bao, f"{mount}/issuer/no-crl", {"usage": "read-only,issuing-certificates"}), "usage")
        data = must(call(bao, "POST", f"{mount}/issuers/import/cert",
                         {"pem_bundle": keyless.public_bytes(serialization.Encoding.PEM).decode()}), "keyless")
        must(patch(bao, f"{mount}/issuer/{data['imported_issuers'][0]}", {"issuer_name": "keyless"}), "keyless")
        must(call(bao, "POST", f"{mount}/config/issuers", {"default": "ec-ca"}), "default")
    yield {"ec-ca": certs["ec"][0], "rsa-ca": certs["rsa"][0]}


def _crl(reply: Reply, der: bool = False) -> x509.CertificateRevocationList:
    text = must(reply, "CRL")["crl"]
    return x509.load_der_x509_crl(base64.b64decode(text)) if der else x509.load_pem_x509_crl(text.encode())


def _profile(crl: x509.CertificateRevocationList) -> dict[str, Any]:
    """Everything a relying party reads, without the clock and the signature value."""
    assert crl.next_update_utc is not None
    return {
        "issuer": crl.issuer.public_bytes(),
        "signature_algorithm": crl.signature_algorithm_oid.dotted_string,
        "signature_algorithm_der": asn1crl.CertificateList.load(
            crl.public_bytes(serialization.Encoding.DER))["signature_algorithm"].dump(),
        "lifetime": crl.next_update_utc - crl.last_update_utc,
        "extensions": [(e.oid.dotted_string, e.critical, e.value.public_bytes()) for e in crl.extensions],
        "entries": [(r.serial_number, r.revocation_date_utc,
                     [(e.oid.dotted_string, e.critical, e.value.public_bytes()) for e in r.extensions])
                    for r in crl],
    }


def _both(bao: BaoServer, mounts: Mounts, path: str, body: dict[str, Any]) -> tuple[Reply, Reply]:
    return call(bao, "POST", f"{mounts.ours}/{path}", body), call(bao, "POST", f"{mounts.ref}/{path}", body)


def _openssl_verifies(crl: x509.CertificateRevocationList, ca: x509.Certificate, tmp_path: Any) -> None:
    (tmp_path / "crl.pem").write_bytes(crl.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    out = subprocess.run(["openssl", "crl", "-in", tmp_path / "crl.pem", "-CAfile", tmp_path / "ca.pem", "-noout"],
                         capture_output=True, text=True)
    assert out.returncode == 0 and "verify OK" in out.stderr + out.stdout, out


@pytest.mark.parametrize("issuer", ["ec-ca", "rsa-ca"])
@pytest.mark.parametrize("body", [
    {},
    {"crl_number": 12, "next_update": "2h", "revoked_certs": ENTRIES},
    {"crl_number": 3, "delta_crl_base_number": 2, "revoked_certs": ENTRIES[:1], "extensions": CRL_EXTENSIONS},
    {"delta_crl_base_number": 0, "next_update": 600, "format": "DER", "revoked_certs": ENTRIES[1:]},
], ids=["defaults", "entries", "delta-and-extensions", "der"])
def test_sign_revocation_list_matches(bao: BaoServer, mounts: Mounts, cas: dict[str, x509.Certificate],
                                      issuer: str, body: dict[str, Any], tmp_path: Any) -> None:
    ours, ref = _both(bao, mounts, f"issuer/{issuer}/sign-revocation-list", body)
    der = body.get("format") == "DER"
    ours_crl, ref_crl = _crl(ours, der), _crl(ref, der)
    assert _profile(ours_crl) == _profile(ref_crl)
    assert sorted(ours.data) == sorted(ref.data) == ["crl"]
    assert ours_crl.is_signature_valid(cas[issuer].public_key())
    assert ref_crl.is_signature_valid(cas[issuer].public_key())
    _openssl_verifies(ours_crl, cas[issuer], tmp_path)
    assert abs((ours_crl.last_update_utc - dt.datetime.now(dt.timezone.utc)).total_seconds()) < 120


SIGN_ERRORS = [
    {"next_update": "0"},
    {"next_update": "-1h"},
    {"crl_number": -1},
    {"delta_crl_base_number": -2},
    {"format": "txt"},
    {"format": "txt", "next_update": "0"},
    {"revoked_certs": [{"revocation_time": "2026-01-01T00:00:00Z"}]},
    {"revoked_certs": [{"serial_number": "zz", "revocation_time": "2026-01-01T00:00:00Z"}]},
    {"revoked_certs": [{"serial_number": "abc", "revocation_time": "2026-01-01T00:00:00Z"}]},
    {"revoked_certs": [{"serial_number": "01"}]},
    {"revoked_certs": [{"serial_number": "01", "revocation_time": "yesterday"}]},
    {"revoked_certs": [{"serial_number": "01", "revocation_time": 1, "extensions": "x"}]},
    {"revoked_certs": [{"serial_number": "01", "revocation_time": 1,
                        "extensions": [{"id": "2.5.29.35", "value": ""}]}]},
    {"extensions": [{"id": "2.5.29.35", "value": ""}]},
    {"extensions": [{"id": "2.5.29.20", "value": ""}]},
    {"extensions": [{"id": "2.5.29.27", "value": ""}]},
    {"extensions": [{"id": "1.2", "value": ""}, {"id": "1.2", "value": ""}]},
    {"extensions": [{"id": "1.a", "value": ""}]},
    {"extensions": [{"id": "", "value": ""}]},
    {"extensions": [{"value": ""}]},
    {"extensions": [{"id": "1.2"}]},
    {"extensions": [{"id": "1.2", "value": "!!"}]},
    {"extensions": ["x"]},
    {"extensions": "x"},
]


def test_sign_revocation_list_refusals_match(bao: BaoServer, mounts: Mounts, cas: dict[str, x509.Certificate]) -> None:
    before = {m: mount_storage_keys(bao, m) for m in mounts.__dict__.values()}
    for body in SIGN_ERRORS:
        ours, ref = _both(bao, mounts, "issuer/default/sign-revocation-list", body)
        assert (ours.status, ours.body.get("errors")) == (ref.status, ref.body.get("errors")) \
            and ref.status == 400, body
    # The framework's duration errors never repeat the value (the built-in's end `invalid duration "x"`).
    ours, ref = _both(bao, mounts, "issuer/default/sign-revocation-list", {"next_update": "x"})
    assert ref.body["errors"] == ['invalid value for next_update: time: invalid duration "x"']
    assert (ours.status, ours.body["errors"]) == (400, ["invalid value for next_update: time: invalid duration"])
    ours, ref = _both(bao, mounts, "issuer/default/sign-revocation-list",
                      {"extensions": [{"id": "1.2", "value": "", "critical": "maybe"}]})
    assert ref.body["errors"] == ["failed parsing extension entry 0: critical field value failed to be parsed: cannot "
                                  "parse '' as bool: strconv.ParseBool: parsing \"maybe\": invalid syntax"]
    assert (ours.status, ours.body["errors"]) == (400, [ref.body["errors"][0].replace('parsing "maybe": ', "")])
    for issuer in ("no-crl", "keyless", "missing"):
        ours, ref = _both(bao, mounts, f"issuer/{issuer}/sign-revocation-list", {})
        assert ref.status == 400 and ours.status == 400, issuer
        assert ours.body["errors"] == [e.replace(_id(bao, mounts.ref, issuer), _id(bao, mounts.ours, issuer))
                                       for e in ref.body["errors"]], issuer
    assert {m: mount_storage_keys(bao, m) for m in mounts.__dict__.values()} == before


def _id(bao: BaoServer, mount: str, name: str) -> str:
    reply = call(bao, "GET", f"{mount}/issuer/{name}")
    return reply.data.get("issuer_id", name) if reply.ok else name


def test_duplicate_serial_is_refused(bao: BaoServer, mounts: Mounts, cas: dict[str, x509.Certificate]) -> None:
    """Deliberate difference: the built-in means to refuse a repeated serial but compares pointers, so it signs a
    CRL listing the serial twice (RFC 5280 5.1.2.6: one entry per certificate)."""
    body = {"revoked_certs": [{"serial_number": "01", "revocation_time": 1},
                              {"serial_number": "00:01", "revocation_time": 2}]}
    ours, ref = _both(bao, mounts, "issuer/default/sign-revocation-list", body)
    assert ref.ok and len(list(_crl(ref))) == 2
    assert ours.status == 400
    assert ours.body["errors"] == ["duplicate serial number: 00:01, original entry 0 and 1"]


def _signed_by_ref(bao: BaoServer, mounts: Mounts, issuer: str, entries: list[dict[str, Any]]) -> str:
    return must(call(bao, "POST", f"{mounts.ref}/issuer/{issuer}/sign-revocation-list",
                     {"revoked_certs": entries}), "input CRL")["crl"]


def test_resign_crls_matches(bao: BaoServer, mounts: Mounts, cas: dict[str, x509.Certificate], tmp_path: Any) -> None:
    first = _signed_by_ref(bao, mounts, "ec-ca", [
        {"serial_number": "01", "revocation_time": 1700000000,
         "extensions": [{"id": "2.5.29.21", "value": REASON_KEY_COMPROMISE}]},
        {"serial_number": "02", "revocation_time": 1700000000},
        {"serial_number": "03", "revocation_time": 1700000000}])
    second = _signed_by_ref(bao, mounts, "ec-ca", [
        {"serial_number": "02", "revocation_time": 1600000000},     # older: wins, with a warning
        {"serial_number": "03", "revocation_time": 1800000000},     # newer: the first CRL's time stays
        {"serial_number": "04", "revocation_time": 1700000000}])
    for body in ({"crls": [first, second], "crl_number": 9, "delta_crl_base_number": 8},
                 {"crls": [first + "\n"], "format": "der", "next_update": "1h"},
                 {"crls": []}):
        ours, ref = _both(bao, mounts, "issuer/ec-ca/resign-crls", body)
        der = body.get("format") == "der"
        ours_crl, ref_crl = _crl(ours, der), _crl(ref, der)
        ours_p, ref_p = _profile(ours_crl), _profile(ref_crl)
        # The built-in lists the merged entries in map order; compare them as sets.
        assert sorted(ours_p.pop("entries")) == sorted(ref_p.pop("entries"))
        assert ours_p == ref_p
        assert sorted(ours.body.get("warnings") or []) == sorted(ref.body.get("warnings") or [])
        _openssl_verifies(ours_crl, cas["ec-ca"], tmp_path)
    merged = {r.serial_number: r for r in _crl(call(bao, "POST", f"{mounts.ours}/issuer/ec-ca/resign-crls",
                                                     {"crls": [first, second]}))}
    assert merged[2].revocation_date_utc.year == 2020 and merged[3].revocation_date_utc.year == 2023
    assert len(merged[1].extensions) == 0      # entry extensions are dropped when merging

    rsa_crl = _signed_by_ref(bao, mounts, "rsa-ca", [])
    lines = first.strip().splitlines()
    garbled = "\n".join(lines[:1] + ["AAAA"] + lines[-1:])
    for body in ({"crls": [first, rsa_crl]}, {"crls": [first + first]}, {"crls": ["garbage"]}, {"crls": [garbled]},
                 {"crls": ["junk" + first]}, {"crls": [first], "format": "x", "next_update": "0"},
                 {"crls": [first], "crl_number": -1}):
        ours, ref = _both(bao, mounts, "issuer/ec-ca/resign-crls", body)
        assert (ours.status, ours.body.get("errors")) == (ref.status, ref.body.get("errors")) \
            and ref.status == 400, body
