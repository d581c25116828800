"""Issuer import, update/patch/delete rules, chains, and bad input leaving storage unchanged."""
from __future__ import annotations

import datetime as dt

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from ca_helpers import Mount, cert_of


def _self_signed(ca: bool = True, crl_sign: bool = True) -> tuple[str, str]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Imported CA")])
    now = dt.datetime.now(dt.timezone.utc)
    builder = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
               .serial_number(x509.random_serial_number()).not_valid_before(now)
               .not_valid_after(now + dt.timedelta(days=365))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
               .add_extension(x509.KeyUsage(True, False, False, False, False, ca, crl_sign, False, False),
                              critical=True))
    cert = builder.sign(key, hashes.SHA256())
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                serialization.NoEncryption()).decode()
    return cert.public_bytes(serialization.Encoding.PEM).decode(), key_pem


def test_import_bundle_maps_keys_and_deduplicates() -> None:
    mount = Mount()
    cert_pem, key_pem = _self_signed()
    first = mount.ok("write", "issuers/import/bundle", pem_bundle=key_pem + cert_pem)
    issuer_id, key_id = next(iter(first["mapping"].items()))
    assert key_id and first["imported_keys"] == [key_id] and first["imported_issuers"] == [issuer_id]
    assert mount.ok("read", "config/issuers")["default"] == issuer_id
    again = mount.ok("write", "config/ca", pem_bundle=cert_pem + key_pem)
    assert again["existing_issuers"] == [issuer_id] and again["existing_keys"] == [key_id]
    assert again["imported_issuers"] is None and again["imported_keys"] is None
    serial = cert_of(cert_pem).serial_number
    colon = ":".join(f"{b:02x}" for b in serial.to_bytes((serial.bit_length() + 7) // 8, "big"))
    info = mount.list("issuers/").data["key_info"][issuer_id]
    assert info == {"issuer_name": "", "is_default": True, "key_id": key_id, "serial_number": colon}


def test_keyless_issuer_gains_key_on_key_import_and_becomes_default() -> None:
    mount = Mount()
    cert_pem, key_pem = _self_signed()
    out = mount.ok("write", "issuers/import/cert", pem_bundle=cert_pem)
    issuer_id = out["imported_issuers"][0]
    assert out["mapping"] == {issuer_id: ""}
    assert mount.ok("read", "config/issuers")["default"] == ""
    key = mount.ok("write", "keys/import", pem_bundle=key_pem, key_name="imported")
    assert mount.ok("read", "issuer/" + issuer_id)["key_id"] == key["key_id"]
    assert mount.ok("read", "config/issuers")["default"] == issuer_id
    dup = mount.write("keys/import", pem_bundle=key_pem)
    assert dup.status == 200 and dup.data["key_id"] == key["key_id"] and dup.warnings


def test_bad_imports_are_refused_and_change_nothing() -> None:
    mount = Mount()
    mount.root()
    cert_pem, key_pem = _self_signed()
    leaf_pem, _ = _self_signed(ca=False)
    before = mount.storage.snapshot()
    cases = {
        ("issuers/import/cert", key_pem + cert_pem): "private keys found in the PEM bundle but not allowed",
        ("intermediate/set-signed", key_pem + cert_pem): "private keys found",
        ("issuers/import/bundle", "short"): "too short",
        ("issuers/import/bundle", cert_pem + "garbage-garbage-garbage"): "invalid PEM data",
        ("issuers/import/bundle", leaf_pem): "Refusing to import non-CA certificate",
        ("issuers/import/bundle", key_pem + leaf_pem): "Refusing to import non-CA certificate",
    }
    for (path, body), expected in cases.items():
        field = "certificate" if path == "intermediate/set-signed" else "pem_bundle"
        reply = mount.write(path, **{field: body})
        assert reply.status == 400 and expected in reply.error, (path, reply.data)
    assert mount.storage.snapshot() == before


def test_unknown_issuer_reference_answers_500_on_reads_and_400_on_signing() -> None:
    mount = Mount()
    mount.root()
    for path in ("issuer/nope", "issuer/nope/json", "issuer/nope/pem"):
        reply = mount.read(path)
        assert reply.status == 500 and reply.error == "unable to find PKI issuer for reference: nope"
    before = mount.storage.snapshot()
    other = Mount()
    csr = other.ok("write", "intermediate/generate/internal", common_name="I", key_type="ec")["csr"]
    reply = mount.write("issuer/nope/sign-intermediate", csr=csr)
    assert reply.status == 400 and "unable to find PKI issuer for reference: nope" in reply.error
    assert mount.storage.snapshot() == before


def test_issuer_raw_reads() -> None:
    mount = Mount()
    root = mount.root(issuer_name="r1")
    pem = mount.read("issuer/r1/pem")
    assert pem.data["http_content_type"] == "application/pem-certificate-chain"
    assert pem.data["http_raw_body"].decode().endswith("-----END CERTIFICATE-----\n")
    der = mount.read("issuer/r1/der")
    assert der.data["http_content_type"] == "application/pkix-cert"
    assert x509.load_der_x509_certificate(der.data["http_raw_body"]) == cert_of(root["certificate"])
    js = mount.ok("read", "issuer/r1/json")
    assert set(js) == {"certificate", "ca_chain", "issuer_id", "issuer_name"} and js["issuer_name"] == "r1"
    assert mount.read("ca/pem").data["http_raw_body"].decode() == root["certificate"]
    assert mount.read("ca").data["http_raw_body"] == der.data["http_raw_body"]


def test_no_issuer_raw_reads_are_empty_204() -> None:
    mount = Mount()
    for path in ("ca", "ca/pem", "ca_chain"):
        reply = mount.read(path)
        assert reply.status == 204 and reply.data["http_raw_body"] == b""


def test_issuer_update_is_full_overwrite_and_patch_is_partial() -> None:
    mount = Mount()
    root = mount.root(issuer_name="named")
    path = "issuer/" + root["issuer_id"]
    read = mount.ok("read", path)
    assert read["usage"] == "crl-signing,issuing-certificates,ocsp-signing,read-only"
    assert read["revocation_signature_algorithm"] == "ECDSAWithSHA256" and read["manual_chain"] is None
    patched = mount.ok("patch", path, leaf_not_after_behavior="truncate", issuing_certificates=["http://a/ca"])
    assert patched["issuer_name"] == "named" and patched["leaf_not_after_behavior"] == "truncate"
    assert patched["issuing_certificates"] == ["http://a/ca"] and patched["enable_aia_url_templating"] is False
    posted = mount.ok("write", path, usage="read-only,crl-signing")
    assert posted["issuer_name"] == "" and posted["leaf_not_after_behavior"] == "err"
    assert posted["usage"] == "crl-signing,read-only" and posted["revocation_signature_algorithm"] == ""
    assert posted["issuing_certificates"] == [] and "enable_aia_url_templating" not in posted


def test_issuer_without_issuing_usage_cannot_sign() -> None:
    mount = Mount()
    root = mount.root()
    mount.ok("patch", "issuer/" + root["issuer_id"], usage="read-only,crl-signing,ocsp-signing")
    other = Mount()
    csr = other.ok("write", "intermediate/generate/internal", common_name="I", key_type="ec")["csr"]
    before = mount.storage.snapshot()
    reply = mount.write("root/sign-intermediate", csr=csr)
    assert reply.status == 400
    assert "requested usage issuing-certificates" in reply.error and "crl-signing,ocsp-signing,read-only" in reply.error
    assert mount.storage.snapshot() == before


def test_issuer_update_validation() -> None:
    mount = Mount()
    root = mount.root(issuer_name="a")
    mount.root(common_name="B", issuer_name="b")
    path = "issuer/" + root["issuer_id"]
    before = mount.storage.snapshot()
    cases = [
        ({"issuer_name": "b"}, "issuer name already in use"),
        ({"issuer_name": "default"}, "reserved keyword 'default'"),
        ({"leaf_not_after_behavior": "sometimes"}, "leaf_not_after_behavior"),
        ({"usage": "read-only,everything"}, "Unable to parse specified usages"),
        ({"revocation_signature_algorithm": "SHA256WithRSA"}, "unable to use issuer of type ECDSA"),
        ({"revocation_signature_algorithm": "md5"}, "Unknown signature algorithm value"),
        ({"issuing_certificates": "not a url"}, "invalid URL found"),
        ({"manual_chain": "b"}, "expected first cert in chain to be a self-reference"),
    ]
    for body, expected in cases:
        reply = mount.patch(path, **body)
        assert reply.status == 400 and expected in reply.error, (body, reply.data)
    assert mount.storage.snapshot() == before


def test_crl_signing_usage_needs_the_key_usage_bit() -> None:
    mount = Mount()
    cert_pem, key_pem = _self_signed(crl_sign=False)
    issuer_id = mount.ok("write", "issuers/import/bundle", pem_bundle=cert_pem + key_pem)["imported_issuers"][0]
    assert mount.ok("read", "issuer/" + issuer_id)["usage"] == "issuing-certificates,ocsp-signing,read-only"
    reply = mount.patch("issuer/" + issuer_id, usage="read-only,crl-signing")
    assert reply.status == 400 and "lacks the CRLSign KeyUsage" in reply.error


def test_manual_chain_overrides_computed_chain() -> None:
    mount = Mount()
    a = mount.root(common_name="A")
    b = mount.root(common_name="B")
    chained = mount.ok("patch", "issuer/" + a["issuer_id"], manual_chain=["self", b["issuer_id"]])
    assert chained["manual_chain"] == [a["issuer_id"], b["issuer_id"]]
    assert [cert_of(p) for p in chained["ca_chain"]] == [cert_of(a["certificate"]), cert_of(b["certificate"])]
    cleared = mount.ok("patch", "issuer/" + a["issuer_id"], manual_chain=[])
    assert len(cleared["ca_chain"]) == 1 and cleared["manual_chain"] is None


def test_issuer_and_key_deletion_rules() -> None:
    mount = Mount()
    root = mount.root()
    in_use = mount.delete("key/" + root["key_id"])
    assert in_use.status == 400
    assert in_use.error == f"Failed to Delete Key.  Key in Use by Issuer: {root['issuer_id']}"
    unknown = mount.delete("issuer/unknown")
    assert unknown.status == 200 and unknown.data is None
    assert mount.delete("key/unknown").status == 204
    gone = mount.delete("issuer/default")
    assert gone.status == 200 and gone.data is None and any("this was configured as the default issuer" in w for w in gone.warnings)
    assert mount.ok("read", "config/issuers")["default"] == ""
    deleted = mount.delete("key/" + root["key_id"])
    assert deleted.status == 200 and "default key" in deleted.warnings[0]
    assert mount.list("keys/").status == 404
    assert not [k for k in mount.storage.entries if k.startswith("config/key/")]


def test_set_signed_pem_bundle_then_reimport_reports_existing() -> None:
    root, child = Mount(), Mount()
    root.root()
    csr = child.ok("write", "intermediate/generate/internal", common_name="I", key_type="ec")["csr"]
    bundle = root.ok("write", "root/sign-intermediate", csr=csr, format="pem_bundle")["certificate"]
    child.ok("write", "intermediate/set-signed", certificate=bundle)
    again = child.ok("write", "intermediate/set-signed", certificate=bundle)
    assert again["imported_issuers"] is None and len(again["existing_issuers"]) == 2
