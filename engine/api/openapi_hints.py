"""The built-in engine's operationId hints, so generated clients get the same method names on either engine."""
from __future__ import annotations

from typing import Any

from plugin.framework import DisplayAttrs

PREFIX = "pki"


def pki(verb: str = "", suffix: str = "") -> DisplayAttrs:
    """`pki-<verb>-<suffix>`; a `|`-separated suffix names each path a pattern expands to, in order."""
    return DisplayAttrs(operation_prefix=PREFIX, operation_verb=verb, operation_suffix=suffix)


def label(name: str = "", value: Any = None) -> DisplayAttrs:
    return DisplayAttrs(name=name, value=value)


# The web UI's labels and pre-filled values for the request fields that CA generation, CA signing and
# leaf issuance share (the built-in engine's, so forms look and start the same on either engine).
REQUEST_LABELS: dict[str, DisplayAttrs] = {
    "alt_names": label("DNS/Email Subject Alternative Names (SANs)"),
    "ip_sans": label("IP Subject Alternative Names (SANs)"),
    "uri_sans": label("URI Subject Alternative Names (SANs)"),
    "other_sans": label("Other SANs"),
    "exclude_cn_from_sans": label("Exclude Common Name from Subject Alternative Names (SANs)"),
    "ttl": label("TTL"),
    "format": label(value="pem"),
    "private_key_format": label(value="der"),
    "user_ids": label("User ID(s)"),
}

# Subject fields of CA requests.
CA_SUBJECT_LABELS: dict[str, DisplayAttrs] = {
    "ou": label("OU (Organizational Unit)"),
    "locality": label("Locality/City"),
    "province": label("Province/State"),
    "street_address": label("Street Address"),
    "postal_code": label("Postal Code"),
    "not_before_duration": label(value=30),
    "permitted_dns_domains": label("Permitted DNS Domains"),
}
