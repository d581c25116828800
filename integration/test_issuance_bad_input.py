"""Bad issuance input through the real server: a clear 4xx with Vault's `{"errors": [...]}` body and nothing
written to the mount's storage; the built-in engine, given the same request, refuses it too (except the
documented NUL-byte difference)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator

import pytest

from integration.differential import Csr, call, must, patch
from integration.harness import BaoServer, mount_storage_keys, unique_name

ROLE = {"allowed_domains": "example.com", "allow_subdomains": True, "key_type": "ec", "ttl": "1h"}
ROLES = {
    "web": ROLE,
    "rsa": {**ROLE, "key_type": "rsa", "key_bits": 3072},
    "no-ip": {**ROLE, "allow_ip_sans": False},
    "any": {"allow_any_name": True, "key_type": "any", "ttl": "1h"},
    "anyname": {"allow_any_name": True, "key_type": "ec", "ttl": "1h"},
    "loose": {"allow_any_name": True, "enforce_hostnames": False, "key_type": "ec", "ttl": "1h"},
    "unknown-issuer": {**ROLE, "issuer_ref": "nope"},
    "no-issuing": {**ROLE, "issuer_ref": "no-issuing"},
    "long-ttl": {**ROLE, "ttl": "0"},
}
A = {"common_name": "a.example.com"}


@dataclass(frozen=True)
class Bad:
    name: str
    path: str
    body: dict[str, Any]
    csr: Csr | None = None
    builtin_accepts: bool = False   # a documented difference: the built-in issues, we refuse


CASES = [
    # CSRs
    Bad("csr-not-pem", "sign/web", {"csr": "not a csr"}),
    Bad("csr-bad-base64", "sign/web", {"csr": "-----BEGIN CERTIFICATE REQUEST-----\n!!!!\n"
                                              "-----END CERTIFICATE REQUEST-----\n"}),
    Bad("csr-truncated-der", "sign/web", {"csr": "-----BEGIN CERTIFICATE REQUEST-----\nMIIBAA==\n"
                                                 "-----END CERTIFICATE REQUEST-----\n"}),
    Bad("csr-bad-signature", "sign/web", {}, Csr("ec-256", "a.example.com", tamper=True)),
    Bad("csr-verbatim-bad-signature", "sign-verbatim", {}, Csr("ec-256", "a.example.com", tamper=True)),
    Bad("csr-cn-forbidden", "sign/web", {}, Csr("ec-256", "a.example.org")),
    Bad("csr-san-forbidden", "sign/web", {}, Csr("ec-256", "a.example.com", dns=("evil.example.net",))),
    Bad("csr-ip-forbidden", "sign/no-ip", {}, Csr("ec-256", "a.example.com", ips=("10.0.0.1",))),
    Bad("csr-uri-forbidden", "sign/web", {}, Csr("ec-256", "a.example.com", uris=("https://a.example.com/",))),
    Bad("csr-email-forbidden", "sign/web", {}, Csr("ec-256", "a.example.com", emails=("me@example.org",))),
    Bad("csr-wrong-key-type", "sign/web", {}, Csr("rsa-2048", "a.example.com")),
    Bad("csr-rsa-below-role-bits", "sign/rsa", {}, Csr("rsa-2048", "a.example.com")),
    Bad("csr-rsa-1024", "sign/any", {}, Csr("rsa-1024", "a.example.com")),
    # common names
    Bad("cn-nul-byte", "issue/web", {"common_name": "a\x00.example.com"}),
    Bad("cn-nul-suffix-any-name", "issue/anyname", {"common_name": "a.example.com\x00.evil.org"}),
    # Without enforce_hostnames the built-in writes control characters into the subject; we never do.
    Bad("cn-nul-suffix-loose", "issue/loose", {"common_name": "a.example.com\x00.evil.org"}, builtin_accepts=True),
    Bad("cn-control-char-loose", "issue/loose", {"common_name": "a\x07b.example.com"}, builtin_accepts=True),
    Bad("cn-label-64", "issue/web", {"common_name": "a" * 64 + ".example.com"}),
    Bad("alt-name-label-64", "issue/anyname", {**A, "alt_names": "b" * 64 + ".example.com"}),
    Bad("cn-name-over-253", "issue/anyname", {"common_name": ".".join(["a" * 60] * 5) + ".com"}),
    Bad("cn-idn-outside-domain", "issue/web", {"common_name": "ex\u0430mple.com"}),
    Bad("cn-idn-other-domain", "issue/web", {"common_name": "b\u00fccher.example.org"}),
    Bad("cn-idn-label-too-long", "issue/web", {"common_name": "\u00fc" * 60 + ".example.com"}),
    Bad("alt-name-idn-other-domain", "issue/web", {**A, "alt_names": "b\u00fccher.example.net"}),
    Bad("cn-forbidden", "issue/web", {"common_name": "a.example.org"}),
    Bad("ip-san-garbage", "issue/web", {**A, "ip_sans": "1.2.3"}),
    # key parameters
    Bad("role-key-bits-1024", "roles/new-rsa", {"key_type": "rsa", "key_bits": 1024}),
    Bad("role-ec-bits-128", "roles/new-ec", {"key_type": "ec", "key_bits": 128}),
    Bad("any-role-rsa-1024", "issue/any", {**A, "key_type": "rsa", "key_bits": 1024}),
    Bad("any-role-no-key-type", "issue/any", A),
    # lifetimes
    Bad("ttl-past-every-limit", "issue/long-ttl", {**A, "ttl": "1000000h"}),
    Bad("not-after-past-issuer", "issue/web", {**A, "ttl": "", "not_after": "2099-01-01T00:00:00Z"}),
    Bad("ttl-unparseable", "issue/web", {**A, "ttl": "forever"}),
    # issuers
    Bad("role-unknown-issuer", "issue/unknown-issuer", A),
    Bad("path-unknown-issuer", "issuer/nope/issue/web", A),
    Bad("role-issuer-without-issuing-usage", "issue/no-issuing", A),
    Bad("path-issuer-without-issuing-usage", "issuer/no-issuing/issue/web", A),
    Bad("sign-verbatim-issuer-without-usage", "issuer/no-issuing/sign-verbatim", {}, Csr("ec-256", "a.example.com")),
]


@pytest.fixture(scope="module")
def mounts(bao: BaoServer) -> Iterator[tuple[str, str]]:
    ours, ref = bao.enable_plugin_mount(unique_name("bad")), bao.enable_builtin_mount(unique_name("badref"))
    for m in (ours, ref):
        bao.tune_max_ttl(m, "8760h")
        # A root shorter than the mount's max lease TTL: a TTL capped by the mount still outlives it.
        must(call(bao, "POST", f"{m}/root/generate/internal",
                  {"common_name": "Bad Input Root", "key_type": "ec", "ttl": "100h", "issuer_name": "root"}), m)
        must(call(bao, "POST", f"{m}/root/generate/internal",
                  {"common_name": "Bad Input Spare", "key_type": "ec", "ttl": "100h", "issuer_name": "no-issuing"}),
             m)
        must(patch(bao, f"{m}/issuer/no-issuing", {"usage": "read-only,crl-signing"}), m)
        must(call(bao, "POST", f"{m}/config/issuers", {"default": "root"}), m)
        for name, fields in ROLES.items():
            must(call(bao, "POST", f"{m}/roles/{name}", fields), f"{m} role {name}")
    yield ours, ref
    for m in (ours, ref):
        bao.disable_mount(m)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_bad_issuance_input_is_4xx_and_stores_nothing(bao: BaoServer, mounts: tuple[str, str], case: Bad) -> None:
    ours, ref = mounts
    body = dict(case.body)
    if case.csr is not None:
        body["csr"] = case.csr.pem()
    before = mount_storage_keys(bao, ours)
    reply = call(bao, "POST", f"{ours}/{case.path}", body)
    assert 400 <= reply.status < 500, reply.describe()
    errors = reply.body.get("errors")
    assert errors and all(isinstance(e, str) and e.strip() for e in errors), reply.body
    assert mount_storage_keys(bao, ours) == before

    builtin = call(bao, "POST", f"{ref}/{case.path}", body)
    assert builtin.ok == case.builtin_accepts, f"built-in: {builtin.describe()}"
