"""Role name rules (Vault's validateNames chain), IDNA conversion, globs and identity templates."""
from __future__ import annotations

import asyncio

import pytest

from engine.leaf_names import Identity, RoleConstraints, expand_template, load_identity
from engine.names import glob_match, is_preferred_dns_name, to_ascii
from engine.roles import Role
from plugin.framework import StaticSystemView, UserError


def rules(**kw) -> RoleConstraints:
    return RoleConstraints(Role(**kw))


DOMAIN = dict(allowed_domains=["example.com"])


@pytest.mark.parametrize("role,name,ok", [
    (dict(**DOMAIN, allow_subdomains=True), "a.example.com", True),
    (dict(**DOMAIN, allow_subdomains=True), "a.b.example.com", True),
    (dict(**DOMAIN, allow_subdomains=True), "example.com", False),
    (dict(**DOMAIN, allow_subdomains=True), "aexample.com", False),
    (dict(**DOMAIN, allow_subdomains=True), "A.Example.com", False),          # suffix match is case-sensitive
    (dict(**DOMAIN, allow_bare_domains=True), "example.com", True),
    (dict(**DOMAIN, allow_bare_domains=True), "EXAMPLE.com", True),           # bare match ignores case
    (dict(**DOMAIN, allow_bare_domains=True), "a.example.com", False),
    (dict(**DOMAIN, allow_subdomains=True), "*.example.com", True),
    (dict(**DOMAIN, allow_subdomains=True), "f*.example.com", True),
    (dict(**DOMAIN, allow_subdomains=True), "*.*.example.com", False),
    (dict(**DOMAIN, allow_subdomains=True), "a.*.example.com", False),
    (dict(**DOMAIN, allow_subdomains=True, allow_wildcard_certificates=False), "*.example.com", False),
    (dict(allow_any_name=True, allow_wildcard_certificates=False), "*.anything.org", False),
    (dict(allow_any_name=True), "anything.org", True),
    (dict(allow_any_name=True), "under_score.org", False),                     # enforce_hostnames still applies
    (dict(allow_any_name=True, enforce_hostnames=False), "under_score.org", True),
    (dict(allowed_domains=["*.example.com"], allow_glob_domains=True), "x.y.example.com", True),
    (dict(allowed_domains=["*.example.com"], allow_glob_domains=True), "example.com", False),
    (dict(allowed_domains=["a*z.example.com"], allow_glob_domains=True), "abcz.example.com", True),
    (dict(), "localhost", True),
    (dict(), "localdomain", True),
    (dict(), "a.localhost", False),
    (dict(allow_subdomains=True), "a.localhost", True),
    (dict(allow_localhost=False), "localhost", False),
    (dict(**DOMAIN, allow_bare_domains=True), "user@example.com", True),
    (dict(**DOMAIN, allow_subdomains=True), "user@mail.example.com", True),
    (dict(**DOMAIN, allow_subdomains=True), "a@b@example.com", False),
    (dict(allow_any_name=True), "user@*.example.com", False),
    (dict(**DOMAIN, allow_subdomains=True), "bücher.example.com", True),
    (dict(**DOMAIN, allow_subdomains=True), ("a" * 64) + ".example.com", False),
    (dict(), "anything.example.com", False),
])
def test_name_rules(role, name, ok):
    assert rules(**role).name_allowed(name) is ok


@pytest.mark.parametrize("validations,cn,ok", [
    (["email", "hostname"], "a.example.com", True),
    (["email"], "a.example.com", False),
    (["hostname"], "me@example.com", False),
    (["email"], "me@example.com", True),
    (["disabled"], "not a hostname at all", True),
])
def test_cn_validations(validations, cn, ok):
    r = rules(allowed_domains=["example.com"], allow_subdomains=True, allow_bare_domains=True,
              cn_validations=validations)
    assert r.common_name_allowed(cn) is ok


@pytest.mark.parametrize("allowed,value,ok", [
    ([], "x", False), (["*"], "anything", True), (["ABC"], "abc", True), (["a*"], "abc", True), (["a*"], "ba", False),
])
def test_user_ids(allowed, value, ok):
    assert rules(allowed_user_ids=allowed).user_id_allowed(value) is ok


@pytest.mark.parametrize("allowed,value,ok", [
    ([], "x", False), (["1234"], "1234", True), (["12*"], "1299", True), (["12*"], "99", False),
])
def test_serial_numbers(allowed, value, ok):
    assert rules(allowed_serial_numbers=allowed).serial_number_allowed(value) is ok


