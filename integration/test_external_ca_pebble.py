"""The external-CA backend served by our plugin inside a real `bao`, ordering from pebble (real http-01 and
dns-01 validation via challtestsrv), in the request order Terraform's resources use."""
from __future__ import annotations

import pytest

from integration.acme_support import external_ca_plugin, pebble_ca, xca  # noqa: F401 - fixtures
from tests.external_ca.flows import assert_chains_to_root, san_values

pytestmark = pytest.mark.acme


def _fulfil_all(xca, pebble_ca, role: str, oid: str, ctype: str) -> None:
    data = xca.wait_status(role, oid, ("awaiting-challenge-fulfillment", "completed"))
    if data["order_status"] == "completed":
        return
    assert data["order_status"] == "awaiting-challenge-fulfillment", data
    for ident, challs in data["challenges"].items():
        if all(c["challenge_status"] == "valid" for c in challs):
            continue
        # Terraform reads the challenge with query parameters (GET).
        ch = xca.ok("GET", f"role/{role}/order/{oid}/challenge",
                    params={"challenge_type": ctype, "identifier": ident})
        if ctype == "http-01":
            pebble_ca.add_http01(ch["challenge_token"], ch["challenge_auth"])
        else:
            pebble_ca.add_txt(ch["dns_record_name"], ch["dns_record_value"])
        resp = xca.req("PUT", f"role/{role}/order/{oid}/fulfilled-challenge",
                       json={"challenge_type": ctype, "identifier": ident})
        assert resp.status_code == 204, resp.text


@pytest.mark.parametrize("ctype,identifiers,options", [
    ("http-01", ["www.example.com", "127.0.0.1"], ["bare_domains", "subdomains"]),
    ("dns-01", ["*.wild.example.com"], ["wildcards", "subdomains"]),
])
def test_terraform_sequence_against_pebble(xca, pebble_ca, ctype, identifiers, options):
    acct = xca.ok("PUT", "config/acme-account/le", json={
        "directory_url": pebble_ca.directory_url, "key_type": "ec-256", "email_contacts": ["ops@example.com"],
        "trusted_ca": pebble_ca.tls_ca_pem})
    assert acct["active_key_version"] == 0 and acct["account_keys"]["0"]["key_type"] == "ec-256"
    role = xca.ok("PUT", "role/web", json={
        "acme_account_name": "le", "csr_generate_key_type": "ec-256", "csr_identifier_population": "cn_first",
        "allowed_domains": ["example.com"], "allowed_domain_options": options,
        "allowed_challenge_types": ["http-01", "dns-01", "tls-alpn-01"], "allowed_ip_ranges": ["127.0.0.0/8"]})
    assert role["last_updated_date"]
    oid = xca.ok("PUT", "role/web/new-order", json={"identifiers": identifiers})["order_id"]
    assert isinstance(oid, str)
    _fulfil_all(xca, pebble_ca, "web", oid, ctype)
    data = xca.wait_status("web", oid, ("completed",))
    assert data["order_status"] == "completed", data
    cert = xca.ok("GET", f"role/web/order/{oid}/fetch-cert")
    leaf = assert_chains_to_root(cert, pebble_ca.root_pem())
    assert san_values(leaf) == set(identifiers)
    assert cert["private_key"].startswith("-----BEGIN")
    found = xca.ok("GET", "lookup/cert/" + cert["serial_number"])
    assert found["order_id"] == oid
    # Destroy in Terraform's order.
    assert xca.req("DELETE", "role/web", params={"force": "true"}).status_code == 204
    assert xca.req("DELETE", "config/acme-account/le").status_code in (200, 204)
    assert xca.req("GET", "config/acme-account/le").status_code == 404


def test_bad_input_through_the_server_stores_nothing(bao, xca, pebble_ca):
    from integration.harness import mount_storage_keys
    xca.ok("PUT", "config/acme-account/le", json={
        "directory_url": pebble_ca.directory_url, "email_contacts": "ops@example.com",
        "trusted_ca": pebble_ca.tls_ca_pem})
    xca.ok("PUT", "role/web", json={"acme_account_name": "le", "allowed_domains": "example.com",
                                    "allowed_domain_options": "bare_domains", "allowed_challenge_types": "http-01"})
    before = mount_storage_keys(bao, xca.path)
    for body in ({"identifiers": "evil.org"}, {"csr": "not a csr"}, {"identifiers": "*.example.com"}):
        resp = xca.req("PUT", "role/web/new-order", json=body)
        assert resp.status_code == 400, resp.text
    resp = xca.req("PUT", "role/web2", json={"acme_account_name": "missing"})
    assert resp.status_code == 400 and "unknown ACME account" in resp.text
    assert xca.req("GET", "role/web/order/0190aaaa-0000-7000-8000-000000000000/status").status_code == 404
    assert mount_storage_keys(bao, xca.path) == before
