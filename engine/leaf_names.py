"""Which names a role lets into a certificate (Vault's role name rules), and identity templating.

Every check answers with the offending value (or False) so the caller can word Vault's error; nothing
here raises for a forbidden name.
"""
from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from typing import Any

from engine.names import LEFT_WILD_LABEL_RE, glob_match, is_hostname, split_wildcard, to_ascii
from engine.roles import Role, parse_other_san_rules
from plugin.framework import SystemView, UserError

_TEMPLATE = re.compile(r"\{\{\s*([^{}]+?)\s*\}\}")


@dataclass
class Identity:
    """The requesting entity and its groups, as the server's SystemView reports them."""

    entity: dict[str, Any] = field(default_factory=dict)
    groups: list[dict[str, Any]] = field(default_factory=list)


def is_template(text: str) -> bool:
    return _TEMPLATE.search(text) is not None


async def load_identity(system: SystemView, entity_id: str) -> Identity | None:
    if not entity_id:
        return None
    try:
        entity = await system.entity_info(entity_id)
        if not entity:
            return None
        groups = await system.groups_for_entity(entity_id)
    except Exception:  # noqa: BLE001 - identity lookups failing only disable templated entries, as in Vault
        return None
    return Identity(entity=entity, groups=groups)


def _get(obj: dict[str, Any], *names: str) -> Any:
    for name in names:
        if name in obj:
            return obj[name]
    return None


def _resolve(identity: Identity, path: str) -> str | None:
    """One `identity.*` template variable; None when the entity does not have it."""
    parts = path.split(".")
    if parts[:2] == ["identity", "entity"]:
        rest = parts[2:]
        ent = identity.entity
        if rest == ["id"]:
            return _get(ent, "ID", "id")
        if rest == ["name"]:
            return _get(ent, "name")
        if len(rest) >= 2 and rest[0] == "metadata":
            return (_get(ent, "metadata") or {}).get(".".join(rest[1:]))
        if len(rest) >= 3 and rest[0] == "aliases":
            accessor, attr = rest[1], rest[2:]
            for alias in _get(ent, "aliases") or []:
                if alias.get("mount_accessor") != accessor:
                    continue
                if attr == ["id"]:
                    return _get(alias, "ID", "id")
                if attr == ["name"]:
                    return alias.get("name")
                if len(attr) >= 2 and attr[0] in ("metadata", "custom_metadata"):
                    return (alias.get(attr[0]) or {}).get(".".join(attr[1:]))
            return None
        return None
    if parts[:2] == ["identity", "groups"] and len(parts) >= 5:
        by, key, attr = parts[2], parts[3], parts[4:]
        for group in identity.groups:
            match = _get(group, "ID", "id") if by == "ids" else group.get("name") if by == "names" else None
            if match != key:
                continue
            if attr == ["id"]:
                return _get(group, "ID", "id")
            if attr == ["name"]:
                return group.get("name")
            if len(attr) >= 2 and attr[0] == "metadata":
                return (group.get("metadata") or {}).get(".".join(attr[1:]))
        return None
    return None


def expand_template(text: str, identity: Identity, allow_globs: bool) -> str | None:
    """The entry with every template substituted, or None if any is unknown or injects a glob."""
    failed = False

    def sub(m: re.Match[str]) -> str:
        nonlocal failed
        value = _resolve(identity, m.group(1))
        if value is None or (not allow_globs and "*" in value):
            failed = True
            return ""
        return str(value)

    out = _TEMPLATE.sub(sub, text)
    return None if failed else out


