"""Bad issue/sign input: a clear 400 in Vault's words, and storage left exactly as it was."""
from __future__ import annotations

import datetime as dt

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from test_issue_fixtures import DAY, make_csr, new_env
from plugin.framework import Operation

ROLE = {"allowed_domains": "example.com", "allow_subdomains": True, "key_type": "ec", "allowed_user_ids": "alice",
        "allowed_serial_numbers": "SN*", "allowed_uri_sans": "https://*.example.com/*",
        "allowed_other_sans": "1.2.3.4;UTF8:ok*"}


@pytest.fixture
def env():
    e = new_env()
    e.add_issuer("ec")
    e.ok("roles/web", ROLE)
    e.ok("roles/strict", {**ROLE, "allow_ip_sans": False, "allow_wildcard_certificates": False})
    return e


@pytest.mark.parametrize("body,message", [
    ({}, 'the common_name field is required, or must be provided in a CSR with "use_csr_common_name" set to true'),
    ({"common_name": "evil.org"}, "common name evil.org not allowed by this role"),
    ({"common_name": "a\x00b.example.com"}, "contains control characters"),
    ({"common_name": "a" * 64 + ".example.com"}, f'idna: invalid label "{"a" * 64}"'),
    ({"common_name": "a.example.com", "alt_names": "b.evil.org"}, "subject alternate name b.evil.org not allowed"),
    ({"common_name": "a.example.com", "alt_names": "b..example.com"}, 'idna: invalid label "b..example.com"'),
    ({"common_name": "a.example.com", "alt_names": "me@evil.org"}, "email address me@evil.org not allowed"),
    ({"common_name": "a.example.com", "ip_sans": "300.1.1.1"}, 'the value "300.1.1.1" is not a valid IP address'),
    ({"common_name": "a.example.com", "uri_sans": "https://evil.org/x"},
     "URI Subject Alternative Names were provided via the API which are not valid for this role"),
    ({"common_name": "a.example.com", "other_sans": "1.2.3.4;UTF8:bad"}, "other SAN bad not allowed for OID 1.2.3.4"),
    ({"common_name": "a.example.com", "other_sans": "1.2.3.5;UTF8:ok"}, "other SAN OID 1.2.3.5 not allowed"),
    ({"common_name": "a.example.com", "other_sans": "1.2.3.4:ok"}, "could not parse requested other SAN"),
    ({"common_name": "a.example.com", "user_ids": "bob"}, "user_id bob is not allowed by this role"),
    ({"common_name": "a.example.com", "serial_number": "XX1"}, "serial_number XX1 not allowed by this role"),
    ({"common_name": "a.example.com", "format": "p12"},
     'the "format" path parameter must be "pem", "der", or "pem_bundle"'),
    ({"common_name": "a.example.com", "ttl": "1h", "not_after": "2030-01-01T00:00:00Z"},
     "Either ttl or not_after should be provided. Both should not be provided in the same request."),
    ({"common_name": "a.example.com", "not_after": "tomorrow"}, 'parsing time "tomorrow"'),
    ({"common_name": "a.example.com", "ttl": "87600h"}, "that is beyond the expiration of the CA certificate at"),
    ({"common_name": "a.example.com", "cert_metadata": "not base64!"}, "cert_metadata must be base64 encoded"),
    ({"common_name": "bücher.evil.org"}, "common name bücher.evil.org not allowed by this role"),
])
def test_issue_rejections(env, body, message):
    env.system.max_ttl = 100 * 365 * DAY
    assert message in env.err("issue/web", body)


@pytest.mark.parametrize("body,message", [
    ({"common_name": "*.example.com"}, "common name *.example.com not allowed by this role"),
    ({"common_name": "a.example.com", "ip_sans": "10.0.0.1"},
     "IP Subject Alternative Names are not allowed in this role, but was provided via the API"),
])
def test_strict_role_rejections(env, body, message):
    assert message in env.err("issue/strict", body)


