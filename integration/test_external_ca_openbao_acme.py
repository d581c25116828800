"""The external-CA backend ordering from OpenBao's own built-in PKI ACME server (in the same `bao`).

The built-in mount resolves names through challtestsrv (config/acme dns_resolver), so dns-01 is validated
for real; both workflows must end in a certificate chaining to that mount's root.
"""
from __future__ import annotations

import pytest

from integration.acme_support import external_ca_plugin, pebble_ca, xca  # noqa: F401 - fixtures
from integration.harness import unique_name
from tests.external_ca.flows import assert_chains_to_root, csr_pem, san_values

pytestmark = pytest.mark.acme


@pytest.fixture()
def builtin_acme(bao, pebble_ca):
    path = unique_name("acme-ca")
    bao.enable_builtin_mount(path)
    try:
        resp = bao.http("POST", f"sys/mounts/{path}/tune", json={
            "allowed_response_headers": ["Last-Modified", "Location", "Replay-Nonce", "Link"],
            "passthrough_request_headers": ["If-Modified-Since"], "max_lease_ttl": "87600h"})
        assert resp.status_code in (200, 204), resp.text
        root = bao.http("POST", f"{path}/root/generate/internal",
                        json={"common_name": "Built-in ACME Root", "ttl": "8760h", "key_type": "ec"})
        assert root.status_code == 200, root.text
        base = f"{bao.addr}/v1/{path}"
        assert bao.http("POST", f"{path}/config/cluster", json={"path": base, "aia_path": base}).status_code \
            in (200, 204)
        resp = bao.http("POST", f"{path}/config/acme", json={
            "enabled": True, "eab_policy": "not-required", "dns_resolver": f"127.0.0.1:{pebble_ca.dns_port}"})
        assert resp.status_code in (200, 204), resp.text
        yield f"{base}/acme/directory", root.json()["data"]["certificate"]
    finally:
        bao.disable_mount(path)


@pytest.mark.parametrize("workflow", ["identifiers", "csr"])
def test_order_from_openbao_builtin_acme(xca, pebble_ca, builtin_acme, workflow):
    directory, root_pem = builtin_acme
    xca.ok("PUT", "config/acme-account/bao", json={"directory_url": directory,
                                                   "email_contacts": "ops@example.com"})
    xca.ok("PUT", "role/web", json={"acme_account_name": "bao", "allowed_domains": "example.com",
                                    "allowed_domain_options": "subdomains", "allowed_challenge_types": "dns-01"})
    names = [f"{workflow}.bao.example.com", f"www.{workflow}.bao.example.com"]
    body = {"identifiers": names} if workflow == "identifiers" else {"csr": csr_pem(names)}
    oid = xca.ok("PUT", "role/web/new-order", json=body)["order_id"]
    data = xca.wait_status("web", oid, ("awaiting-challenge-fulfillment", "completed"))
    assert data["order_status"] in ("awaiting-challenge-fulfillment", "completed"), data
    for ident in data["challenges"]:
        ch = xca.ok("GET", f"role/web/order/{oid}/challenge", params={"identifier": ident,
                                                                     "challenge_type": "dns-01"})
        pebble_ca.add_txt(ch["dns_record_name"], ch["dns_record_value"])
        resp = xca.req("PUT", f"role/web/order/{oid}/fulfilled-challenge",
                       json={"identifier": ident, "challenge_type": "dns-01"})
        assert resp.status_code == 204, resp.text
    data = xca.wait_status("web", oid, ("completed",), timeout=120)
    assert data["order_status"] == "completed", data
    cert = xca.ok("GET", f"role/web/order/{oid}/fetch-cert")
    leaf = assert_chains_to_root(cert, root_pem)
    assert san_values(leaf) == set(names)
    assert ("private_key" in cert) == (workflow == "identifiers")