class RoleConstraints:
    """The name rules of one role for one request (with the requester's identity for templates)."""

    def __init__(self, role: Role, identity: Identity | None = None) -> None:
        self.role = role
        self.identity = identity
        self._domains: list[str] | None = None

    def _expand(self, entries: list[str], templated: bool) -> list[str]:
        if not templated:
            return entries
        out: list[str] = []
        for entry in entries:
            if is_template(entry):
                if self.identity is None:
                    continue
                expanded = expand_template(entry, self.identity, self.role.allow_globs_in_identity_templates)
                if expanded is not None:
                    out.append(expanded)
            else:
                out.append(entry)
        return out

    @property
    def allowed_domains(self) -> list[str]:
        if self._domains is None:
            self._domains = self._expand([d for d in self.role.allowed_domains if d],
                                         self.role.allowed_domains_template)
        return self._domains

    # -- DNS names, emails, the CN ------------------------------------------------------------------

    def name_allowed(self, name: str) -> bool:
        """Vault's per-name rule chain for CNs, DNS SANs and email SANs."""
        role = self.role
        reduced = name
        email_domain = name
        is_email = False
        if "@" in reduced:
            parts = reduced.split("@")
            if len(parts) != 2:
                return False
            reduced = email_domain = parts[1]
            is_email = True
        is_wildcard = "*" in reduced
        wildcard_label = ""
        if is_wildcard:
            if not role.allow_wildcard_certificates:
                return False
            split = split_wildcard(reduced)
            if split is None:
                return False
            wildcard_label, reduced = split
        if is_email and is_wildcard:
            return False
        if role.enforce_hostnames:
            if reduced:
                try:
                    converted = to_ascii(reduced)
                except UserError:
                    return False
                if not is_hostname(converted):
                    return False
            if is_wildcard and not LEFT_WILD_LABEL_RE.match(wildcard_label):
                return False
        if role.allow_any_name:
            return True
        if role.allow_localhost:
            if reduced in ("localhost", "localdomain") or (is_email and email_domain in ("localhost", "localdomain")):
                return True
            if role.allow_subdomains:
                for base in ("localhost", "localdomain"):
                    if reduced.endswith("." + base) or (is_wildcard and reduced == base):
                        return True
        for base in self.allowed_domains:
            if role.allow_bare_domains and (name.lower() == base.lower()
                                            or (is_email and email_domain.lower() == base.lower())):
                return True
            if role.allow_subdomains and (reduced.endswith("." + base)
                                          or (is_wildcard and reduced.lower() == base.lower())):
                return True
            if role.allow_glob_domains and "*" in base and glob_match(base, name):
                return True
        return False

    def first_bad_name(self, names: list[str]) -> str | None:
        for name in names:
            if not self.name_allowed(name):
                return name
        return None

    def common_name_allowed(self, cn: str) -> bool:
        validations = self.role.cn_validations
        if validations == ["disabled"]:
            return True
        if not self.name_allowed(cn):
            return False
        if not validations:
            return True
        return ("email" in validations) if "@" in cn else ("hostname" in validations)

    # -- other subject and SAN values ---------------------------------------------------------------

    def serial_number_allowed(self, value: str) -> bool:
        for entry in self.role.allowed_serial_numbers:
            if entry and (entry == value or ("*" in entry and glob_match(entry, value))):
                return True
        return False

    def user_id_allowed(self, value: str) -> bool:
        allowed = self.role.allowed_user_ids
        if any(a.lower() == value.lower() for a in allowed):
            return True
        return any(a and "*" in a and glob_match(a, value) for a in allowed)

    def first_bad_other_san(self, requested: dict[str, list[str]]) -> tuple[str, str] | None:
        """(oid, value) of the first forbidden other SAN; value '' when the OID itself is not allowed."""
        rules = self.role.allowed_other_sans
        if rules == ["*"]:
            return None
        allowed = parse_other_san_rules(rules)
        for oid, values in requested.items():
            for value in values:
                if oid not in allowed:
                    return oid, ""
                if not any(glob_match(pattern, value) for pattern in allowed[oid]):
                    return oid, value
        return None

    def ip_allowed(self, ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
        cidrs = self.role.allowed_ip_sans_cidr
        if not cidrs:
            return True
        for cidr in cidrs:
            net = ipaddress.ip_network(cidr, strict=False)
            if ip.version == net.version and ip in net:
                return True
        return False

    def uri_allowed(self, uri: str) -> bool:
        patterns = self._expand(list(self.role.allowed_uri_sans), self.role.allowed_uri_sans_template)
        return any(glob_match(p, uri) for p in patterns)
