"""Which identifiers a role admits: IDN normalisation, identity templates, and seed 003's matching table.

Rules (every row of the published table holds; where its prose disagrees the table wins):
- a literal allowed name admits exactly that name when no option is set or `bare_domains` is set;
- `subdomains` admits names below an allowed name (any depth), never the name itself;
- `globs` treats the allowed value as a glob in which `*` spans any characters, dots included;
- a wildcard identifier (`*.x`) needs `wildcards`, and then matches literally, by glob (with `globs`) or as a
  subdomain pattern (with `subdomains`);
- IP identifiers never match domain entries; they need a CIDR in the role's `allowed_ip_ranges`.
"""
from __future__ import annotations

import fnmatch
import ipaddress
import re
from dataclasses import dataclass
from typing import Any, Iterable

import idna

DOMAIN_OPTIONS = ("bare_domains", "subdomains", "wildcards", "globs")
_LABEL_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
_TEMPLATE_RE = re.compile(r"\{\{\s*([^}]+?)\s*\}\}")


class IdentifierError(ValueError):
    """An identifier that is not a valid DNS name or IP address."""


@dataclass(frozen=True)
class Identifier:
    type: str      # "dns" or "ip", as in RFC 8555 / RFC 8738
    value: str     # A-label lower-case DNS name (with a leading "*." for wildcards) or canonical IP text

    @property
    def is_wildcard(self) -> bool:
        return self.type == "dns" and self.value.startswith("*.")

    @property
    def base(self) -> str:
        return self.value[2:] if self.is_wildcard else self.value


def to_alabel(name: str) -> str:
    """A-label form of a (possibly Unicode) DNS name; `*` labels and glob characters pass through."""
    out: list[str] = []
    for label in name.strip().rstrip(".").split("."):
        if label == "" or "*" in label or label.isascii():
            out.append(label.lower())
            continue
        try:
            out.append(idna.encode(label, uts46=True).decode().lower())
        except idna.IDNAError as exc:
            raise IdentifierError(f"invalid internationalized label {label!r}: {exc}") from None
    return ".".join(out)


def parse_identifier(raw: str) -> Identifier:
    text = raw.strip()
    if not text:
        raise IdentifierError("empty identifier")
    try:
        return Identifier("ip", str(ipaddress.ip_address(text)))
    except ValueError:
        pass
    value = to_alabel(text)
    labels = value.split(".")
    check = labels[1:] if labels[0] == "*" else labels
    if len(check) < 2 or len(value) > 253 or any(not _LABEL_RE.match(lbl) for lbl in check):
        raise IdentifierError(f"invalid DNS identifier {raw!r}")
    for label in check:
        if label.startswith("xn--"):
            try:
                idna.decode(label)
            except idna.IDNAError:
                raise IdentifierError(f"invalid DNS identifier {raw!r}") from None
    return Identifier("dns", value)


def _glob(pattern: str, name: str) -> bool:
    # fnmatch's [] classes are not part of Vault's glob syntax: escape them.
    escaped = pattern.replace("[", "[[]")
    return fnmatch.fnmatchcase(name, escaped)


def domain_allowed(ident: Identifier, allowed: str, options: Iterable[str]) -> bool:
    opts = set(options)
    pattern = to_alabel(allowed)
    if ident.is_wildcard:
        if "wildcards" not in opts:
            return False
        if ident.value == pattern:
            return True
        if "globs" in opts and _glob(pattern, ident.value):
            return True
        return "subdomains" in opts and "*" not in pattern and (
            ident.base == pattern or ident.base.endswith("." + pattern))
    name = ident.value
    if "*" not in pattern and name == pattern and (not opts or "bare_domains" in opts):
        return True
    if "subdomains" in opts and "*" not in pattern and name.endswith("." + pattern):
        return True
    return "globs" in opts and _glob(pattern, name)


def ip_allowed(ident: Identifier, ranges: Iterable[str]) -> bool:
    addr = ipaddress.ip_address(ident.value)
    for cidr in ranges:
        net = ipaddress.ip_network(cidr, strict=False)
        if addr.version == net.version and addr in net:
            return True
    return False


def identifier_allowed(ident: Identifier, allowed_domains: Iterable[str], options: Iterable[str],
                       ip_ranges: Iterable[str]) -> bool:
    if ident.type == "ip":
        return ip_allowed(ident, ip_ranges)
    opts = list(options)
    return any(domain_allowed(ident, a, opts) for a in allowed_domains)


# --- identity templating -------------------------------------------------------------------------

def has_template(value: str) -> bool:
    return "{{" in value


def _lookup(expr: str, entity: dict[str, Any] | None, groups: list[dict[str, Any]]) -> str | None:
    parts = expr.split(".")
    if parts[:2] == ["identity", "entity"] and entity is not None:
        rest = parts[2:]
        if rest in (["id"], ["name"]):
            value = entity.get(rest[0])
            return str(value) if value else None
        if len(rest) >= 2 and rest[0] == "metadata":
            value = (entity.get("metadata") or {}).get(".".join(rest[1:]))
            return str(value) if value else None
        return None
    if parts[:3] == ["identity", "groups", "names"] and len(parts) >= 4:
        group = next((g for g in groups if g.get("name") == parts[3]), None)
        if group is None:
            return None
        rest = parts[4:]
        if rest in ([], ["name"]):
            return str(group.get("name"))
        if rest == ["id"]:
            return str(group.get("id")) or None
        if len(rest) >= 2 and rest[0] == "metadata":
            value = (group.get("metadata") or {}).get(".".join(rest[1:]))
            return str(value) if value else None
    return None


def render_template(value: str, entity: dict[str, Any] | None, groups: list[dict[str, Any]]) -> str | None:
    """The entry with every template resolved, or None when any part cannot be (the entry then admits nothing)."""
    failed = False

    def sub(m: re.Match[str]) -> str:
        nonlocal failed
        resolved = _lookup(m.group(1), entity, groups)
        if resolved is None:
            failed = True
            return ""
        return resolved

    out = _TEMPLATE_RE.sub(sub, value)
    return None if failed or "{{" in out else out


def validate_template(value: str) -> None:
    for m in _TEMPLATE_RE.finditer(value):
        expr = m.group(1).split(".")
        ok = (expr[:2] == ["identity", "entity"] and (expr[2:] in (["id"], ["name"]) or
                                                       (len(expr) >= 4 and expr[2] == "metadata"))) or \
             (expr[:3] == ["identity", "groups", "names"] and len(expr) >= 4)
        if not ok:
            raise ValueError(f"unsupported template {m.group(0)!r} in allowed_domains")
    if _TEMPLATE_RE.sub("", value).count("{{") or _TEMPLATE_RE.sub("", value).count("}}"):
        raise ValueError(f"unbalanced template braces in {value!r}")
