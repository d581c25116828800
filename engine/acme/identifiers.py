"""Order identifiers: `dns` names (one left-most wildcard label at most, IDNA A-labels only) and RFC 8738 `ip`."""
from __future__ import annotations

import ipaddress
from typing import Any

from engine.acme.errors import AcmeProblem, problem
from engine.acme.records import Identifier
from engine.leaf_names import RoleConstraints
from engine.roles import Role


def _bad(what: str) -> AcmeProblem:
    return problem("malformed", prefix=what)


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _check_dns(value: str) -> tuple[str, bool]:
    """(name without '*.', wildcard) or a malformed problem."""
    wildcard = False
    name = value
    if "*" in value:
        if not value.startswith("*.") or "*" in value[2:]:
            raise _bad(f"value argument ({value}) failed validation: invalid wildcard: wildcard must be the "
                       "left-most label and the only asterisk")
        wildcard, name = True, value[2:]
    if _is_ip(name):
        raise _bad(f"refusing to accept argument ({value}) as DNS type identifier: parsed OK as IP address")
    try:
        ascii_name = name.encode("idna").decode("ascii")
    except (UnicodeError, ValueError):
        raise _bad(f"value argument ({value}) failed validation: unable to convert to IDNA") from None
    if ascii_name.lower() != name.lower():
        raise _bad(f"value argument ({value}) failed validation: IDNA encoding does not round-trip")
    labels = name.rstrip(".").split(".")
    if not name or any(not label or len(label) > 63 for label in labels) or len(name) > 253:
        raise _bad(f"value argument ({value}) failed validation: not a valid domain name")
    return name, wildcard


def parse_identifiers(payload: dict[str, Any]) -> list[Identifier]:
    if "identifiers" not in payload:
        raise _bad("missing required identifiers argument")
    raw = payload["identifiers"]
    if not isinstance(raw, list):
        raise _bad(f"invalid type ({type(raw).__name__}) for field 'identifiers'")
    out: list[Identifier] = []
    for item in raw:
        if not isinstance(item, dict):
            raise _bad("invalid type for value in 'identifiers'")
        kind, value = item.get("type"), item.get("value")
        if kind is None:
            raise _bad("missing type argument for value in 'identifiers'")
        if value is None:
            raise _bad("missing value argument for value in 'identifiers'")
        if not isinstance(kind, str) or not isinstance(value, str):
            raise _bad("invalid type for type or value argument for value in 'identifiers'")
        if not value:
            raise _bad("value argument for value in 'identifiers' can not be blank")
        if kind == "ip":
            if not _is_ip(value):
                raise _bad(f"value argument ({value}) failed validation: failed parsing as IP")
            out.append(Identifier(type="ip", value=str(ipaddress.ip_address(value)), original=value))
        elif kind == "dns":
            name, wildcard = _check_dns(value)
            out.append(Identifier(type="dns", value=name, original=value, wildcard=wildcard))
        else:
            raise AcmeProblem("unsupportedIdentifier",
                              prefix=f"unsupported identifier type {kind}")
    if not out:
        raise _bad("no identifiers in order")
    return out


def check_against_role(role: Role, identifiers: list[Identifier]) -> None:
    rules = RoleConstraints(role)
    for ident in identifiers:
        if ident.type == "dns":
            if rules.first_bad_name([ident.original]) is not None:
                raise problem("rejectedIdentifier",
                              suffix=f"role ({role.name}) will not issue certificate for name {ident.original}")
        elif not role.allow_ip_sans or not rules.ip_allowed(ipaddress.ip_address(ident.value)):
            raise problem("rejectedIdentifier", suffix=f"role ({role.name}) does not allow IP sans, so cannot "
                                                       f"issue certificate for {ident.original}")


def challenge_types(ident: Identifier) -> list[str]:
    """RFC 8738: IPs only by http-01 (and tls-alpn-01 in the RFC; the built-in offers http-01 alone); wildcards
    only by dns-01 (RFC 8555 section 7.1.3)."""
    if ident.type == "ip":
        return ["http-01"]
    if ident.wildcard:
        return ["dns-01"]
    return ["http-01", "dns-01", "tls-alpn-01"]
