"""Differential: every role field, valid and invalid, on our mount and the built-in one (see integration/differential.py)."""
from __future__ import annotations

from typing import Any, Iterator

import pytest

from integration.differential import SPIFFE_URI, WILDCARD_DNS, Case, Pair, case_id, run_case, setup_pair, \
    teardown_pair
from integration.harness import BaoServer

WEB: dict[str, Any] = {"allowed_domains": "example.com", "allow_subdomains": True}
A = {"common_name": "a.example.com"}
MSUPN = "1.3.6.1.4.1.311.20.2.3"


def web(**fields: Any) -> dict[str, Any]:
    return {**WEB, **fields}


CASES: list[Case] = [
    # ttl / max_ttl
    Case("ttl-role-default", web(ttl="1h"), A),
    Case("ttl-above-max-ttl", web(ttl="2h", max_ttl="1h"), None, ok=False),
    Case("ttl-request-capped-by-role-max", web(max_ttl="1h"), {**A, "ttl": "5h"}),
    Case("ttl-request-capped-by-mount-max", web(), {**A, "ttl": "20000h"}),
    Case("ttl-role-seconds-int", web(ttl=3600, max_ttl=7200), A),
    Case("ttl-role-garbage", web(ttl="abc"), None, ok=False),
    Case("max-ttl-garbage", web(max_ttl="1x"), None, ok=False),
    # allow_localhost
    Case("localhost-allowed", web(), {"common_name": "localhost"}),
    Case("localhost-refused", web(allow_localhost=False), {"common_name": "localhost"}, ok=False),
    Case("localhost-subdomain", web(), {"common_name": "a.localhost"}),
    # allowed_domains, bare, subdomains
    Case("allowed-domains-second", web(allowed_domains="example.com,example.org"), {"common_name": "a.example.org"}),
    Case("allowed-domains-outside", web(), {"common_name": "a.example.net"}, ok=False),
    Case("bare-domain-allowed", web(allow_bare_domains=True), {"common_name": "example.com"}),
    Case("bare-domain-refused", web(), {"common_name": "example.com"}, ok=False),
    Case("subdomains-refused", {"allowed_domains": "example.com", "allow_bare_domains": True}, A, ok=False),
    Case("subdomain-deep", web(), {"common_name": "a.b.c.example.com"}),
    Case("allowed-domains-empty-entry", web(allowed_domains="example.com,,"), A),
    Case("allowed-domains-list-json", web(allowed_domains=["example.com", "example.net"]),
         {"common_name": "x.example.net"}),
    # globs
    Case("glob-domain-allowed", {"allowed_domains": "*.glob.example.com", "allow_glob_domains": True},
         {"common_name": "x.glob.example.com"}),
    Case("glob-domain-spans-labels", {"allowed_domains": "a*.example.com", "allow_glob_domains": True},
         {"common_name": "ab.c.example.com"}),
    Case("glob-domain-flag-off", {"allowed_domains": "*.glob.example.com"}, {"common_name": "x.glob.example.com"},
         ok=False),
    # wildcards
    Case("wildcard-default-allowed", web(), {"common_name": "*.example.com"}, lint_exempt=(WILDCARD_DNS,)),
    Case("wildcard-refused", web(allow_wildcard_certificates=False), {"common_name": "*.example.com"}, ok=False),
    Case("wildcard-partial-label", web(), {"common_name": "f*.example.com"}, lint_exempt=(WILDCARD_DNS,)),
    Case("wildcard-not-leftmost", web(), {"common_name": "a.*.example.com"}, ok=False),
    Case("wildcard-any-name-refused", {"allow_any_name": True, "allow_wildcard_certificates": False},
         {"common_name": "*.example.com"}, ok=False),
    # allow_any_name / enforce_hostnames
    Case("any-name-multi-label", {"allow_any_name": True}, {"common_name": "service.internal.test"}),
    Case("any-name-single-label", {"allow_any_name": True}, {"common_name": "myhost"}),
    Case("any-name-with-space", {"allow_any_name": True, "enforce_hostnames": False},
         {"common_name": "My Service"}),
    Case("any-name-space-enforced", {"allow_any_name": True}, {"common_name": "My Service"}, ok=False),
    Case("underscore-enforced", web(), {"common_name": "a_b.example.com"}, ok=False),
    Case("underscore-not-enforced", web(enforce_hostnames=False), {"common_name": "a_b.example.com"}),
    Case("numeric-tld-any-name", {"allow_any_name": True}, {"common_name": "host.123"}),
    # IP SANs
    Case("ip-sans-allowed", web(), {**A, "ip_sans": "10.0.0.1,::1"}),
    Case("ip-sans-refused", web(allow_ip_sans=False), {**A, "ip_sans": "10.0.0.1"}, ok=False),
    Case("ip-sans-invalid", web(), {**A, "ip_sans": "10.0.0.300"}, ok=False),
    Case("ip-cidr-inside", web(allowed_ip_sans_cidr="10.0.0.0/8"), {**A, "ip_sans": "10.1.2.3"}),
    Case("ip-cidr-outside", web(allowed_ip_sans_cidr="10.0.0.0/8"), {**A, "ip_sans": "192.168.1.1"}, ok=False),
    Case("ip-cidr-bad", web(allowed_ip_sans_cidr="10.0.0.0/33"), None, ok=False),
    Case("ip-cidr-v6", web(allowed_ip_sans_cidr="10.0.0.0/8,fd00::/8"), {**A, "ip_sans": "fd00::5"}),
    # URI SANs
    Case("uri-sans-glob", web(allowed_uri_sans="https://*.example.com/*"),
         {**A, "uri_sans": "https://svc.example.com/x"}),
    Case("uri-sans-outside", web(allowed_uri_sans="https://*.example.com/*"),
         {**A, "uri_sans": "https://svc.example.org/x"}, ok=False),
    Case("uri-sans-none-allowed", web(), {**A, "uri_sans": "https://svc.example.com/"}, ok=False),
    Case("uri-sans-spiffe", web(allowed_uri_sans="spiffe://example.org/*"),
         {**A, "uri_sans": "spiffe://example.org/ns/web"}, lint_exempt=(SPIFFE_URI,)),
    Case("uri-sans-template-no-entity", web(allowed_uri_sans="spiffe://{{identity.entity.id}}",
                                            allowed_uri_sans_template=True),
         {**A, "uri_sans": "spiffe://x"}, ok=False),
    # other SANs
    Case("other-sans-allowed", web(allowed_other_sans=f"{MSUPN};UTF8:*@example.com"),
         {**A, "other_sans": f"{MSUPN};UTF8:me@example.com"}),
    Case("other-sans-value-refused", web(allowed_other_sans=f"{MSUPN};UTF8:*@example.com"),
         {**A, "other_sans": f"{MSUPN};UTF8:me@example.org"}, ok=False),
    Case("other-sans-oid-refused", web(allowed_other_sans=f"{MSUPN};UTF8:*"),
         {**A, "other_sans": "1.2.3.4;UTF8:x"}, ok=False),
    Case("other-sans-star", web(allowed_other_sans="*"), {**A, "other_sans": "1.2.3.4;UTF8:anything"}),
    Case("other-sans-none-allowed", web(), {**A, "other_sans": f"{MSUPN};UTF8:me@example.com"}, ok=False),
    Case("other-sans-bad-role-entry", web(allowed_other_sans="garbage"), None, ok=False),
    Case("other-sans-bad-request", web(allowed_other_sans="*"), {**A, "other_sans": "1.2.3.4:nope"}, ok=False),
    # subject serial numbers and user ids
    Case("serial-number-glob", web(allowed_serial_numbers="SN-*"), {**A, "serial_number": "SN-1"}),
    Case("serial-number-refused", web(allowed_serial_numbers="SN-*"), {**A, "serial_number": "XX"}, ok=False),
    Case("serial-number-none-allowed", web(), {**A, "serial_number": "SN-1"}, ok=False),
    Case("user-ids-allowed", web(allowed_user_ids="alice,bob*"), {**A, "user_ids": "alice,bobby"}),
    Case("user-ids-refused", web(allowed_user_ids="alice"), {**A, "user_ids": "carol"}, ok=False),
    Case("user-ids-none-allowed", web(), {**A, "user_ids": "alice"}, ok=False),
    Case("user-ids-star", web(allowed_user_ids="*"), {**A, "user_ids": "anyone"}),
    # EKU flags
    Case("flags-server-only", web(client_flag=False), A),
    Case("flags-client-only", web(server_flag=False), A),
    Case("flags-none", web(server_flag=False, client_flag=False), A),
    Case("flags-code-signing", web(code_signing_flag=True), A),
    Case("flags-email-protection", web(email_protection_flag=True), A),
    # key types
    Case("key-rsa-default", web(), A),
    Case("key-rsa-3072", web(key_bits=3072), A),
    Case("key-rsa-4096", web(key_bits=4096), A),
    Case("key-rsa-8192", web(key_bits=8192), A),
    Case("key-rsa-1024", web(key_bits=1024), None, ok=False),
    Case("key-rsa-2047", web(key_bits=2047), None, ok=False),
    Case("key-ec-default", web(key_type="ec"), A),
    Case("key-ec-224", web(key_type="ec", key_bits=224), A),
    Case("key-ec-384", web(key_type="ec", key_bits=384), A),
    Case("key-ec-521", web(key_type="ec", key_bits=521), A),
    Case("key-ec-300", web(key_type="ec", key_bits=300), None, ok=False),
    Case("key-ed25519", web(key_type="ed25519"), A),
    Case("key-type-dsa", web(key_type="dsa"), None, ok=False),
    Case("key-any-without-type", web(key_type="any"), A, ok=False),
    Case("key-any-with-ec", web(key_type="any"), {**A, "key_type": "ec", "key_bits": 384}),
    Case("key-any-with-rsa", web(key_type="any"), {**A, "key_type": "rsa", "key_bits": 3072}),
    Case("key-any-bad-type", web(key_type="any"), {**A, "key_type": "dsa"}, ok=False),
    Case("key-request-ignored", web(key_type="ec"), {**A, "key_type": "rsa", "key_bits": 4096}),
    # signature bits / PSS
    Case("sig-bits-384-rsa", web(issuer_ref="rsa-root", signature_bits=384), A),
    Case("sig-bits-512-rsa", web(issuer_ref="rsa-root", signature_bits=512), A),
    Case("sig-pss-rsa", web(issuer_ref="rsa-root", use_pss=True), A),
    Case("sig-pss-384-rsa", web(issuer_ref="rsa-root", use_pss=True, signature_bits=384), A),
    Case("sig-bits-on-ec-issuer", web(signature_bits=512), A),
    Case("sig-bits-odd-value", web(signature_bits=123), A),
    Case("sig-ed25519-issuer", web(issuer_ref="ed-root", key_type="ed25519"), A),
    Case("sig-p384-issuer", web(issuer_ref="p384-root", key_type="ec"), A),
    # key usage
    Case("ku-default-ec", web(key_type="ec"), A),
    Case("ku-default-ed25519", web(key_type="ed25519"), A),
    Case("ku-digital-signature", web(key_usage="DigitalSignature"), A),
    Case("ku-encipherment-rsa", web(key_usage="KeyEncipherment,DataEncipherment"), A),
    Case("ku-encipherment-on-ec", web(key_type="ec", key_usage="KeyEncipherment,DigitalSignature"), A),
    Case("ku-agreement-encipher-only-ec", web(key_type="ec", key_usage="KeyAgreement,EncipherOnly"), A),
    Case("ku-decipher-only-rsa", web(key_usage="DigitalSignature,DecipherOnly"), A),
    Case("ku-ca-usages-on-leaf", web(key_usage="CertSign,CRLSign,DigitalSignature"), A),
    Case("ku-content-commitment", web(key_usage="ContentCommitment"), A),
    Case("ku-empty", web(key_usage=""), A),
    Case("ku-unknown-ignored", web(key_usage="Bogus,DigitalSignature"), A),
    Case("ku-lowercase", web(key_usage="digitalsignature,keyencipherment"), A),
    Case("ku-only-agreement-ed25519", web(key_type="ed25519", key_usage="KeyAgreement"), A),
    # extended key usage
    Case("eku-time-stamping", web(ext_key_usage="TimeStamping", server_flag=False, client_flag=False), A),
    Case("eku-time-stamping-mixed", web(ext_key_usage="TimeStamping"), A),
    Case("eku-ocsp-signing", web(ext_key_usage="OCSPSigning"), A),
    Case("eku-any", web(ext_key_usage="Any"), A),
    Case("eku-ipsec", web(ext_key_usage="IPSECEndSystem,IPSECTunnel,IPSECUser"), A),
    Case("eku-sgc", web(ext_key_usage="MicrosoftServerGatedCrypto,NetscapeServerGatedCrypto"), A),
    Case("eku-unknown-ignored", web(ext_key_usage="Bogus"), A),
    Case("eku-lowercase", web(ext_key_usage="codesigning", server_flag=False), A),
    Case("eku-oids", web(ext_key_usage_oids="1.3.6.1.5.5.7.3.9,1.2.3.4.5"), A),
    Case("eku-oids-invalid", web(ext_key_usage_oids="not-an-oid"), None, ok=False),
    # subject fields
    Case("subject-all-fields", web(ou="Eng,Ops", organization="Example Inc", country="DE", locality="Berlin",
                                   province="BE", street_address="Main St 1", postal_code="10115"), A),
    Case("subject-duplicates", web(ou="Eng,Eng,Ops", organization=["A", "B"]), A),
    # leases and storage
    Case("generate-lease", web(generate_lease=True), A),
    Case("no-store", web(no_store=True), A),
    Case("no-store-and-lease", web(no_store=True, generate_lease=True), A),
    # require_cn and cn_validations
    Case("require-cn-missing", web(), {"alt_names": "a.example.com"}, ok=False),
    Case("require-cn-off-sans-only", web(require_cn=False), {"alt_names": "a.example.com"}),
    Case("require-cn-off-nothing", web(require_cn=False), {}),
    Case("cn-validations-email", web(cn_validations="email", allow_bare_domains=True),
         {"common_name": "me@example.com"}),
    Case("cn-validations-hostname-email-cn", web(cn_validations="hostname"), {"common_name": "me@example.com"},
         ok=False),
    Case("cn-validations-disabled", web(cn_validations="disabled"), {"common_name": "Anything At All"}),
    Case("cn-validations-bogus", web(cn_validations="bogus"), None, ok=False),
    Case("cn-validations-disabled-mixed", web(cn_validations="disabled,email"), None, ok=False),
    # policies
    Case("policy-oid", web(policy_identifiers="1.2.3.4"), A),
    Case("policy-two-oids", web(policy_identifiers="1.2.3.4,2.5.29.32.0"), A),
    Case("policy-json-cps-notice", web(policy_identifiers='[{"oid":"1.2.3.4","cps":"https://example.com/cps",'
                                                          '"notice":"Example notice"}]'), A),
    Case("policy-bad-oid", web(policy_identifiers="not.an.oid"), None, ok=False),
    # basic constraints, not_before
    Case("basic-constraints-non-ca", web(basic_constraints_valid_for_non_ca=True), A),
    Case("not-before-duration-1h", web(not_before_duration="1h"), A),
    Case("not-before-duration-0", web(not_before_duration="0s"), A),
    Case("not-before-bound-forbid", web(not_before_bound="forbid"),
         {**A, "not_before": "2030-01-01T00:00:00Z"}, ok=False),
    # not_after on the role
    Case("role-not-after", web(not_after="2030-01-01T00:00:00Z"), A),
    Case("role-not-after-with-ttl", web(not_after="2030-01-01T00:00:00Z"), {**A, "ttl": "1h"}, ok=False),
    Case("role-not-after-garbage", web(not_after="next year"), A, ok=False),
    Case("not-after-bound-forbid", web(not_after_bound="forbid"), {**A, "not_after": "2030-01-01T00:00:00Z"},
         ok=False),
    Case("not-after-bound-permit", web(), {**A, "not_after": "2030-01-01T00:00:00Z"}),
    # issuer_ref
    Case("issuer-ref-rsa", web(issuer_ref="rsa-root", key_type="ec"), A),
    Case("issuer-ref-ed25519", web(issuer_ref="ed-root"), A),
    Case("issuer-ref-unknown", web(issuer_ref="nope"), A, ok=False),
    Case("issuer-ref-no-issuing-usage", web(issuer_ref="no-issuing"), A, ok=False),
    Case("issuer-short-err", web(issuer_ref="short-err", key_type="ec"), {**A, "ttl": "5h"}, ok=False),
    Case("issuer-short-truncate", web(issuer_ref="short-trunc", key_type="ec"), {**A, "ttl": "5h"}),
    Case("issuer-short-permit", web(issuer_ref="short-permit", key_type="ec"), {**A, "ttl": "5h"}),
    # identity templates without an entity (root token)
    Case("allowed-domains-template", {"allowed_domains": "{{identity.entity.name}}.example.com",
                                      "allowed_domains_template": True, "allow_bare_domains": True}, A, ok=False),
]


@pytest.fixture(scope="module")
def pair(bao: BaoServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    p = setup_pair(bao, tmp_path_factory.mktemp("diff-roles"))
    yield p
    teardown_pair(p)


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_role_field(pair: Pair, case: Case) -> None:
    run_case(pair, case)
