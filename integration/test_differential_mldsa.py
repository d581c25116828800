"""Differential: ML-DSA (FIPS 204) issuers and leaves, ours vs the built-in (OpenBao 2.7.2), and cross-verification.

key_type=mldsa takes key_bits 44, 65 or 87 (0 means 44), on CA generation, roles and `any`-role requests.
Debian 12's openssl (3.0) cannot verify ML-DSA, so signatures are checked twice: with pyca/cryptography (OpenSSL 3.5+
inside), and by the built-in's own Go code: our ML-DSA root is imported into a built-in mount, which must accept it,
verify our leaf's signature (revocation by PEM checks it against the mount's issuers) and our CRL's signature
(resign-crls refuses CRLs the issuer did not sign). The built-in's ML-DSA certificates must verify with ours.
"""
from __future__ import annotations

import base64
import urllib.parse
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import mldsa
from cryptography.x509 import ocsp
from cryptography.x509.oid import NameOID

from integration.conftest import Mounts
from integration.differential import Reply, call, must
from integration.harness import BaoServer, unique_name

MLDSA_OIDS = {44: "2.16.840.1.101.3.4.3.17", 65: "2.16.840.1.101.3.4.3.18", 87: "2.16.840.1.101.3.4.3.19"}
KEY_CLASSES = {44: mldsa.MLDSA44PublicKey, 65: mldsa.MLDSA65PublicKey, 87: mldsa.MLDSA87PublicKey}


def _both(bao: BaoServer, mounts: Mounts, method: str, path: str, body: dict[str, Any] | None = None
          ) -> tuple[Reply, Reply]:
    return call(bao, method, f"{mounts.ours}/{path}", body), call(bao, method, f"{mounts.ref}/{path}", body)


