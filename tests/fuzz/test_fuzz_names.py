"""Name handling under arbitrary text: checks answer True/False or a UserError, never crash, never pass controls."""
from __future__ import annotations

import ipaddress

from hypothesis import given, strategies as st

from engine import names
from engine.leaf_names import Identity, RoleConstraints, expand_template
from engine.roles import Role
from plugin.framework import UserError
from tests.engine.ca_helpers import Mount
from .settings import FUZZ, FUZZ_SLOW

label = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,8}[a-z0-9])?", fullmatch=True)
dns_names = st.lists(label, min_size=1, max_size=4).map(".".join)
hostile = st.text(alphabet=st.characters(codec="utf-8"), max_size=40)
any_name = st.one_of(dns_names, hostile, dns_names.map(lambda n: "*." + n), st.sampled_from(
    ["", ".", "..", "*", "xn--", "xn--.example.com", "a\x00b.example.com", "a\nb.com", "localhost", "@", "a@b",
     "ex\u00e4mple.com", "\u0130.com", "a" * 64 + ".com", ("a" * 63 + ".") * 5 + "com"]))


@FUZZ
@given(any_name)
def test_to_ascii_answers_or_refuses(name):
    try:
        out = names.to_ascii(name)
    except UserError:
        return
    assert out.isascii()


@FUZZ
@given(any_name, any_name)
def test_glob_match_is_total_and_literal_patterns_match_themselves(pattern, value):
    assert isinstance(names.glob_match(pattern, value), bool)
    if "*" not in pattern:
        assert names.glob_match(pattern, pattern)


@FUZZ
@given(st.lists(any_name, max_size=3), st.booleans(), st.booleans(), st.booleans(), st.booleans(), any_name)
def test_role_constraints_never_crash_and_never_admit_control_characters(domains, bare, subs, globs, wild, name):
    role = Role(name="r", allowed_domains=domains, allow_bare_domains=bare, allow_subdomains=subs,
                allow_glob_domains=globs, allow_wildcard_certificates=wild, allowed_domains_template=True)
    checks = RoleConstraints(role, Identity(entity={"id": "e1", "name": "{{identity.entity.id}}*"}))
    for fn in (checks.name_allowed, checks.common_name_allowed, checks.uri_allowed,
               checks.serial_number_allowed, checks.user_id_allowed):
        try:
            ok = fn(name)
        except UserError:
            continue
        if ok and fn is checks.name_allowed:
            assert not names.has_control_chars(name)


@FUZZ
@given(hostile)
def test_templates_expand_or_refuse(text):
    out = expand_template(text, Identity(entity={"id": "e", "name": "n", "metadata": {"k": "v*"}}), False)
    assert out is None or "*" not in out or "*" in text


@FUZZ_SLOW
@given(any_name, st.lists(any_name, max_size=3), st.lists(hostile, max_size=2))
def test_issue_with_arbitrary_names_is_200_or_400(cn, alt_names, uri_sans):
    m = _mount()
    reply = m.write("issue/any", common_name=cn, alt_names=alt_names, uri_sans=uri_sans)
    assert reply.status in (200, 400), reply
    if reply.status == 200:
        from cryptography import x509
        cert = x509.load_pem_x509_certificate(reply.data["certificate"].encode())
        for ext in cert.extensions:
            if isinstance(ext.value, x509.SubjectAlternativeName):
                for gn in ext.value:
                    assert not names.has_control_chars(str(gn.value))


_MOUNT: list[Mount] = []


def _mount() -> Mount:
    if not _MOUNT:
        m = Mount()
        m.root()
        m.ok("write", "roles/any", allow_any_name=True, enforce_hostnames=False, allowed_uri_sans="*",
             key_type="ec", ttl="1h")
        _MOUNT.append(m)
    return _MOUNT[0]


def test_ip_checks_take_any_address():
    role = Role(name="r", allow_ip_sans=True)
    assert RoleConstraints(role).ip_allowed(ipaddress.ip_address("::1")) in (True, False)
