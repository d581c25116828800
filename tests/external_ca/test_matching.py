"""Seed 003's domain-matching table (every row), IDN handling, IP ranges and identity templates."""
from __future__ import annotations

import pytest

from engine.external_ca.matching import (
    IdentifierError, identifier_allowed, parse_identifier, render_template, validate_template,
)

# (allowed_domains, allowed_domain_options, allowed identifiers, forbidden identifiers) — one entry per table row.
TABLE = [
    ("*.example.com", "", [], ["foo.example.com", "example.com", "*.example.com"]),
    ("foo.example.com", "", ["foo.example.com"], []),
    ("*.example.com", "bare_domains", [], ["foo.example.com", "example.com", "*.example.com"]),
    ("example.com", "bare_domains", ["example.com"], []),
    ("foo.example.com", "bare_domains", ["foo.example.com"], ["example.com"]),
    ("*.example.com", "wildcards", ["*.example.com"], ["foo.example.com"]),
    ("example.com", "bare_domains,subdomains", ["example.com", "foo.example.com"], []),
    ("example.com", "subdomains", ["foo.example.com"], ["example.com"]),
    ("*.example.com", "globs", ["foo.example.com", "baz.foo.example.com"], ["example.com", "*.example.com"]),
    ("*.example.com", "globs,wildcards",
     ["foo.example.com", "baz.foo.example.com", "*.example.com", "*.foo.example.com"], ["example.com"]),
    ("xn--rksmrgs-5wao1o.se", "bare_domains", ["räksmörgås.se", "xn--rksmrgs-5wao1o.se"], []),
    ("räksmörgås.se", "bare_domains", ["räksmörgås.se", "xn--rksmrgs-5wao1o.se"], []),
]


@pytest.mark.parametrize("allowed,options,accepted,rejected", TABLE, ids=[f"row{i + 1}" for i in range(len(TABLE))])
def test_seed_003_matching_table(allowed, options, accepted, rejected):
    opts = [o for o in options.split(",") if o]
    for name in accepted:
        assert identifier_allowed(parse_identifier(name), [allowed], opts, []), name
    for name in rejected:
        assert not identifier_allowed(parse_identifier(name), [allowed], opts, []), name


def test_subdomains_prose_examples_and_wildcard_depth():
    for name in ("www.example.com", "api.example.com", "sub.example.com"):
        assert identifier_allowed(parse_identifier(name), ["example.com"], ["subdomains"], [])
    assert not identifier_allowed(parse_identifier("*.x.example.com"), ["*.example.com"],
                                  ["wildcards"], [])


def test_ip_identifiers_need_a_range():
    ip = parse_identifier("127.0.0.1")
    assert ip.type == "ip"
    assert not identifier_allowed(ip, ["127.0.0.1", "*.example.com"], ["globs", "bare_domains"], [])
    assert identifier_allowed(ip, [], [], ["127.0.0.0/8"])
    assert not identifier_allowed(parse_identifier("10.0.0.1"), [], [], ["127.0.0.0/8"])
    assert identifier_allowed(parse_identifier("2001:db8::1"), [], [], ["2001:db8::/32"])


@pytest.mark.parametrize("bad", ["", "foo", "-a.example.com", "a..example.com", "a_b.example.com",
                                 "*.*.example.com", "foo.*.example.com", "xn--zz.example.com"])
def test_invalid_identifiers(bad):
    with pytest.raises(IdentifierError):
        parse_identifier(bad)


ENTITY = {"id": "e-123", "name": "alice", "metadata": {"team": "payments"}}
GROUPS = [{"id": "g-1", "name": "ops", "metadata": {"zone": "eu"}}]


@pytest.mark.parametrize("template,expected", [
    ("{{identity.entity.name}}.users.example.com", "alice.users.example.com"),
    ("{{identity.entity.id}}.ids.example.com", "e-123.ids.example.com"),
    ("{{identity.entity.metadata.team}}.example.com", "payments.example.com"),
    ("{{identity.groups.names.ops}}.example.com", "ops.example.com"),
    ("{{identity.groups.names.ops.id}}.example.com", "g-1.example.com"),
    ("{{identity.groups.names.ops.metadata.zone}}.example.com", "eu.example.com"),
    ("{{identity.groups.names.admins}}.example.com", None),
    ("{{identity.entity.metadata.missing}}.example.com", None),
])
def test_identity_templates(template, expected):
    validate_template(template)
    assert render_template(template, ENTITY, GROUPS) == expected


def test_templates_without_entity_resolve_to_nothing():
    assert render_template("{{identity.entity.name}}.users.example.com", None, []) is None


@pytest.mark.parametrize("bad", ["{{identity.entity.bogus}}.example.com", "{{identity.entity.name.example.com",
                                 "{{token.policies}}.example.com"])
def test_bad_templates_are_refused(bad):
    with pytest.raises(ValueError):
        validate_template(bad)