def _cert(pem: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate(pem.encode())


@pytest.mark.parametrize("key_bits, level", [(0, 44), (44, 44), (65, 65), (87, 87), (2, None), (2048, None)])
def test_root_generation_matches(bao: BaoServer, mounts: Mounts, key_bits: int, level: int | None) -> None:
    body = {"common_name": "ML-DSA Root", "key_type": "mldsa", "key_bits": key_bits, "ttl": "48h"}
    ours, ref = _both(bao, mounts, "POST", "root/generate/internal", body)
    if level is None:
        assert (ours.status, ours.body.get("errors")) == (ref.status, ref.body.get("errors")) == \
            (400, [f"unsupported bit length for ML-DSA key: {key_bits}"])
        return
    assert ours.ok and ref.ok, (ours.describe(), ref.describe())
    assert sorted(ours.data) == sorted(ref.data)
    for reply in ours, ref:
        cert = _cert(reply.data["certificate"])
        assert cert.signature_algorithm_oid.dotted_string == MLDSA_OIDS[level]
        assert isinstance(cert.public_key(), KEY_CLASSES[level])
        cert.verify_directly_issued_by(cert)
    ours_issuer, ref_issuer = _both(bao, mounts, "GET", "issuer/default")
    assert ours_issuer.data["revocation_signature_algorithm"] == ref_issuer.data["revocation_signature_algorithm"] \
        == f"MLDSA{level}"
    ours_key, ref_key = _both(bao, mounts, "GET", f"key/{ours_issuer.data['key_id']}")
    assert ours_key.data["key_type"] == "mldsa"


@pytest.mark.parametrize("role", [{"key_type": "mldsa"}, {"key_type": "mldsa", "key_bits": 87},
                                  {"key_type": "mldsa", "key_bits": 384}, {"key_type": "mldsa", "key_bits": 2048}],
                         ids=["default", "87", "bad-384", "bad-2048"])
def test_role_key_params_match(bao: BaoServer, mounts: Mounts, role: dict[str, Any]) -> None:
    ours, ref = _both(bao, mounts, "POST", "roles/r", {"allow_any_name": True, **role})
    assert ours.status == ref.status, (ours.describe(), ref.describe())
    if ref.ok:
        assert (ours.data["key_type"], ours.data["key_bits"]) == (ref.data["key_type"], ref.data["key_bits"])
    else:
        assert ours.body["errors"] == ref.body["errors"]


def _setup(bao: BaoServer, mount: str, level: int) -> x509.Certificate:
    data = must(call(bao, "POST", f"{mount}/root/generate/internal",
                     {"common_name": "ML-DSA CA", "key_type": "mldsa", "key_bits": level, "ttl": "48h"}), "root")
    must(call(bao, "POST", f"{mount}/roles/ml", {"allow_any_name": True, "key_type": "mldsa", "key_bits": 65,
                                                  "ttl": "1h"}), "role")
    must(call(bao, "POST", f"{mount}/roles/any", {"allow_any_name": True, "key_type": "any", "ttl": "1h"}), "any")
    return _cert(data["certificate"])


@pytest.mark.parametrize("level", [44, 87])
def test_leaves_csrs_crls_and_ocsp(bao: BaoServer, mounts: Mounts, level: int) -> None:
    roots = {m: _setup(bao, m, level) for m in (mounts.ours, mounts.ref)}
    ours, ref = _both(bao, mounts, "POST", "issue/ml", {"common_name": "leaf.example.com"})
    assert ours.ok and ref.ok, (ours.describe(), ref.describe())
    assert sorted(ours.data) == sorted(ref.data)
    assert ours.data["private_key_type"] == ref.data["private_key_type"] == "mldsa"
    for mount, reply in zip((mounts.ours, mounts.ref), (ours, ref)):
        leaf = _cert(reply.data["certificate"])
        leaf.verify_directly_issued_by(roots[mount])
        assert isinstance(leaf.public_key(), mldsa.MLDSA65PublicKey)
        key = serialization.load_pem_private_key(reply.data["private_key"].encode(), None)
        assert reply.data["private_key"].startswith("-----BEGIN PRIVATE KEY-----")      # PKCS#8, as the built-in
        assert key.public_key() == leaf.public_key()

    # An `any` role takes key_type/key_bits from the request; a CSR with an ML-DSA key is signed.
    ours, ref = _both(bao, mounts, "POST", "issue/any", {"common_name": "a.example.com", "key_type": "mldsa",
                                                           "key_bits": 87})
    assert ours.ok and ref.ok, (ours.describe(), ref.describe())
    assert isinstance(_cert(ours.data["certificate"]).public_key(), mldsa.MLDSA87PublicKey)
    csr_key = mldsa.MLDSA44PrivateKey.generate()
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "csr.example.com")]))
           .sign(csr_key, None).public_bytes(serialization.Encoding.PEM).decode())
    ours, ref = _both(bao, mounts, "POST", "sign/any", {"csr": csr, "common_name": "csr.example.com"})
    assert ours.ok and ref.ok, (ours.describe(), ref.describe())
    assert _cert(ours.data["certificate"]).public_key() == csr_key.public_key()

    # Intermediate CSRs with ML-DSA keys, signed by the ML-DSA root.
    for mount in mounts.ours, mounts.ref:
        inter = must(call(bao, "POST", f"{mount}/intermediate/generate/internal",
                          {"common_name": "ML-DSA Intermediate", "key_type": "mldsa", "key_bits": 65}), "int")
        req = x509.load_pem_x509_csr(inter["csr"].encode())
        assert req.is_signature_valid and req.signature_algorithm_oid.dotted_string == MLDSA_OIDS[65]
        signed = must(call(bao, "POST", f"{mount}/root/sign-intermediate", {"csr": inter["csr"], "ttl": "2h"}),
                      "sign-intermediate")
        _cert(signed["certificate"]).verify_directly_issued_by(roots[mount])

    # CRLs signed by the ML-DSA issuer, and OCSP answers signed by it.
    for mount in mounts.ours, mounts.ref:
        leaf_pem = must(call(bao, "POST", f"{mount}/issue/ml", {"common_name": "revoked.example.com"}), "leaf")
        leaf = _cert(leaf_pem["certificate"])
        must(call(bao, "POST", f"{mount}/revoke", {"serial_number": leaf_pem["serial_number"]}), "revoke")
        crl = x509.load_pem_x509_crl(bao.http("GET", f"{mount}/crl/pem").content)
        assert crl.signature_algorithm_oid.dotted_string == MLDSA_OIDS[level]
        assert crl.is_signature_valid(roots[mount].public_key())
        assert crl.get_revoked_certificate_by_serial_number(leaf.serial_number) is not None
        request = ocsp.OCSPRequestBuilder().add_certificate(leaf, roots[mount], hashes.SHA1()).build()
        encoded = base64.b64encode(request.public_bytes(serialization.Encoding.DER)).decode()
        resp = bao.http("GET", f"{mount}/ocsp/{urllib.parse.quote(encoded, safe='')}")
        answer = ocsp.load_der_ocsp_response(resp.content)
        if mount == mounts.ref:
            # Deliberate difference: the built-in's OCSP library cannot sign with ML-DSA; it answers internalError.
            assert (resp.status_code, answer.response_status) == (500, ocsp.OCSPResponseStatus.INTERNAL_ERROR)
            continue
        assert answer.response_status == ocsp.OCSPResponseStatus.SUCCESSFUL
        assert answer.certificate_status == ocsp.OCSPCertStatus.REVOKED
        assert answer.signature_algorithm_oid.dotted_string == MLDSA_OIDS[level]
        roots[mount].public_key().verify(answer.signature, answer.tbs_response_bytes)


