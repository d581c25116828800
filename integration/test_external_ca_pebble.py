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
    # The other lookups and the cache, through the server: query parameters on reads and lists included.
    assert xca.ok("GET", f"lookup/order/{oid}")["order_status"] == "completed"
    assert oid in xca.ok("GET", "lookup/orders", params={"list": "true"})["keys"]
    recent = xca.ok("GET", "lookup/orders/recent", params={"list": "true", "within": "10m"})
    assert oid in recent["keys"] and recent["key_info"][oid]["role_name"] == "web"
    assert xca.req("GET", "lookup/orders/recent", params={"list": "true", "within": "soon"}).status_code == 400
    cached = xca.ok("GET", "role/web/cached", params={"identifiers": ",".join(reversed(identifiers)),
                                                       "min_validity_percentage": "50"})
    assert cached["order_id"] == oid and cached["serial_number"] == cert["serial_number"]
    assert cached["private_key"] == cert["private_key"]
    assert xca.req("GET", "role/web/cached", params={"identifiers": "other.example.com",
                                                      "min_validity_duration": "1m"}).status_code == 404
    missing_window = xca.req("GET", "role/web/cached", params={"identifiers": identifiers[0]})
    assert missing_window.status_code == 400 and "min_validity" in missing_window.text
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


def test_an_account_registered_elsewhere_is_imported_and_orders(xca, pebble_ca, tmp_path):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    from engine.external_ca import acme_client
    key = ec.generate_private_key(ec.SECP384R1())
    ca_file = tmp_path / "pebble-tls-ca.pem"
    ca_file.write_text(pebble_ca.tls_ca_pem)
    url = acme_client.register(pebble_ca.directory_url, key, ["ops@example.com"], "", "", str(ca_file))
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    common = {"directory_url": pebble_ca.directory_url, "account_key": key_pem, "trusted_ca": pebble_ca.tls_ca_pem}
    wrong = xca.req("PUT", "config/acme-account/imp/import", json={**common, "account_url": url + "0"})
    assert wrong.status_code == 400 and "PRIVATE KEY" not in wrong.text
    assert xca.req("GET", "config/acme-account/imp").status_code == 404
    acct = xca.ok("PUT", "config/acme-account/imp/import", json={**common, "account_url": url})
    assert acct["name"] == "imp" and acct["key_type"] == "ec-384" and acct["email_contacts"] == ["ops@example.com"]
    assert "PRIVATE KEY" not in str(acct)             # the imported key is never returned
    xca.ok("PUT", "role/imported", json={"acme_account_name": "imp", "allowed_domains": "example.com",
                                         "allowed_domain_options": "bare_domains",
                                         "allowed_challenge_types": "http-01"})
    oid = xca.ok("PUT", "role/imported/new-order", json={"identifiers": "example.com"})["order_id"]
    _fulfil_all(xca, pebble_ca, "imported", oid, "http-01")
    assert xca.wait_status("imported", oid, ("completed",))["order_status"] == "completed"
    cert = xca.ok("GET", f"role/imported/order/{oid}/fetch-cert")
    assert san_values(assert_chains_to_root(cert, pebble_ca.root_pem())) == {"example.com"}
