"""Account import, role/:name/cached and lookup/orders/recent against a real pebble + challtestsrv."""
from __future__ import annotations

import asyncio

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from engine.external_ca import acme_client, build_backend, keys
from engine.external_ca.records import load_account
from . import flows
from .harness import Client

pytestmark = pytest.mark.acme


def run(coro):
    return asyncio.run(coro)


def test_import_an_account_registered_elsewhere_and_order_with_it(pebble):
    async def go():
        # Registered by "another client": only the key and the directory are handed over.
        key = ec.generate_private_key(ec.SECP256R1())
        verify = Client(build_backend()).backend.runtime.verify_for(pebble.tls_ca_pem)
        url = acme_client.register(pebble.directory_url, key, ["elsewhere@example.com"], "", "", verify)
        key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                    serialization.NoEncryption()).decode()

        c = Client(build_backend())
        stranger = keys.to_pem(ec.generate_private_key(ec.SECP256R1()))
        st, body = await c.write("config/acme-account/pb/import", {
            "directory_url": pebble.directory_url, "account_key": stranger, "trusted_ca": pebble.tls_ca_pem})
        assert st == 400 and "knows no account" in body["errors"][0]
        assert c.storage.snapshot() == {}

        st, body = await c.write("config/acme-account/pb/import", {
            "directory_url": pebble.directory_url, "account_key": key_pem, "account_url": url,
            "trusted_ca": pebble.tls_ca_pem})
        assert st == 200, body
        assert body["data"]["email_contacts"] == ["elsewhere@example.com"]
        assert body["data"]["key_type"] == "ec-256"
        assert "PRIVATE" not in str(body["data"])
        assert c.storage.entries["account-key/pb/0"].seal_wrap
        assert (await load_account(c.storage, "pb")).account_url == url
        await flows.role(c, "imp", allowed_domains="imp.example.com", allowed_domain_options="bare_domains")
        oid = await flows.new_order(c, "imp", identifiers="imp.example.com")
        cert = await flows.complete(c, pebble, "imp", oid)
        flows.assert_chains_to_root(cert, pebble.root_pem())
    run(go())


def test_cached_and_recent_after_a_real_order(pebble):
    async def go():
        c = Client(build_backend())
        await flows.account(c, pebble)
        await flows.role(c, "cache", allowed_domains="cache.example.com", allowed_domain_options="bare_domains,subdomains")
        q = {"identifiers": "a.cache.example.com,cache.example.com", "min_validity_percentage": 50}
        st, _ = await c.read("role/cache/cached", q)
        assert st == 404
        oid = await flows.new_order(c, "cache", identifiers="cache.example.com,a.cache.example.com")
        cert = await flows.complete(c, pebble, "cache", oid)
        st, body = await c.read("role/cache/cached", q)
        assert st == 200 and body["data"]["order_id"] == oid
        assert body["data"]["certificate"] == cert["certificate"] and body["data"]["private_key"] == cert["private_key"]
        leaf = flows.assert_chains_to_root(body["data"], pebble.root_pem())
        key = serialization.load_pem_private_key(body["data"]["private_key"].encode(), None)
        assert key.public_key().public_numbers() == leaf.public_key().public_numbers()
        st, body = await c.read("role/cache/cached", {**q, "min_validity_percentage": 100})
        assert st == 404     # some of the validity period has passed
        st, recent = await c.list("lookup/orders/recent")
        assert st == 200 and recent["data"]["keys"] == [oid]
        assert recent["data"]["key_info"][oid]["order_status"] == "completed"
    run(go())