def test_other_sans():
    r = rules(allowed_other_sans=["1.3.6.1.4.1.311.20.2.3;UTF8:*@example.com"])
    assert r.first_bad_other_san({"1.3.6.1.4.1.311.20.2.3": ["u@example.com"]}) is None
    assert r.first_bad_other_san({"1.3.6.1.4.1.311.20.2.3": ["u@other.org"]}) == ("1.3.6.1.4.1.311.20.2.3",
                                                                                  "u@other.org")
    assert r.first_bad_other_san({"1.2.3": ["x"]}) == ("1.2.3", "")
    assert rules(allowed_other_sans=["*"]).first_bad_other_san({"1.2.3": ["x"]}) is None


def test_ip_cidrs():
    import ipaddress
    r = rules(allowed_ip_sans_cidr=["10.0.0.0/8", "2001:db8::/32"])
    assert r.ip_allowed(ipaddress.ip_address("10.9.9.9"))
    assert r.ip_allowed(ipaddress.ip_address("2001:db8::5"))
    assert not r.ip_allowed(ipaddress.ip_address("11.0.0.1"))
    assert rules().ip_allowed(ipaddress.ip_address("11.0.0.1"))


@pytest.mark.parametrize("pattern,value,ok", [
    ("*", "", True), ("a*", "a", True), ("*b", "ab", True), ("a*b*c", "aXbYc", True), ("a*b*c", "acb", False),
    ("a*a", "a", False), ("spiffe://*", "spiffe://x/y", True), ("exact", "exact", True), ("exact", "exacT", False),
])
def test_glob(pattern, value, ok):
    assert glob_match(pattern, value) is ok


@pytest.mark.parametrize("name,out", [
    ("a.example.com", "a.example.com"), ("bücher.example.com", "xn--bcher-kva.example.com"),
    ("Upper.Example.com", "Upper.Example.com"),
])
def test_to_ascii(name, out):
    assert to_ascii(name) == out


@pytest.mark.parametrize("name,message", [
    ("b..example.com", 'idna: invalid label "b..example.com"'),
    ("a.example.com.", 'idna: invalid label "a.example.com."'),
    ("a" * 64 + ".example.com", f'idna: invalid label "{"a" * 64}"'),
    ("xn--zz.example.com", 'idna: invalid label "zz"'),
])
def test_to_ascii_errors_match_vault(name, message):
    with pytest.raises(UserError) as exc:
        to_ascii(name)
    assert exc.value.message == message


@pytest.mark.parametrize("name,ok", [
    ("a.example.com", True), ("root", False), ("localhost", False), ("*.example.com", False), ("a.b.123", False),
    ("xn--bcher-kva.example", True), ("-a.example.com", False),
])
def test_preferred_dns_syntax(name, ok):
    assert is_preferred_dns_name(name) is ok


IDENTITY = Identity(
    entity={"ID": "e-1", "name": "team-a", "metadata": {"TLSDomain": "app.tenant-1.example.com", "glob": "*.x"},
            "aliases": [{"mount_accessor": "auth_userpass_1", "name": "alice", "ID": "al-1"}]},
    groups=[{"ID": "g-1", "name": "ops", "metadata": {"zone": "ops.example.com"}}],
)


@pytest.mark.parametrize("template,out", [
    ("{{identity.entity.name}}.example.com", "team-a.example.com"),
    ("{{identity.entity.id}}", "e-1"),
    ("{{identity.entity.metadata.TLSDomain}}", "app.tenant-1.example.com"),
    ("{{identity.entity.aliases.auth_userpass_1.name}}.example.com", "alice.example.com"),
    ("{{identity.groups.names.ops.metadata.zone}}", "ops.example.com"),
    ("{{identity.groups.ids.g-1.name}}", "ops"),
    ("{{identity.entity.metadata.missing}}", None),
    ("{{identity.entity.metadata.glob}}", None),            # glob injection blocked by default
])
def test_identity_templates(template, out):
    assert expand_template(template, IDENTITY, allow_globs=False) == out


def test_templated_allowed_domains():
    role = Role(allowed_domains=["{{identity.entity.metadata.TLSDomain}}", "static.org"],
                allowed_domains_template=True, allow_bare_domains=True)
    with_identity = RoleConstraints(role, IDENTITY)
    assert with_identity.name_allowed("app.tenant-1.example.com")
    assert with_identity.name_allowed("static.org")
    without = RoleConstraints(role, None)
    assert not without.name_allowed("app.tenant-1.example.com")
    assert without.name_allowed("static.org")
    # Without allowed_domains_template the entry is a literal string.
    literal = RoleConstraints(role.replace(allowed_domains_template=False), IDENTITY)
    assert not literal.name_allowed("app.tenant-1.example.com")


def test_load_identity_from_system_view():
    system = StaticSystemView(entities={"e-1": IDENTITY.entity}, groups={"e-1": IDENTITY.groups})
    loaded = asyncio.run(load_identity(system, "e-1"))
    assert loaded is not None and loaded.entity["name"] == "team-a"
    assert asyncio.run(load_identity(system, "")) is None
    assert asyncio.run(load_identity(system, "unknown")) is None
