"""The four directory prefixes every ACME path exists under, and how a request path names its directory."""
from __future__ import annotations

from plugin.framework import name_regex
from plugin.framework import Field, FieldType

ROLE_RE = name_regex("role")
ISSUER_RE = name_regex("issuer_ref")


def acme_prefixes() -> list[tuple[str, dict[str, Field]]]:
    """(pattern prefix ending in 'acme/', fields of its captures) for the four directories."""
    role = Field(FieldType.STRING, "The role whose directory this is.")
    issuer = Field(FieldType.STRING, "Reference (id or name) of the issuer of this directory.")
    return [
        ("acme/", {}),
        (f"roles/{ROLE_RE}/acme/", {"role": role}),
        (f"issuer/{ISSUER_RE}/acme/", {"issuer_ref": issuer}),
        (f"issuer/{ISSUER_RE}/roles/{ROLE_RE}/acme/", {"issuer_ref": issuer, "role": role}),
    ]


def directory_of(request_path: str) -> str:
    """The request's directory prefix up to and including 'acme/', e.g. 'roles/web/acme/'."""
    path = "/" + request_path.lstrip("/")
    at = path.rfind("/acme/")
    if at < 0:
        return ""
    return (path[:at] + "/acme/").lstrip("/")
