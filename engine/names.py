"""Name syntax shared by roles and issuance: hostnames, IDNA, wildcards and Vault's glob matching.

Vault converts DNS names with a strict, non-mapping IDNA profile that checks DNS lengths; its errors read
`idna: invalid label "<label>"` and reach the user as a 400. We reproduce the cases users hit: empty labels
(including a trailing dot), labels over 63 octets, names over 253 octets and undecodable `xn--` labels.
"""
from __future__ import annotations

import functools
import re

from plugin.framework import UserError

_LABEL = r"([a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9\-]*[a-zA-Z0-9])"
HOSTNAME_RE = re.compile(rf"^(\*\.)?({_LABEL}\.)*{_LABEL}\.?$")
LEFT_WILD_LABEL_RE = re.compile(rf"^(\*|\*{_LABEL}|{_LABEL}\*|{_LABEL}\*{_LABEL})$")
# RFC 1034 preferred name syntax as RFC 5280 linters check it: two or more LDH labels, alphabetic TLD.
_PREFERRED_LABEL = re.compile(r"^[a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?$")
_TLD = re.compile(r"^([a-zA-Z]{2,63}|xn--[a-zA-Z0-9-]{1,59})$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def idna_error(label: str) -> UserError:
    return UserError(f'idna: invalid label "{label}"')


# Pure functions of the text, checked several times per request (the CN as a SAN, then each SAN against the
# role): memoized, with a bound so that a stream of distinct names cannot grow the process.
@functools.lru_cache(maxsize=2048)
def to_ascii(name: str) -> str:
    """The A-label form of a DNS name, with Vault's length checks; raises a 400 on failure."""
    if name == "":
        raise idna_error(name)
    labels = name.split(".")
    out: list[str] = []
    for label in labels:
        if label == "":
            raise idna_error(name)
        if label.isascii():
            if label.lower().startswith("xn--"):
                if len(label) == 4:
                    raise idna_error("")       # "xn--" alone: an A-label of nothing
                try:
                    label[4:].encode("ascii").decode("punycode")
                except (UnicodeError, ValueError):
                    raise idna_error(label[4:]) from None
            ascii_label = label
        else:
            try:
                ascii_label = "xn--" + label.encode("punycode").decode("ascii")
            except UnicodeError:
                raise idna_error(label) from None
        if len(ascii_label) > 63:
            raise idna_error(ascii_label)
        out.append(ascii_label)
    result = ".".join(out)
    if len(result) > 253:
        raise idna_error(name)
    return result


def is_hostname(ascii_name: str) -> bool:
    return HOSTNAME_RE.match(ascii_name) is not None


def has_control_chars(value: str) -> bool:
    return _CONTROL.search(value) is not None


@functools.lru_cache(maxsize=2048)
def is_preferred_dns_name(name: str) -> bool:
    """Whether a name is a DNS name in RFC 5280's preferred syntax (what lint_pkix_cert accepts)."""
    if not name or len(name) > 253 or not name.isascii():
        return False
    labels = name.split(".")
    if len(labels) < 2:
        return False
    if not all(_PREFERRED_LABEL.match(label) for label in labels):
        return False
    return _TLD.match(labels[-1]) is not None


def is_wildcard_dns_name(name: str) -> bool:
    """`*.<preferred name>`: the one wildcard shape we place in SANs from a CN."""
    return name.startswith("*.") and is_preferred_dns_name(name[2:])


_EMAIL_LOCAL = re.compile(r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*$")


def is_mailbox(value: str) -> bool:
    """An RFC 5322 addr-spec with a preferred-syntax domain (what an rfc822Name SAN must hold)."""
    local, sep, domain = value.rpartition("@")
    if not sep or not local or len(local) > 64:
        return False
    return _EMAIL_LOCAL.match(local) is not None and is_preferred_dns_name(domain)


def glob_match(pattern: str, value: str) -> bool:
    """Vault's glob: `*` matches any run of characters (dots included); nothing else is special."""
    if pattern == "*":
        return True
    parts = pattern.split("*")
    if len(parts) == 1:
        return pattern == value
    first, last = parts[0], parts[-1]
    if not value.startswith(first):
        return False
    pos = len(first)
    for middle in parts[1:-1]:
        idx = value.find(middle, pos)
        if idx < 0:
            return False
        pos = idx + len(middle)
    return len(value) - pos >= len(last) and value.endswith(last)


def split_wildcard(name: str) -> tuple[str, str] | None:
    """(wildcard label, rest) for an RFC 6125 wildcard, or None when the wildcard shape is invalid."""
    if name.count("*") > 1:
        return None
    label, dot, rest = name.partition(".")
    if not dot:
        return label, ""
    if "*" in rest:
        return None
    return label, rest


def dedup(values: list[str]) -> list[str]:
    """Order-preserving de-duplication (Vault's RemoveDuplicatesStable without lowercasing)."""
    seen: set[str] = set()
    out: list[str] = []
    for value in values:
        if value not in seen:
            seen.add(value)
            out.append(value)
    return out
