"""roles/: defaults as the built-in engine stores and reads them, overwrite vs patch, validation, warnings."""
from __future__ import annotations

import json

import pytest

from test_issue_fixtures import new_env
from plugin.framework import Operation

# GET roles/<name> after POST with an empty body on OpenBao 2.7.2's built-in engine.
BUILTIN_DEFAULT_READ = json.loads("""{"allow_any_name": false, "allow_bare_domains": false,
 "allow_glob_domains": false, "allow_globs_in_identity_templates": false, "allow_ip_sans": true,
 "allow_localhost": true, "allow_subdomains": false, "allow_token_displayname": false,
 "allow_wildcard_certificates": true, "allowed_domains": [], "allowed_domains_template": false,
 "allowed_ip_sans_cidr": [], "allowed_other_sans": [], "allowed_serial_numbers": [], "allowed_uri_sans": [],
 "allowed_uri_sans_template": false, "allowed_user_ids": [], "basic_constraints_valid_for_non_ca": false,
 "client_flag": true, "cn_validations": ["email", "hostname"], "code_signing_flag": false, "country": [],
 "email_protection_flag": false, "enforce_hostnames": true, "ext_key_usage": [], "ext_key_usage_oids": [],
 "generate_lease": false, "issuer_ref": "default", "key_bits": 2048, "key_type": "rsa",
 "key_usage": ["DigitalSignature", "KeyAgreement", "KeyEncipherment"], "locality": [], "max_ttl": 0,
 "no_store": false, "not_after": "", "not_after_bound": "permit", "not_before": "", "not_before_bound": "permit",
 "not_before_duration": 30, "organization": [], "ou": [], "policy_identifiers": [], "postal_code": [],
 "province": [], "require_cn": true, "server_flag": true, "signature_bits": 0, "street_address": [], "ttl": 0,
 "use_csr_common_name": true, "use_csr_sans": true, "use_pss": false}""")


@pytest.fixture
def env():
    e = new_env()
    e.add_issuer("ec")
    return e


def test_default_role_reads_like_builtin(env):
    written = env.ok("roles/d", {})
    assert written.data == BUILTIN_DEFAULT_READ
    assert env.ok("roles/d", op=Operation.READ).data == BUILTIN_DEFAULT_READ


def test_types_on_read_are_json_numbers_and_lists(env):
    env.ok("roles/t", {"ttl": "1h", "max_ttl": "72h", "not_before_duration": "1m", "key_type": "ec",
                       "allowed_domains": "a.com,b.com", "key_usage": ["DigitalSignature"]})
    data = env.ok("roles/t", op=Operation.READ).data
    assert (data["ttl"], data["max_ttl"], data["not_before_duration"]) == (3600, 259200, 60)
    assert data["key_bits"] == 256 and data["signature_bits"] == 0
    assert data["allowed_domains"] == ["a.com", "b.com"] and data["key_usage"] == ["DigitalSignature"]


@pytest.mark.parametrize("key_type,bits,expected", [
    ("rsa", 0, 2048), ("rsa", 3072, 3072), ("rsa", 8192, 8192), ("ec", 0, 256), ("ec", 224, 224),
    ("ec", 521, 521), ("ed25519", 0, 0), ("any", 0, 0),
])
def test_key_bits_normalised(env, key_type, bits, expected):
    assert env.ok("roles/k", {"key_type": key_type, "key_bits": bits}).data["key_bits"] == expected


@pytest.mark.parametrize("body,message", [
    ({"key_type": "rsa", "key_bits": 1024}, "RSA keys < 2048 bits are unsafe and not supported: got 1024"),
    ({"key_type": "rsa", "key_bits": 2049}, "unsupported bit length for RSA key: 2049"),
    ({"key_type": "ec", "key_bits": 512}, "unsupported bit length for EC key: 512"),
    ({"key_type": "dsa"}, "unknown key type dsa"),
    ({"ttl": "2h", "max_ttl": "1h"}, '"ttl" value must be less than "max_ttl" value'),
    ({"ext_key_usage_oids": "1.2.x"}, '"1.2.x" could not be parsed as a valid oid for an extended key usage'),
    ({"allowed_other_sans": "1.2.3;UTF8"}, "error parsing allowed_other_sans: expected a colon"),
    ({"allowed_other_sans": "1.2.3;IA5:x"}, "error parsing allowed_other_sans: only utf8 other SANs are supported"),
    ({"allowed_ip_sans_cidr": "10.0.0.0/33"}, "error parsing allowed_ip_sans_cidr: invalid CIDR address"),
    ({"not_after_bound": "sometimes"}, "Unknown value for field `not_after_bound`"),
    ({"not_before_bound": "later"}, "Unknown value for field `not_before_bound`"),
    ({"cn_validations": "email,email"}, "cn_validations value incorrect: `email` specified multiple times"),
    ({"cn_validations": "disabled,email"}, "cannot specify `disabled` along with"),
    ({"cn_validations": "dns"}, "cn_validations value incorrect: unknown type"),
    ({"policy_identifiers": "not-an-oid"}, "is neither a valid OID nor a JSON policy identifier"),
    ({"ttl": "abc"}, "Field validation failed"),
])
def test_invalid_role_rejected_and_nothing_stored(env, body, message):
    assert message in env.err("roles/bad", body)
    assert env.call(Operation.READ, "roles/bad").response is None


