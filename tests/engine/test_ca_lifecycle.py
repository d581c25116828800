"""CA lifecycle through the HTTP-level API: seed 000 steps 1-3, root profiles, output formats, rotation."""
from __future__ import annotations

import base64

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtensionOID, NameOID

from ca_helpers import Mount, cert_of, lint_errors


def test_seed_000_root_and_intermediate_via_csr() -> None:
    pki, pki_int = Mount(), Mount()
    root = pki.ok("write", "root/generate/internal", common_name="My Organization Root CA",
                  issuer_name="root-2026", ttl="87600h", key_type="rsa", key_bits=4096)
    assert set(root) == {"certificate", "issuing_ca", "serial_number", "expiration", "issuer_id", "issuer_name",
                         "key_id", "key_name"}
    assert root["issuer_name"] == "root-2026" and isinstance(root["expiration"], int)
    root_cert = cert_of(root["certificate"])
    assert root_cert.public_key().key_size == 4096
    assert root["expiration"] == int(root_cert.not_valid_after_utc.timestamp())
    assert root["serial_number"] == ":".join(f"{b:02x}" for b in root_cert.serial_number.to_bytes(
        (root_cert.serial_number.bit_length() + 7) // 8, "big"))
    pki.ok("write", "config/urls", issuing_certificates="https://vault.example.com:8200/v1/pki/ca",
           crl_distribution_points="https://vault.example.com:8200/v1/pki/crl")

    csr_resp = pki_int.ok("write", "intermediate/generate/internal", common_name="My Organization Intermediate CA",
                          key_type="ec", key_bits=384)
    assert set(csr_resp) == {"csr", "key_id"}
    signed = pki.ok("write", "root/sign-intermediate", csr=csr_resp["csr"], format="pem_bundle", ttl="43800h")
    assert set(signed) == {"certificate", "issuing_ca", "ca_chain", "serial_number", "expiration"}
    bundle_blocks = signed["certificate"].count("BEGIN CERTIFICATE")
    assert bundle_blocks == 2   # the new intermediate, then the root
    inter = cert_of(signed["certificate"])
    assert signed["ca_chain"][0].startswith("-----BEGIN CERTIFICATE-----") and len(signed["ca_chain"]) == 2
    assert cert_of(signed["ca_chain"][0]) == inter and cert_of(signed["ca_chain"][1]) == root_cert
    assert signed["issuing_ca"] == root["certificate"]
    # The root mount's URLs went into the intermediate; the root signed it with SHA-256 (RSA default).
    aia = inter.extensions.get_extension_for_class(x509.AuthorityInformationAccess).value
    assert [d.access_location.value for d in aia] == ["https://vault.example.com:8200/v1/pki/ca"]
    assert inter.signature_hash_algorithm.name == "sha256"
    # The signed intermediate and the root are in the root mount's certificate store.
    assert pki.read("cert/" + signed["serial_number"]).status == 200
    assert pki.read("cert/" + root["serial_number"].replace(":", "-")).status == 200

    imported = pki_int.ok("write", "intermediate/set-signed", certificate=signed["certificate"])
    mapping = imported["mapping"]
    assert len(mapping) == 2 and sorted(mapping.values()) == ["", csr_resp["key_id"]]
    assert len(imported["imported_issuers"]) == 2 and imported["existing_issuers"] is None
    int_id = next(i for i, k in mapping.items() if k)
    cfg = pki_int.ok("read", "config/issuers")
    assert cfg["default"] == int_id   # the issuer with a key becomes the default, not the key-less root

    issuer = pki_int.ok("read", "issuer/default")
    assert [cert_of(p) for p in issuer["ca_chain"]] == [inter, root_cert]
    assert all(p.endswith("\n") for p in issuer["ca_chain"])
    raw_chain = pki_int.read("ca_chain")
    assert raw_chain.status == 200 and raw_chain.data["http_content_type"] == "application/pkix-cert"
    assert raw_chain.data["http_raw_body"].decode().count("BEGIN CERTIFICATE") == 2
    assert not raw_chain.data["http_raw_body"].decode().endswith("\n")
    json_chain = pki_int.ok("read", "cert/ca_chain")
    assert json_chain["certificate"] == json_chain["ca_chain"] == raw_chain.data["http_raw_body"].decode()
    assert lint_errors(root_cert) == ""
    assert lint_errors(inter) == ""


def test_root_profile_is_lint_clean_even_for_non_hostname_cn() -> None:
    mount = Mount()
    cert = cert_of(mount.root(common_name="root")["certificate"])
    assert lint_errors(cert) == ""
    with pytest.raises(x509.ExtensionNotFound):
        cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    ku = cert.extensions.get_extension_for_class(x509.KeyUsage)
    assert ku.critical and ku.value.key_cert_sign and ku.value.crl_sign and not ku.value.digital_signature
    bc = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert bc.critical and bc.value.ca and bc.value.path_length is None
    ski = cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    assert cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value.key_identifier == ski


def test_root_with_dns_cn_sans_pathlen_and_usages() -> None:
    mount = Mount()
    resp = mount.write("root/generate/internal", common_name="ca.example.com", key_type="ec",
                       alt_names="alt.example.com,ops@example.com", ip_sans="10.0.0.1", max_path_length=0,
                       key_usage="DigitalSignature,KeyEncipherment", ext_key_usage="ServerAuth",
                       permitted_dns_domains="example.com", ou="Ops", organization="Example", country="US",
                       ttl="8760h")
    assert resp.status == 200
    assert any("Max path length" in w for w in resp.warnings)
    cert = cert_of(resp.data["certificate"])
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["ca.example.com", "alt.example.com"]
    assert san.get_values_for_type(x509.RFC822Name) == ["ops@example.com"]
    assert [str(i) for i in san.get_values_for_type(x509.IPAddress)] == ["10.0.0.1"]
    ku = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert ku.digital_signature and not ku.key_encipherment
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.path_length == 0
    nc = cert.extensions.get_extension_for_class(x509.NameConstraints)
    assert nc.critical and [n.value for n in nc.value.permitted_subtrees] == ["example.com"]
    assert cert.subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)[0].value == "Ops"
    assert lint_errors(cert) == ""


def test_root_ttl_defaults_to_mount_default_and_caps_at_max() -> None:
    mount = Mount()
    mount.system.max_ttl = 3600 * 24
    resp = mount.write("root/generate/internal", common_name="Capped", key_type="ec", ttl="48h")
    assert resp.status == 200
    assert 'TTL "48h0m0s" is longer than permitted maxTTL "24h0m0s", so maxTTL is being used' in resp.warnings
    cert = cert_of(resp.data["certificate"])
    life = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert abs(life.total_seconds() - (86400 + 30)) <= 2
    both = mount.write("root/generate/internal", common_name="x", key_type="ec", ttl="1h",
                       not_after="2030-01-01T00:00:00Z")
    assert both.status == 400 and "Either ttl or not_after" in both.error


def test_exported_root_returns_matching_key_in_each_format() -> None:
    mount = Mount()
    pem = mount.ok("write", "root/generate/exported", common_name="Exported", key_type="ec", key_bits=384)
    assert pem["private_key_type"] == "ec" and pem["private_key"].startswith("-----BEGIN EC PRIVATE KEY-----")
    key = serialization.load_pem_private_key(pem["private_key"].encode(), None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    assert cert_of(pem["certificate"]).public_key() == key.public_key()
    assert cert_of(pem["certificate"]).signature_hash_algorithm.name == "sha384"   # by curve

    bundle = Mount().ok("write", "root/generate/exported", common_name="B", key_type="ec", format="pem_bundle")
    assert bundle["certificate"].startswith(bundle["private_key"] + "\n-----BEGIN CERTIFICATE")
    der = Mount().ok("write", "root/generate/exported", common_name="D", key_type="ed25519", format="der",
                     private_key_format="pkcs8")
    x509.load_der_x509_certificate(base64.b64decode(der["certificate"]))
    serialization.load_der_private_key(base64.b64decode(der["private_key"]), None)
    assert der["private_key_type"] == "ed25519"


def test_internal_root_never_returns_the_key() -> None:
    mount = Mount()
    data = mount.root(format="pem_bundle")
    assert "private_key" not in data and "PRIVATE KEY" not in data["certificate"]
    for path in ("key/default", "issuer/default", "issuer/default/json"):
        assert "PRIVATE KEY" not in str(mount.read(path).data)


def test_root_on_existing_key_and_key_param_conflicts() -> None:
    mount = Mount()
    key = mount.ok("write", "keys/generate/internal", key_type="ec", key_name="ca-key")
    before = mount.storage.snapshot()
    bad = mount.write("root/generate/existing", common_name="x", key_ref="ca-key", key_type="ec")
    assert bad.status == 400 and "key_type nor key_bits" in bad.error
    assert mount.storage.snapshot() == before
    root = mount.ok("write", "root/generate/existing", common_name="On Existing", key_ref="ca-key")
    assert root["key_id"] == key["key_id"] and root["key_name"] == "ca-key"
    assert mount.list("keys/").data["keys"] == [key["key_id"]]


def test_rotate_names_next_and_replace_moves_default() -> None:
    mount = Mount()
    first = mount.root(issuer_name="current")
    nxt = mount.ok("write", "root/rotate/internal", common_name="Example Root CA G2", key_type="ec")
    assert nxt["issuer_name"] == "next"
    assert mount.ok("read", "config/issuers")["default"] == first["issuer_id"]
    replaced = mount.ok("write", "root/replace")
    assert replaced == {"default": nxt["issuer_id"], "default_follows_latest_issuer": False}
    third = mount.ok("write", "root/rotate/internal", common_name="G3", key_type="ec")
    assert third["issuer_name"] == ""   # "next" is taken


def test_default_follows_latest_issuer() -> None:
    mount = Mount()
    first = mount.root()
    second = mount.root(common_name="Second")
    assert mount.ok("read", "config/issuers")["default"] == first["issuer_id"]
    mount.ok("write", "config/issuers", default=first["issuer_id"], default_follows_latest_issuer=True)
    third = mount.root(common_name="Third")
    assert mount.ok("read", "config/issuers")["default"] == third["issuer_id"]
    assert second["issuer_id"] != third["issuer_id"]


def test_sign_intermediate_profile_and_pathlen_rules() -> None:
    root_mount, child = Mount(), Mount()
    root_mount.root(max_path_length=1)
    csr = child.ok("write", "intermediate/generate/internal", common_name="Int", key_type="ec")["csr"]
    signed = root_mount.ok("write", "root/sign-intermediate", csr=csr, ttl="8760h",
                           key_usage="DigitalSignature")
    cert = cert_of(signed["certificate"])
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.path_length == 0
    assert cert.extensions.get_extension_for_class(x509.KeyUsage).value.digital_signature
    issuer_ski = cert_of(root_mount.ok("read", "issuer/default")["certificate"]).extensions \
        .get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    assert cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value.key_identifier == issuer_ski
    assert lint_errors(cert) == ""
    # A signer with path length zero cannot sign further CAs.
    child.ok("write", "intermediate/set-signed", certificate=signed["certificate"])
    grandchild = Mount()
    csr2 = grandchild.ok("write", "intermediate/generate/internal", common_name="Int2", key_type="ec")["csr"]
    before = child.storage.snapshot()
    refused = child.write("root/sign-intermediate", csr=csr2)
    assert refused.status == 400 and "max path length of zero" in refused.error
    assert child.storage.snapshot() == before


def test_sign_intermediate_use_csr_values_and_skid() -> None:
    root_mount, child = Mount(), Mount()
    root_mount.root()
    csr = child.ok("write", "intermediate/generate/internal", common_name="from-csr.example.com",
                   key_type="ec", add_basic_constraints=True, organization="CSR Org")["csr"]
    signed = root_mount.ok("write", "root/sign-intermediate", csr=csr, use_csr_values=True,
                           common_name="ignored.example.com", skid="01:02:03:04")
    cert = cert_of(signed["certificate"])
    assert cert.subject == x509.load_pem_x509_csr(csr.encode()).subject
    assert cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest == b"\x01\x02\x03\x04"
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca


def test_empty_common_name_takes_the_csr_cn() -> None:
    root_mount, child = Mount(), Mount()
    root_mount.root()
    csr = child.ok("write", "intermediate/generate/internal", common_name="int.example.com", key_type="ec")["csr"]
    cert = cert_of(root_mount.ok("write", "root/sign-intermediate", csr=csr)["certificate"])
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "int.example.com"


def test_exported_intermediate_and_rsa_csr() -> None:
    mount = Mount()
    data = mount.ok("write", "intermediate/generate/exported", common_name="I", key_type="rsa", format="pem_bundle")
    assert data["private_key_type"] == "rsa" and data["csr"].startswith(data["private_key"])
    key = serialization.load_pem_private_key(data["private_key"].encode(), None)
    assert isinstance(key, rsa.RSAPrivateKey) and key.key_size == 2048
    csr = x509.load_pem_x509_csr(data["csr"].split("-----END RSA PRIVATE KEY-----\n")[1].encode())
    assert csr.is_signature_valid and csr.public_key() == key.public_key()


def test_sign_self_issued_replaces_aki_and_keeps_the_rest() -> None:
    signer, other = Mount(), Mount()
    signer.root(common_name="Signer")
    self_issued = other.root(common_name="Other Root")["certificate"]
    resp = signer.ok("write", "root/sign-self-issued", certificate=self_issued)
    original, resigned = cert_of(self_issued), cert_of(resp["certificate"])
    assert resigned.serial_number == original.serial_number and resigned.subject == original.subject
    signer_cert = cert_of(signer.ok("read", "issuer/default")["certificate"])
    assert resigned.issuer == signer_cert.subject
    aki = resigned.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value.key_identifier
    assert aki == signer_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    resigned.verify_directly_issued_by(signer_cert)
    not_ca = signer.write("root/sign-self-issued", certificate=resp["certificate"])
    assert not_ca.status == 400 and "not self-issued" in not_ca.error


def test_cross_signed_chain_includes_both_roots() -> None:
    a, b = Mount(), Mount()
    a_root = a.root(common_name="Root A")
    b_root = b.root(common_name="Root B")
    b_key = b.ok("read", "key/default")
    csr = b.ok("write", "intermediate/cross-sign", common_name="Root B", key_ref=b_root["key_id"])["csr"]
    cross = a.ok("write", "root/sign-intermediate", csr=csr, use_csr_values=True, skid=b_key["subject_key_id"],
                 format="pem_bundle")
    out = b.ok("write", "intermediate/set-signed", certificate=cross["certificate"])
    assert sorted(out["mapping"].values()) == ["", b_root["key_id"]]
    chain = [cert_of(p) for p in b.ok("read", "issuer/" + b_root["issuer_id"])["ca_chain"]]
    assert chain[0] == cert_of(b_root["certificate"])
    assert cert_of(cross["certificate"]) in chain
    assert cert_of(a_root["certificate"]) in chain
    cert_ext = cert_of(cross["certificate"]).extensions
    assert cert_ext.get_extension_for_oid(ExtensionOID.SUBJECT_KEY_IDENTIFIER).value.digest == \
        cert_of(b_root["certificate"]).extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest


def test_delete_root_removes_every_issuer_and_key() -> None:
    mount = Mount()
    mount.root()
    mount.ok("write", "keys/generate/internal", key_type="ec")
    resp = mount.delete("root")
    assert resp.status == 200 and resp.warnings and resp.data is None
    assert mount.list("issuers/").status == 404 and mount.list("keys/").status == 404
    assert mount.read("ca").status == 204
    assert mount.ok("read", "config/issuers")["default"] == ""