def test_unknown_role_and_issuer(env):
    assert env.err("issue/nope", {"common_name": "a.example.com"}) == "unknown role: nope"
    assert env.err("sign/nope", {"csr": make_csr()}) == "unknown role: nope"
    assert env.err("sign-verbatim/nope", {"csr": make_csr()}) == "unknown role: nope"
    assert env.err("issuer/missing/issue/web", {"common_name": "a.example.com"}) == (
        "could not fetch the CA certificate (was one set?): unable to find PKI issuer for reference: missing")
    env.ok("roles/other", {**ROLE, "issuer_ref": "gone"})
    assert "unable to find PKI issuer for reference: gone" in env.err("issue/other", {"common_name": "a.example.com"})


def test_no_issuer_at_all():
    env = new_env()
    env.ok("roles/r", {"allow_any_name": True})
    assert env.err("issue/r", {"common_name": "a.example.com"}) == (
        "could not fetch the CA certificate (was one set?): no default issuer currently configured")


def test_issuer_without_issuing_usage():
    env = new_env()
    env.add_issuer("ec", usage={"read-only", "crl-signing"})
    env.ok("roles/r", {"allow_any_name": True, "key_type": "ec"})
    assert "requested usage issuing-certificates" in env.err("issue/r", {"common_name": "a.example.com"})


def _csr_with_bad_signature() -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    csr = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "a.example.com")])).sign(key, hashes.SHA256())
    der = bytearray(csr.public_bytes(serialization.Encoding.DER))
    der[-5] ^= 0xFF   # inside the last INTEGER of the ECDSA signature: still parses, no longer verifies
    import base64
    body = base64.encodebytes(bytes(der)).decode()
    return f"-----BEGIN CERTIFICATE REQUEST-----\n{body}-----END CERTIFICATE REQUEST-----\n"


@pytest.mark.parametrize("csr,message", [
    ("", '"csr" is empty'),
    ("garbage", "csr contains no data"),
    ("-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n",
     "certificate request could not be parsed"),
])
def test_malformed_csrs(env, csr, message):
    assert message in env.err("sign/web", {"csr": csr})


def test_badly_signed_csr(env):
    assert env.err("sign/web", {"csr": _csr_with_bad_signature()}) == "request signature invalid"


def test_csr_key_checks(env):
    rsa_csr = make_csr(rsa.generate_private_key(public_exponent=65537, key_size=2048), cn="a.example.com")
    assert env.err("sign/web", {"csr": rsa_csr}) == "role requires keys of type ec"
    env.ok("roles/big", {**ROLE, "key_bits": 384})
    small = make_csr(ec.generate_private_key(ec.SECP256R1()), cn="a.example.com")
    assert env.err("sign/big", {"csr": small}) == "role requires a minimum of a 384-bit key, but CSR's key is 256 bits"
    env.ok("roles/rsa3k", {**ROLE, "key_type": "rsa", "key_bits": 3072})
    assert env.err("sign/rsa3k", {"csr": rsa_csr}) == (
        "role requires a minimum of a 3072-bit key, but CSR's key is 2048 bits")


def test_csr_names_the_role_forbids(env):
    assert env.err("sign/web", {"csr": make_csr(cn="evil.org")}) == "common name evil.org not allowed by this role"
    csr = make_csr(cn="a.example.com", dns=["a.example.com", "x.evil.org"])
    assert env.err("sign/web", {"csr": csr}) == "subject alternate name x.evil.org not allowed by this role"
    ip_csr = make_csr(cn="a.example.com", extra=[(x509.SubjectAlternativeName(
        [x509.IPAddress(__import__("ipaddress").ip_address("10.0.0.1"))]), False)])
    assert env.err("sign/strict", {"csr": ip_csr}) == (
        "IP Subject Alternative Names are not allowed in this role, but was provided via CSR")


def test_rejected_requests_store_nothing_successful_ones_store_one_cert(env):
    before = set(env.storage.entries)
    env.ok("issue/web", {"common_name": "a.example.com"})
    added = set(env.storage.entries) - before
    assert len(added) == 1 and next(iter(added)).startswith("certs/")
