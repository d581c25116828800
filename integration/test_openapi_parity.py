"""Our OpenAPI document against the built-in engine's, from the same server, for every path both have.

Both documents are what the web UI and client generators fetch (`GET /v1/<mount>?help=1`). Every
difference fails the test unless it is one of the deliberate ones below, which the README lists under
"OpenAPI" in its differences from the built-in engine.
"""
from __future__ import annotations

import re

from integration.harness import BaoServer
from integration.openapi_diff import diff

# Request fields only we accept (Vault's spellings and features OpenBao lacks; see the README), with the
# paths (a regex) where they may appear.
EXTRA_FIELDS = {
    "cert_metadata": r"(/issuer/\{issuer_ref\})?/(issue|sign|sign-verbatim)(/\{role\})?",  # certificate metadata
    "no_store_metadata": r"/roles/\{name\}",
    "managed_key_id": r".*/(generate|rotate)/.*|/intermediate/cross-sign",   # Vault's managed-key references
    "managed_key_name": r".*/(generate|rotate)/.*|/intermediate/cross-sign",
    "enforce_leaf_not_after_behavior": r".*/sign-intermediate",              # Vault's sign-intermediate option
    "key_usage": r"(/issuers)?/(intermediate/generate/\{exported\}|generate/intermediate/\{exported\})"
                 r"|/intermediate/cross-sign",                               # Vault accepts it on CSRs
    "max_ttl": r"/config/acme", "profiles": r"/config/acme", "enable_ari": r"/config/acme",  # ACME extensions
}
_EXTRA_FIELD = re.compile(r"^(\S+)\.(?:post|patch)\.requestBody\.content\.application/json\.properties\.(\w+): "
                          r"only in ours ")
# The built-in documents 1h as ocsp_expiry's default but applies 12h; we document the 12h we apply.
DELIBERATE = {
    '/config/crl.post.requestBody.content.application/json.properties.ocsp_expiry.default: '
    'built-in "1h" != ours "12h"',
}


def _deliberate(line: str) -> bool:
    m = _EXTRA_FIELD.search(line)
    return line in DELIBERATE or bool(m and m.group(2) in EXTRA_FIELDS
                                      and re.fullmatch(EXTRA_FIELDS[m.group(2)], m.group(1)))


def _doc(bao: BaoServer, mount: str) -> dict:
    resp = bao.http("GET", f"{mount}", params={"help": "1"})
    assert resp.status_code == 200, resp.text
    return resp.json()["openapi"]


def test_openapi_equals_the_builtin_on_shared_paths(bao: BaoServer, mounts) -> None:
    ref, ours = _doc(bao, mounts.ref), _doc(bao, mounts.ours)
    shared = set(ref["paths"]) & set(ours["paths"])
    # The expanded forms exist on both (issuer/{ref}/der, /pem, /json; keys/generate/internal, ...).
    for path in ("/issuer/{issuer_ref}/der", "/issuer/{issuer_ref}/json", "/issuer/{issuer_ref}/crl/delta/pem",
                 "/keys/generate/kms", "/issuers/import/bundle", "/roles/{name}", "/crl/delta/pem"):
        assert path in shared, path
    assert not [p for p in ours["paths"] if re.search(r"[^/]\{|\}[^/]", p)], "malformed templated path"
    assert len(shared) >= 70
    found = diff(ref, ours)
    unexpected = [line for line in found if not _deliberate(line)]
    print(f"{len(shared)} shared paths, {len(found)} differences, {len(found) - len(unexpected)} deliberate")
    assert unexpected == []


def test_no_empty_parameter_lists_and_patch_bodies(bao: BaoServer, mounts) -> None:
    ours = _doc(bao, mounts.ours)
    merged = bao.http("GET", "sys/internal/specs/openapi").json()["paths"]
    mine = {p: item for p, item in merged.items() if p.startswith(f"/{mounts.ours}/")}
    assert len(mine) == len(ours["paths"])
    for path, item in [*ours["paths"].items(), *mine.items()]:
        assert item.get("parameters", [None]) != [], path
        for method in ("get", "post", "patch", "delete"):
            if method in item:
                assert item[method].get("parameters", [None]) != [], (path, method)
    for path in ("/roles/{name}", "/issuer/{issuer_ref}"):
        ref = ours["paths"][path]["patch"]["requestBody"]["content"]["application/json"]["schema"]["$ref"]
        assert ours["components"]["schemas"][ref.rsplit("/", 1)[1]]["properties"], path


def test_role_form_defaults_the_ui_prefills(bao: BaoServer, mounts) -> None:
    """`GET roles/<name>?help=1`, as the role form loads it, pre-fills true booleans and shows the labels."""
    resp = bao.http("GET", f"{mounts.ours}/roles/example", params={"help": "1"})
    doc = resp.json()["openapi"]
    post = doc["paths"]["/roles/{name}"]["post"]
    schema = doc["components"]["schemas"][post["requestBody"]["content"]["application/json"]["schema"]["$ref"]
                                          .rsplit("/", 1)[1]]
    props = schema["properties"]
    for name in ("allow_localhost", "enforce_hostnames", "server_flag", "client_flag", "allow_ip_sans"):
        assert props[name]["x-vault-displayAttrs"]["value"] is True, name
    assert props["ttl"]["x-vault-displayAttrs"]["name"] == "TTL"
    issue = bao.http("GET", f"{mounts.ours}/issue/example", params={"help": "1"}).json()["openapi"]
    ref = issue["paths"]["/issue/{role}"]["post"]["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    fields = issue["components"]["schemas"][ref.rsplit("/", 1)[1]]["properties"]
    assert fields["private_key_format"]["x-vault-displayAttrs"] == {"value": "der"}
