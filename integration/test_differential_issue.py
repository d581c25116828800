"""Differential: issue/sign request parameters, CSRs, sign-verbatim and issuer-scoped paths, ours vs the built-in."""
from __future__ import annotations

from typing import Any, Iterator

import pytest
from cryptography.x509.oid import ExtendedKeyUsageOID

from integration.differential import WILDCARD_DNS, Case, Csr, Pair, case_id, run_case, setup_pair, teardown_pair
from integration.harness import BaoServer

WEB: dict[str, Any] = {"allowed_domains": "example.com", "allow_subdomains": True}
ANY: dict[str, Any] = {"allow_any_name": True, "key_type": "any"}
A = {"common_name": "a.example.com"}


def web(**fields: Any) -> dict[str, Any]:
    return {**WEB, **fields}


def sign(name: str, role: dict[str, Any] | None, csr: Csr, ok: bool = True, path: str = "sign/{role}",
         **request: Any) -> Case:
    return Case(name, role, request, ok=ok, path=path, csr=csr)


CASES: list[Case] = [
    # alt_names, SAN handling
    Case("alt-names-two", web(), {**A, "alt_names": "b.example.com,c.example.com"}),
    Case("alt-names-duplicates", web(), {**A, "alt_names": "b.example.com, b.example.com ,a.example.com"}),
    Case("alt-names-email", web(allow_bare_domains=True), {**A, "alt_names": "me@example.com"}),
    Case("alt-names-not-allowed", web(), {**A, "alt_names": "b.example.org"}, ok=False),
    Case("alt-names-idn", web(), {**A, "alt_names": "bücher.example.com"}),
    Case("alt-names-wildcard", web(), {**A, "alt_names": "*.example.com"}, lint_exempt=(WILDCARD_DNS,)),
    Case("exclude-cn-from-sans", web(), {**A, "exclude_cn_from_sans": True, "alt_names": "b.example.com"}),
    Case("exclude-cn-only", web(), {**A, "exclude_cn_from_sans": True}),
    Case("cn-email-to-email-san", web(allow_bare_domains=True, cn_validations="email,hostname"),
         {"common_name": "me@example.com"}),
    Case("cn-uppercase", web(), {"common_name": "A.Example.COM"}, ok=False),
    Case("cn-uppercase-bare", web(allow_bare_domains=True), {"common_name": "EXAMPLE.com"}),
    Case("ip-sans-list", web(), {**A, "ip_sans": ["10.0.0.1", "2001:db8::1"]}),
    Case("uri-sans-two", web(allowed_uri_sans="https://*"),
         {**A, "uri_sans": "https://a.example.com/x,https://b.example.com/y"}),
    Case("other-sans-utf8-type", web(allowed_other_sans="*"), {**A, "other_sans": "1.2.3.4;utf-8:lower"}),
    # ttl / not_after
    Case("ttl-seconds", web(), {**A, "ttl": 600}),
    Case("ttl-minutes", web(), {**A, "ttl": "90m"}),
    Case("ttl-garbage", web(), {**A, "ttl": "soon"}, ok=False),
    Case("ttl-and-not-after", web(), {**A, "ttl": "1h", "not_after": "2030-01-01T00:00:00Z"}, ok=False),
    Case("not-after-garbage", web(), {**A, "not_after": "2030-13-01"}, ok=False),
    Case("not-after-past-issuer", web(), {**A, "not_after": "2099-01-01T00:00:00Z"}, ok=False),
    Case("not-after-past-mount-max", web(), {**A, "not_after": "2033-01-01T00:00:00Z"}),
    Case("not-before-request", web(), {**A, "not_before": "2026-01-01T00:00:00Z"}),
    # formats
    Case("format-der", web(), {**A, "format": "der"}),
    Case("format-pem-bundle", web(), {**A, "format": "pem_bundle"}),
    Case("format-bogus", web(), {**A, "format": "p12"}, ok=False),
    Case("private-key-pkcs8", web(), {**A, "private_key_format": "pkcs8"}),
    Case("private-key-pkcs8-der", web(key_type="ec"), {**A, "private_key_format": "pkcs8", "format": "der"}),
    Case("private-key-der-pem", web(key_type="ed25519"), {**A, "private_key_format": "der"}),
    Case("remove-roots-from-chain", web(), {**A, "remove_roots_from_chain": True}),
    Case("unknown-request-field", web(), {**A, "no_such_field": "x"}),
    Case("cert-metadata", web(), {**A, "cert_metadata": "aGVsbG8="}),
    # issuer-scoped paths
    Case("issuer-path-rsa", web(), A, path="issuer/rsa-root/issue/{role}"),
    Case("issuer-path-default", web(), A, path="issuer/default/issue/{role}"),
    Case("issuer-path-unknown", web(), A, ok=False, path="issuer/nope/issue/{role}"),
    Case("issuer-path-no-issuing", web(), A, ok=False, path="issuer/no-issuing/issue/{role}"),
    Case("issue-unknown-role", None, A, ok=False, path="issue/no-such-role"),
    # sign: CSR contents against the role
    sign("sign-ec-csr", web(key_type="ec"), Csr("ec-256", "s.example.com", dns=("t.example.com",))),
    sign("sign-rsa-csr", web(), Csr("rsa-2048", "s.example.com")),
    sign("sign-rsa-3072-min-2048", web(), Csr("rsa-3072", "s.example.com")),
    sign("sign-rsa-below-role-min", web(key_bits=3072), Csr("rsa-2048", "s.example.com"), ok=False),
    sign("sign-rsa-1024", web(), Csr("rsa-1024", "s.example.com"), ok=False),
    sign("sign-key-type-mismatch", web(key_type="ec"), Csr("rsa-2048", "s.example.com"), ok=False),
    sign("sign-ed25519-csr", web(key_type="ed25519"), Csr("ed25519", "s.example.com")),
    sign("sign-any-role-ec-384", {**ANY}, Csr("ec-384", "s.example.com")),
    sign("sign-any-role-ec-224", {**ANY}, Csr("ec-224", "s.example.com")),
    sign("sign-any-role-ed25519", {**ANY}, Csr("ed25519", "s.example.com")),
    sign("sign-ec-521", web(key_type="ec", key_bits=256), Csr("ec-521", "s.example.com")),
    sign("sign-ec-below-min", web(key_type="ec", key_bits=384), Csr("ec-256", "s.example.com"), ok=False),
    sign("sign-cn-forbidden", web(key_type="ec"), Csr("ec-256", "s.example.org"), ok=False),
    sign("sign-san-forbidden", web(key_type="ec"), Csr("ec-256", "s.example.com", dns=("x.example.org",)),
         ok=False),
    sign("sign-csr-ip-refused", web(key_type="ec", allow_ip_sans=False),
         Csr("ec-256", "s.example.com", ips=("10.0.0.1",)), ok=False),
    sign("sign-csr-ip-cidr-outside", web(key_type="ec", allowed_ip_sans_cidr="10.0.0.0/8"),
         Csr("ec-256", "s.example.com", ips=("192.168.0.1",)), ok=False),
    sign("sign-csr-uri-refused", web(key_type="ec"), Csr("ec-256", "s.example.com", uris=("https://x/",)),
         ok=False),
    sign("sign-csr-email", web(key_type="ec", allow_bare_domains=True),
         Csr("ec-256", "s.example.com", emails=("me@example.com",))),
    sign("sign-use-csr-cn-off", web(key_type="ec", use_csr_common_name=False),
         Csr("ec-256", "csr.example.com"), common_name="req.example.com"),
    sign("sign-use-csr-sans-off", web(key_type="ec", use_csr_sans=False),
         Csr("ec-256", "s.example.com", dns=("csr.example.com",)), alt_names="req.example.com"),
    sign("sign-csr-no-cn-request-cn", web(key_type="ec"), Csr("ec-256"), common_name="req.example.com"),
    sign("sign-csr-no-cn-required", web(key_type="ec"), Csr("ec-256"), ok=False),
    sign("sign-csr-ku-ignored", web(key_type="ec"),
         Csr("ec-256", "s.example.com", key_usage=("digital_signature", "key_cert_sign"))),
    sign("sign-p384-issuer-sig-bits-256", web(key_type="ec", issuer_ref="p384-root", signature_bits=256),
         Csr("ec-256", "s.example.com")),
    sign("sign-rsa-issuer-pss", web(issuer_ref="rsa-root", use_pss=True, key_type="ec"),
         Csr("ec-256", "s.example.com")),
    sign("sign-ttl-capped", web(key_type="ec", max_ttl="2h"), Csr("ec-256", "s.example.com"), ttl="10h"),
    sign("sign-format-der", web(key_type="ec"), Csr("ec-256", "s.example.com"), format="der"),
    sign("sign-tampered-csr", web(key_type="ec"), Csr("ec-256", "s.example.com", tamper=True), ok=False),
    sign("sign-issuer-path", web(key_type="ec"), Csr("ec-256", "s.example.com"),
         path="issuer/rsa-root/sign/{role}"),
    Case("sign-csr-garbage", web(), {"csr": "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n"
                                            "-----END CERTIFICATE REQUEST-----"}, ok=False, path="sign/{role}"),
    Case("sign-csr-empty", web(), {"csr": ""}, ok=False, path="sign/{role}"),
    # sign-verbatim
    sign("verbatim-no-role", None, Csr("ec-256", "v.example.org", dns=("v.example.org",), organization="Org"),
         path="sign-verbatim"),
    sign("verbatim-csr-extensions", None,
         Csr("ec-256", "v.example.org", dns=("v.example.org",), key_usage=("digital_signature",),
             eku=(ExtendedKeyUsageOID.CLIENT_AUTH,)), path="sign-verbatim"),
    sign("verbatim-request-eku", None, Csr("rsa-2048", "v.example.org", dns=("v.example.org",)),
         path="sign-verbatim", ext_key_usage="ServerAuth", key_usage="DigitalSignature,KeyEncipherment"),
    sign("verbatim-role", web(key_type="ec", max_ttl="3h"), Csr("ec-256", "v.example.org"),
         path="sign-verbatim/{role}", ttl="10h"),
    sign("verbatim-issuer-path", None, Csr("ec-256", "v.example.org"), path="issuer/ed-root/sign-verbatim"),
    sign("verbatim-tampered", None, Csr("ec-256", "v.example.org", tamper=True), ok=False, path="sign-verbatim"),
]


@pytest.fixture(scope="module")
def pair(bao: BaoServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    p = setup_pair(bao, tmp_path_factory.mktemp("diff-issue"))
    yield p
    teardown_pair(p)


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_request(pair: Pair, case: Case) -> None:
    run_case(pair, case)


def test_our_roots_lint_clean_and_match_builtin_profile(pair: Pair) -> None:
    """The CAs the module set up: ours lint clean, and each has the built-in's profile (up to the documented
    CN-copy rule: a root named `Differential ec-root CA` carries no SAN on either side)."""
    from integration.differential import expected_profile, profile
    from integration.lint import lint_findings

    for name, cert in pair.roots[pair.ours].items():
        assert lint_findings(cert) == [], name
        mine, theirs = profile(cert, pair.ours), profile(pair.roots[pair.ref][name], pair.ref)
        expected = expected_profile(theirs, "", frozenset(), leaf=False)
        for key in ("lifetime", "not_after"):
            mine.pop(key), expected.pop(key)
        assert mine == expected, name
