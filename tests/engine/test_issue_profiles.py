"""issue/sign/sign-verbatim: certificate profile, response shape, key types, formats; pkilint on a representative set."""
from __future__ import annotations

import base64
import json

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, ExtensionOID, NameOID

from test_issue_fixtures import load_cert, lint_errors, make_csr, new_env
from plugin.framework import Operation

ISSUE_KEYS = {"ca_chain", "certificate", "expiration", "issuing_ca", "not_before", "private_key",
              "private_key_type", "serial_number"}
SIGN_KEYS = ISSUE_KEYS - {"private_key", "private_key_type"}


@pytest.fixture(params=["ec", "rsa", "ed25519"])
def env(request):
    e = new_env()
    e.issuer = e.add_issuer(request.param)
    return e


def ku(cert):
    return cert.extensions.get_extension_for_class(x509.KeyUsage).value


def ext(cert, cls):
    try:
        return cert.extensions.get_extension_for_class(cls)
    except x509.ExtensionNotFound:
        return None


@pytest.mark.parametrize("key_type,bits,cls,size", [
    ("ec", 256, ec.EllipticCurvePublicKey, 256), ("ec", 384, ec.EllipticCurvePublicKey, 384),
    ("ec", 521, ec.EllipticCurvePublicKey, 521), ("ec", 224, ec.EllipticCurvePublicKey, 224),
    ("ed25519", 0, ed25519.Ed25519PublicKey, None), ("rsa", 2048, rsa.RSAPublicKey, 2048),
])
def test_issue_each_key_type(env, key_type, bits, cls, size):
    env.ok("roles/web", {"allowed_domains": "example.com", "allow_subdomains": True, "key_type": key_type,
                         "key_bits": bits})
    resp = env.ok("issue/web", {"common_name": "a.example.com", "ttl": "1h"})
    assert set(resp.data) == ISSUE_KEYS and resp.warnings == []
    cert = load_cert(resp.data["certificate"])
    assert isinstance(cert.public_key(), cls)
    if size:
        assert cert.public_key().key_size == size
    assert resp.data["private_key_type"] == key_type
    key = serialization.load_pem_private_key(resp.data["private_key"].encode(), None)
    assert key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo) \
        == cert.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    label = {"rsa": "RSA PRIVATE KEY", "ec": "EC PRIVATE KEY", "ed25519": "PRIVATE KEY"}[key_type]
    assert resp.data["private_key"].startswith(f"-----BEGIN {label}-----")
    assert not resp.data["private_key"].endswith("\n") and not resp.data["certificate"].endswith("\n")
    # The response's numbers are the certificate's.
    assert resp.data["expiration"] == int(cert.not_valid_after_utc.timestamp())
    assert resp.data["not_before"] == int(cert.not_valid_before_utc.timestamp())
    assert resp.data["serial_number"] == ":".join(f"{b:02x}" for b in
                                                  cert.serial_number.to_bytes((cert.serial_number.bit_length() + 7) // 8, "big"))
    assert resp.data["ca_chain"] == [resp.data["issuing_ca"]]
    cert.verify_directly_issued_by(env.issuer.certificate)
    assert lint_errors(cert) == ""


@pytest.mark.parametrize("key_type,usages", [
    ("ec", {"digital_signature", "key_agreement"}),
    ("rsa", {"digital_signature", "key_encipherment"}),
    ("ed25519", {"digital_signature"}),
])
def test_default_key_usages_filtered_by_key_type(key_type, usages):
    env = new_env()
    env.add_issuer("ec")
    env.ok("roles/r", {"allow_any_name": True, "key_type": key_type})
    cert = load_cert(env.ok("issue/r", {"common_name": "a.example.com"}).data["certificate"])
    k = ku(cert)
    names = {"digital_signature", "content_commitment", "key_encipherment", "data_encipherment", "key_agreement",
             "key_cert_sign", "crl_sign"}
    assert {n for n in names if getattr(k, n)} == usages
    assert cert.extensions.get_extension_for_class(x509.KeyUsage).critical


def test_default_profile(env):
    env.ok("roles/r", {"allowed_domains": "example.com", "allow_subdomains": True, "key_type": "ec",
                       "organization": "Org,Org", "ou": "Unit", "country": "US"})
    cert = load_cert(env.ok("issue/r", {"common_name": "a.example.com", "alt_names": "b.example.com,a.example.com",
                                        "ip_sans": "10.0.0.1,::1"}).data["certificate"])
    assert cert.subject.rfc4514_string() == "CN=a.example.com,OU=Unit,O=Org,C=US"
    san = ext(cert, x509.SubjectAlternativeName)
    assert san.value.get_values_for_type(x509.DNSName) == ["a.example.com", "b.example.com"]
    assert [str(i) for i in san.value.get_values_for_type(x509.IPAddress)] == ["10.0.0.1", "::1"]
    assert not san.critical
    assert ext(cert, x509.ExtendedKeyUsage).value == x509.ExtendedKeyUsage(
        [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH])
    assert ext(cert, x509.BasicConstraints) is None
    aki = ext(cert, x509.AuthorityKeyIdentifier).value
    assert aki.key_identifier == ext(env.issuer.certificate, x509.SubjectKeyIdentifier).value.digest
    assert ext(cert, x509.SubjectKeyIdentifier).value == x509.SubjectKeyIdentifier.from_public_key(cert.public_key())
    assert lint_errors(cert) == ""


@pytest.mark.parametrize("flags,ekus", [
    ({"server_flag": True, "client_flag": False}, [ExtendedKeyUsageOID.SERVER_AUTH]),
    ({"server_flag": False, "client_flag": True}, [ExtendedKeyUsageOID.CLIENT_AUTH]),
    ({"server_flag": False, "client_flag": False, "code_signing_flag": True}, [ExtendedKeyUsageOID.CODE_SIGNING]),
    ({"server_flag": False, "client_flag": False, "email_protection_flag": True},
     [ExtendedKeyUsageOID.EMAIL_PROTECTION]),
    ({"server_flag": False, "client_flag": False, "ext_key_usage": "TimeStamping,bogus",
      "ext_key_usage_oids": "1.3.6.1.4.1.99999.1"},
     [ExtendedKeyUsageOID.TIME_STAMPING, x509.ObjectIdentifier("1.3.6.1.4.1.99999.1")]),
    ({"server_flag": False, "client_flag": False}, None),
])
def test_ext_key_usages(flags, ekus):
    env = new_env()
    env.add_issuer("ec")
    env.ok("roles/r", {"allow_any_name": True, "key_type": "ec", **flags})
    cert = load_cert(env.ok("issue/r", {"common_name": "a.example.com"}).data["certificate"])
    got = ext(cert, x509.ExtendedKeyUsage)
    assert (list(got.value) if got else None) == ekus
    assert lint_errors(cert) == ""


def test_basic_constraints_policies_and_subject_attributes():
    env = new_env()
    env.add_issuer("ec")
    policies = json.dumps([{"oid": "1.3.6.1.4.1.99999.999.1", "cps": "https://cps.example.com/cps",
                            "notice": "Test notice"}, {"oid": "2.23.140.1.2.1"}])
    env.ok("roles/r", {"allow_any_name": True, "key_type": "ec", "basic_constraints_valid_for_non_ca": True,
                       "policy_identifiers": policies, "allowed_serial_numbers": "SN*",
                       "allowed_user_ids": "alice", "street_address": "1 Main St", "postal_code": "12345",
                       "locality": "Town", "province": "State"})
    cert = load_cert(env.ok("issue/r", {"common_name": "a.example.com", "serial_number": "SN42",
                                        "user_ids": "alice"}).data["certificate"])
    bc = ext(cert, x509.BasicConstraints)
    assert bc.critical and bc.value.ca is False
    pol = ext(cert, x509.CertificatePolicies).value
    assert [p.policy_identifier.dotted_string for p in pol] == ["1.3.6.1.4.1.99999.999.1", "2.23.140.1.2.1"]
    assert pol[0].policy_qualifiers[0] == "https://cps.example.com/cps"
    assert pol[0].policy_qualifiers[1].explicit_text == "Test notice"
    assert cert.subject.get_attributes_for_oid(NameOID.SERIAL_NUMBER)[0].value == "SN42"
    assert cert.subject.get_attributes_for_oid(NameOID.USER_ID)[0].value == "alice"
    assert cert.subject.get_attributes_for_oid(NameOID.STREET_ADDRESS)[0].value == "1 Main St"
    assert lint_errors(cert) == ""


def test_uri_email_and_other_sans():
    env = new_env()
    env.add_issuer("ec")
    env.ok("roles/r", {"allowed_domains": "example.com", "allow_subdomains": True, "allow_bare_domains": True,
                       "key_type": "ec", "allowed_uri_sans": "https://svc.example.org/*",
                       "allowed_other_sans": "1.3.6.1.4.1.311.20.2.3;UTF8:*@example.com",
                       "email_protection_flag": True})
    cert = load_cert(env.ok("issue/r", {
        "common_name": "me@example.com", "uri_sans": "https://svc.example.org/x",
        "other_sans": "1.3.6.1.4.1.311.20.2.3;UTF8:me@example.com", "alt_names": "a.example.com"}).data["certificate"])
    san = ext(cert, x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.RFC822Name) == ["me@example.com"]
    assert san.get_values_for_type(x509.DNSName) == ["a.example.com"]
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == ["https://svc.example.org/x"]
    other = san.get_values_for_type(x509.OtherName)[0]
    assert other.type_id.dotted_string == "1.3.6.1.4.1.311.20.2.3" and other.value.endswith(b"me@example.com")
    assert lint_errors(cert) == ""


@pytest.mark.parametrize("cn,dns", [
    ("a.example.com", ["a.example.com"]),
    ("*.example.com", ["*.example.com"]),
    ("localhost", []),              # not RFC 5280 preferred syntax: stays in the subject only (documented)
    ("bücher.example.com", ["xn--bcher-kva.example.com"]),
])
def test_cn_copied_into_sans_only_when_a_valid_dns_name(cn, dns):
    env = new_env()
    env.add_issuer("ec")
    env.ok("roles/r", {"allowed_domains": "example.com", "allow_subdomains": True, "key_type": "ec"})
    cert = load_cert(env.ok("issue/r", {"common_name": cn}).data["certificate"])
    san = ext(cert, x509.SubjectAlternativeName)
    assert (san.value.get_values_for_type(x509.DNSName) if san else []) == dns
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == cn


def test_exclude_cn_from_sans():
    env = new_env()
    env.add_issuer("ec")
    env.ok("roles/r", {"allowed_domains": "example.com", "allow_subdomains": True, "key_type": "ec"})
    cert = load_cert(env.ok("issue/r", {"common_name": "a.example.com", "exclude_cn_from_sans": "true",
                                        "alt_names": "b.example.com"}).data["certificate"])
    assert ext(cert, x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName) == ["b.example.com"]


@pytest.mark.parametrize("bits,hash_name,pss", [(0, "sha256", False), (384, "sha384", False),
                                                 (512, "sha512", True), (123, "sha256", False)])
def test_rsa_issuer_signature_bits_and_pss(bits, hash_name, pss):
    env = new_env()
    env.add_issuer("rsa")
    env.ok("roles/r", {"allow_any_name": True, "key_type": "ec", "signature_bits": bits, "use_pss": pss})
    cert = load_cert(env.ok("issue/r", {"common_name": "a.example.com"}).data["certificate"])
    assert cert.signature_hash_algorithm.name == hash_name
    assert (cert.signature_algorithm_oid.dotted_string == "1.2.840.113549.1.1.10") is pss


def test_ec_issuer_hash_follows_curve_on_issue_but_signature_bits_on_sign():
    env = new_env()
    env.add_issuer("ec384")
    env.ok("roles/r", {"allow_any_name": True, "key_type": "ec", "signature_bits": 256})
    issued = load_cert(env.ok("issue/r", {"common_name": "a.example.com"}).data["certificate"])
    assert issued.signature_hash_algorithm.name == "sha384"
    signed = load_cert(env.ok("sign/r", {"csr": make_csr(cn="a.example.com")}).data["certificate"])
    assert signed.signature_hash_algorithm.name == "sha256"


def test_formats_der_and_pem_bundle_and_pkcs8():
    env = new_env()
    env.add_issuer("ec")
    env.ok("roles/r", {"allow_any_name": True, "key_type": "ec"})
    der = env.ok("issue/r", {"common_name": "a.example.com", "format": "der"}).data
    cert = x509.load_der_x509_certificate(base64.b64decode(der["certificate"]))
    assert base64.b64decode(der["issuing_ca"]) == env.issuer_cert_der if hasattr(env, "issuer_cert_der") else True
    serialization.load_der_private_key(base64.b64decode(der["private_key"]), None)
    assert [base64.b64decode(c) for c in der["ca_chain"]] == [base64.b64decode(der["issuing_ca"])]
    assert cert.serial_number

    bundle = env.ok("issue/r", {"common_name": "a.example.com", "format": "pem_bundle"}).data
    blocks = bundle["certificate"].split("-----END")
    assert bundle["certificate"].startswith("-----BEGIN EC PRIVATE KEY-----") and len(blocks) == 4
    assert bundle["certificate"].endswith(bundle["issuing_ca"])

    p8 = env.ok("issue/r", {"common_name": "a.example.com", "private_key_format": "pkcs8"}).data
    assert p8["private_key"].startswith("-----BEGIN PRIVATE KEY-----")


def test_remove_roots_from_chain_omits_ca_chain():
    env = new_env()
    env.add_issuer("ec")
    env.ok("roles/r", {"allow_any_name": True, "key_type": "ec"})
    data = env.ok("issue/r", {"common_name": "a.example.com", "remove_roots_from_chain": "true"}).data
    assert "ca_chain" not in data and data["issuing_ca"]


def test_sign_uses_csr_names_and_warns_on_request_names():
    env = new_env()
    env.add_issuer("ec")
    env.ok("roles/r", {"allowed_domains": "example.com", "allow_subdomains": True, "key_type": "ec"})
    csr = make_csr(cn="app.example.com", dns=["app.example.com", "www.example.com"])
    resp = env.ok("sign/r", {"csr": csr, "common_name": "x.example.com", "alt_names": "y.example.com",
                             "ip_sans": "", "uri_sans": "", "ttl": "24h0m0s", "exclude_cn_from_sans": "true"})
    assert set(resp.data) == SIGN_KEYS
    assert resp.warnings == [
        'the common_name field was provided but the role is set with "use_csr_common_name" set to true',
        'the alt_names field was provided but the role is set with "use_csr_sans" set to true']
    cert = load_cert(resp.data["certificate"])
    assert cert.subject.rfc4514_string() == "CN=app.example.com"
    assert ext(cert, x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName) == \
        ["app.example.com", "www.example.com"]
    assert cert.not_valid_after_utc - cert.not_valid_before_utc == __import__("datetime").timedelta(hours=24, seconds=30)


def test_sign_without_csr_values():
    env = new_env()
    env.add_issuer("ec")
    env.ok("roles/r", {"allowed_domains": "example.com", "allow_subdomains": True, "key_type": "ec",
                       "use_csr_common_name": False, "use_csr_sans": False})
    cert = load_cert(env.ok("sign/r", {"csr": make_csr(cn="csr.example.com", dns=["csr.example.com"]),
                                       "common_name": "req.example.com"}).data["certificate"])
    assert cert.subject.rfc4514_string() == "CN=req.example.com"
    assert ext(cert, x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName) == ["req.example.com"]


def test_consul_leaf_empty_subject_uri_san():
    """Consul's leaf role and CSR: key_type any, require_cn false, only a SPIFFE URI SAN."""
    env = new_env()
    env.add_issuer("ec")
    env.ok("roles/leaf-cert", {"allow_any_name": True, "allowed_uri_sans": "spiffe://*", "key_type": "any",
                               "max_ttl": "72h0m0s", "no_store": True, "require_cn": False})
    uri = "spiffe://11111111-2222-3333-4444-555555555555.consul/ns/default/dc/dc1/svc/web"
    csr = make_csr(cn=None, extra=[(x509.SubjectAlternativeName([x509.UniformResourceIdentifier(uri)]), True)])
    resp = env.ok("sign/leaf-cert", {"csr": csr, "ttl": "72h0m0s"})
    assert set(resp.data) == SIGN_KEYS
    cert = load_cert(resp.data["certificate"])
    assert len(cert.subject) == 0
    san = ext(cert, x509.SubjectAlternativeName)
    assert san.critical and san.value.get_values_for_type(x509.UniformResourceIdentifier) == [uri]
    assert env.call(Operation.LIST, "certs/").response is None     # no_store
    # pkilint's URI check knows only common schemes and flags spiffe:// (valid RFC 3986); nothing else is reported.
    findings = [line for line in lint_errors(cert).splitlines() if "(ERROR)" in line]
    assert findings == [line for line in findings if "pkix.invalid_uri_syntax" in line and "spiffe://" in line]


@pytest.mark.parametrize("csr_key", [
    ec.generate_private_key(ec.SECP384R1()), ed25519.Ed25519PrivateKey.generate(),
])
def test_sign_any_role_accepts_each_key_type(csr_key):
    env = new_env()
    env.add_issuer("ec")
    env.ok("roles/any", {"allow_any_name": True, "key_type": "any"})
    cert = load_cert(env.ok("sign/any", {"csr": make_csr(csr_key, cn="a.example.com")}).data["certificate"])
    assert lint_errors(cert) == ""


def test_sign_verbatim_copies_csr_subject_and_extensions():
    env = new_env()
    env.add_issuer("ec")
    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Verbatim Org")]
    csr = make_csr(cn="verbatim.example.org", dns=["verbatim.example.org"], attrs=attrs, extra=[
        (x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), False),
        (x509.BasicConstraints(ca=True, path_length=None), True)])
    resp = env.ok("sign-verbatim", {"csr": csr, "ttl": "1h"})
    assert set(resp.data) == SIGN_KEYS
    assert resp.warnings == ["specified CSR contained a Basic Constraints extension that was ignored during issuance"]
    cert = load_cert(resp.data["certificate"])
    assert cert.subject == x509.load_pem_x509_csr(csr.encode()).subject
    assert list(ext(cert, x509.ExtendedKeyUsage).value) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert ext(cert, x509.BasicConstraints) is None
    assert ku(cert).digital_signature and ku(cert).key_agreement and not ku(cert).key_encipherment
    assert lint_errors(cert) == ""


def test_sign_verbatim_with_role_takes_its_lifetime_and_storage():
    env = new_env()
    env.add_issuer("ec")
    env.ok("roles/short", {"ttl": "2h", "max_ttl": "3h", "no_store": True})
    cert = load_cert(env.ok("sign-verbatim/short", {"csr": make_csr(cn="x")}).data["certificate"])
    assert (cert.not_valid_after_utc - cert.not_valid_before_utc).total_seconds() == 2 * 3600 + 30
    assert env.call(Operation.LIST, "certs/").response is None


def test_issuer_path_selects_issuer():
    env = new_env()
    first = env.add_issuer("ec", name="first")
    second = env.add_issuer("rsa", name="second", default=False)
    env.ok("roles/r", {"allow_any_name": True, "key_type": "ec"})
    via_default = load_cert(env.ok("issue/r", {"common_name": "a.example.com"}).data["certificate"])
    assert via_default.issuer == first.certificate.subject
    for ref in ("second", second.id):
        via_path = load_cert(env.ok(f"issuer/{ref}/issue/r", {"common_name": "a.example.com"}).data["certificate"])
        assert via_path.issuer == second.certificate.subject
    signed = load_cert(env.ok("issuer/second/sign/r", {"csr": make_csr(cn="a.example.com")}).data["certificate"])
    assert signed.issuer == second.certificate.subject
    verbatim = load_cert(env.ok("issuer/second/sign-verbatim/r", {"csr": make_csr()}).data["certificate"])
    assert verbatim.issuer == second.certificate.subject
    # Without the issuer in the path the role's issuer_ref decides; a body issuer_ref is ignored.
    env.ok("roles/r2", {"allow_any_name": True, "key_type": "ec", "issuer_ref": "second"})
    cert = load_cert(env.ok("issue/r2", {"common_name": "a.example.com", "issuer_ref": "first"}).data["certificate"])
    assert cert.issuer == second.certificate.subject


def test_issue_with_any_role_needs_key_type():
    env = new_env()
    env.add_issuer("ec")
    env.ok("roles/any", {"allow_any_name": True, "key_type": "any"})
    assert env.err("issue/any", {"common_name": "a.example.com"}) == (
        'role key type "any" not allowed for issuing certificates without providing key_type and/or key_bits '
        'request parameters')
    resp = env.ok("issue/any", {"common_name": "a.example.com", "key_type": "ec", "key_bits": 384})
    assert load_cert(resp.data["certificate"]).public_key().key_size == 384
    env.ok("roles/ec", {"allow_any_name": True, "key_type": "ec"})
    warned = env.ok("issue/ec", {"common_name": "a.example.com", "key_type": "rsa"})
    assert warned.warnings == ["parameters key_type and key_bits ignored as role had specific values"]


def test_generate_lease_returns_a_secret():
    env = new_env()
    env.add_issuer("ec")
    env.ok("roles/l", {"allow_any_name": True, "key_type": "ec", "generate_lease": True})
    resp = env.ok("issue/l", {"common_name": "a.example.com", "ttl": "1h"})
    assert resp.secret is not None and not resp.secret.renewable
    assert resp.secret.internal_data == {"secret_type": "pki", "serial_number": resp.data["serial_number"]}
    assert 3500 < resp.secret.ttl <= 3600
    assert "pki" in env.backend.secret_types


def test_aia_urls_from_issuer():
    import asyncio
    from engine.urls import AiaUrls
    env = new_env()
    rec = env.add_issuer("ec")
    ctx = env.backend.pki_context
    rec2 = rec.copy(aia=AiaUrls(issuing_certificates=["http://ca.example.com/ca"],
                                crl_distribution_points=["http://ca.example.com/crl"],
                                ocsp_servers=["http://ocsp.example.com"],
                                delta_crl_distribution_points=["http://ca.example.com/delta"]))
    asyncio.run(ctx.issuers(env.storage).put(rec2))
    env.ok("roles/r", {"allow_any_name": True, "key_type": "ec"})
    cert = load_cert(env.ok("issue/r", {"common_name": "a.example.com"}).data["certificate"])
    aia = ext(cert, x509.AuthorityInformationAccess).value
    assert {(d.access_method.dotted_string, d.access_location.value) for d in aia} == {
        ("1.3.6.1.5.5.7.48.1", "http://ocsp.example.com"), ("1.3.6.1.5.5.7.48.2", "http://ca.example.com/ca")}
    assert ext(cert, x509.CRLDistributionPoints).value[0].full_name[0].value == "http://ca.example.com/crl"
    assert ext(cert, x509.FreshestCRL).value[0].full_name[0].value == "http://ca.example.com/delta"
    assert lint_errors(cert) == ""