def test_builtin_accepts_our_mldsa_ca(bao: BaoServer, mounts: Mounts) -> None:
    """Our ML-DSA CA, leaf and CRL verified by the built-in's Go code, and the built-in's leaf by ours."""
    data = must(call(bao, "POST", f"{mounts.ours}/root/generate/exported",
                     {"common_name": "Our ML-DSA Root", "key_type": "mldsa", "key_bits": 65, "ttl": "48h"}), "root")
    root = _cert(data["certificate"])
    must(call(bao, "POST", f"{mounts.ours}/roles/ml", {"allow_any_name": True, "key_type": "mldsa", "ttl": "1h"}),
         "role")
    leaf = must(call(bao, "POST", f"{mounts.ours}/issue/ml", {"common_name": "ours.example.com"}), "leaf")
    must(call(bao, "POST", f"{mounts.ours}/revoke", {"serial_number": leaf["serial_number"]}), "revoke")
    our_crl = bao.http("GET", f"{mounts.ours}/crl/pem").text

    other = unique_name("refml")
    bao.enable_builtin_mount(other)
    try:
        imported = must(call(bao, "POST", f"{other}/config/ca",
                             {"pem_bundle": data["certificate"] + "\n" + data["private_key"]}), "import into built-in")
        assert imported["imported_issuers"] and imported["imported_keys"]
        # revoke by PEM: the built-in checks the certificate's signature against the mount's issuers.
        revoked = call(bao, "POST", f"{other}/revoke", {"certificate": leaf["certificate"]})
        assert revoked.ok, revoked.describe()
        # resign-crls: the built-in checks our CRL's signature with the issuer's key before merging it.
        resigned = call(bao, "POST", f"{other}/issuer/default/resign-crls", {"crls": [our_crl]})
        assert resigned.ok, resigned.describe()
        merged = x509.load_pem_x509_crl(resigned.data["crl"].encode())
        assert merged.is_signature_valid(root.public_key())
        assert merged.get_revoked_certificate_by_serial_number(_cert(leaf["certificate"]).serial_number)
        must(call(bao, "POST", f"{other}/roles/ml", {"allow_any_name": True, "key_type": "mldsa", "ttl": "1h"}), "r")
        theirs = must(call(bao, "POST", f"{other}/issue/ml", {"common_name": "theirs.example.com"}), "their leaf")
        _cert(theirs["certificate"]).verify_directly_issued_by(root)
    finally:
        bao.disable_mount(other)

    # And the other way: the built-in's exported ML-DSA CA imported into ours signs leaves that verify.
    ref_root = must(call(bao, "POST", f"{mounts.ref}/root/generate/exported",
                         {"common_name": "Their ML-DSA Root", "key_type": "mldsa", "key_bits": 87, "ttl": "48h"}),
                    "their root")
    fresh = unique_name("pkiml")
    bao.enable_plugin_mount(fresh)
    try:
        must(call(bao, "POST", f"{fresh}/config/ca",
                  {"pem_bundle": ref_root["certificate"] + "\n" + ref_root["private_key"]}), "import into ours")
        must(call(bao, "POST", f"{fresh}/roles/ml", {"allow_any_name": True, "key_type": "mldsa", "ttl": "1h"}), "r")
        ours_leaf = must(call(bao, "POST", f"{fresh}/issue/ml", {"common_name": "x.example.com"}), "leaf")
        _cert(ours_leaf["certificate"]).verify_directly_issued_by(_cert(ref_root["certificate"]))
        revoked = call(bao, "POST", f"{mounts.ref}/revoke", {"certificate": ours_leaf["certificate"]})
        assert revoked.ok, revoked.describe()       # the built-in verified our signature under its own CA
    finally:
        bao.disable_mount(fresh)