def test_warnings(env):
    resp = env.ok("roles/w", {"no_store": True, "generate_lease": True, "issuer_ref": "nope"})
    assert resp.warnings == [
        "Issuing Certificate was set to nope but no issuing certificate currently has that name",
        "mutually exclusive values no_store=true and generate_lease=true were both specified; no_store=true takes "
        "priority"]
    assert resp.data["generate_lease"] is False
    lease = env.ok("roles/l", {"generate_lease": True})
    assert lease.data["generate_lease"] is True and "encouraged to disable generate_lease" in lease.warnings[0]


def test_default_issuer_warning_without_ca():
    env = new_env()
    resp = env.ok("roles/x", {})
    assert resp.warnings == ["Issuing Certificate was set to default, but no default issuing certificate "
                             "(configurable at /config/issuers) is currently set"]


def test_post_is_full_overwrite_patch_merges(env):
    env.ok("roles/r", {"allowed_domains": "example.com", "allow_subdomains": True, "ttl": "1h"})
    patched = env.ok("roles/r", {"max_ttl": "2h"}, op=Operation.PATCH).data
    assert patched["allowed_domains"] == ["example.com"] and patched["allow_subdomains"] is True
    assert (patched["ttl"], patched["max_ttl"]) == (3600, 7200)
    overwritten = env.ok("roles/r", {"max_ttl": "2h"}).data
    assert overwritten["allowed_domains"] == [] and overwritten["allow_subdomains"] is False
    assert overwritten["ttl"] == 0


def test_patch_validates_merged_record(env):
    env.ok("roles/r", {"ttl": "1h"})
    assert env.err("roles/r", {"max_ttl": "30m"}, op=Operation.PATCH) == '"ttl" value must be less than "max_ttl" value'
    assert env.err("roles/missing", {"ttl": "1h"}, op=Operation.PATCH) == "Unable to fetch role entry to patch"


def test_patch_keeps_wildcard_and_lease_flags(env):
    env.ok("roles/r", {"allow_wildcard_certificates": False, "generate_lease": True})
    data = env.ok("roles/r", {"ttl": "1m"}, op=Operation.PATCH).data
    assert data["allow_wildcard_certificates"] is False and data["generate_lease"] is True


def test_list_and_delete(env):
    assert env.call(Operation.LIST, "roles/").response is None
    for name in ("b", "a", "c"):
        env.ok(f"roles/{name}", {})
    assert env.ok("roles/", op=Operation.LIST).data == {"keys": ["a", "b", "c"]}
    assert env.ok("roles/", {"after": "a", "limit": 1}, op=Operation.LIST).data == {"keys": ["b"]}
    env.call(Operation.DELETE, "roles/b")
    assert env.call(Operation.READ, "roles/b").response is None
    assert env.ok("roles/", op=Operation.LIST).data == {"keys": ["a", "c"]}


def test_policy_identifiers_as_oids_or_json(env):
    oids = env.ok("roles/p", {"policy_identifiers": "1.2.3.4,1.3.6.1.4.1.7"}).data
    assert oids["policy_identifiers"] == ["1.2.3.4", "1.3.6.1.4.1.7"]
    blob = json.dumps([{"oid": "1.2.3.4", "cps": "https://cps.example.com", "notice": "hello"}])
    stored = env.ok("roles/p", {"policy_identifiers": blob}).data["policy_identifiers"]
    assert [json.loads(s) for s in stored] == [{"oid": "1.2.3.4", "cps": "https://cps.example.com",
                                                "notice": "hello"}]


def test_cidrs_read_in_canonical_form(env):
    data = env.ok("roles/c", {"allowed_ip_sans_cidr": "10.1.2.3/8,2001:db8::1/32"}).data
    assert data["allowed_ip_sans_cidr"] == ["10.0.0.0/8", "2001:db8::/32"]


def test_cache_follows_invalidation(env):
    env.ok("roles/r", {"ttl": "1h"})
    assert env.ok("roles/r", op=Operation.READ).data["ttl"] == 3600
    # Another node rewrote the role: the server tells us through invalidate.
    raw = json.loads(env.storage.entries["role/r"].value)
    raw["ttl"] = 60
    env.storage.entries["role/r"].value = json.dumps(raw).encode()
    assert env.ok("roles/r", op=Operation.READ).data["ttl"] == 3600
    env.backend.invalidate("role/r")
    assert env.ok("roles/r", op=Operation.READ).data["ttl"] == 60


def test_no_store_metadata_shown_only_when_set(env):
    assert "no_store_metadata" not in env.ok("roles/m", {}).data
    assert env.ok("roles/m", {"no_store_metadata": True}).data["no_store_metadata"] is True
