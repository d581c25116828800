"""Account import, lookup/orders/recent and role/:name/cached on InMemoryStorage with the fake CA."""
from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from engine.external_ca import keys
from plugin.framework import Operation
from .test_api import Env, csr_pem, run, setup


def pem(key: Any) -> str:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL
                             if not isinstance(key, ed25519.Ed25519PrivateKey) else serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


@pytest.fixture()
def env(monkeypatch):
    return Env(monkeypatch)


def registered_key(env: Env, contacts: list[str]) -> tuple[Any, str]:
    key = ec.generate_private_key(ec.SECP384R1())
    url = env.ca.register("https://ca.test/dir", key, contacts, "", "", True)
    return key, url


# --- config/acme-account/:name/import ------------------------------------------------------------------

def test_import_stores_the_account_with_contacts_from_the_ca(env):
    async def go():
        c = env.client
        key, url = registered_key(env, ["ops@example.com"])
        st, body = await c.write("config/acme-account/imp/import", {
            "directory_url": "https://ca.test/dir", "account_key": pem(key), "account_url": url})
        assert st == 200, body
        d = body["data"]
        assert d["name"] == "imp" and d["email_contacts"] == ["ops@example.com"]
        assert d["active_key_version"] == 0 and d["key_type"] == "ec-384"
        assert d["account_keys"]["0"]["key_type"] == "ec-384"
        assert not any("BEGIN" in str(v) for v in d.values())     # the key is never returned
        st, read = await c.read("config/acme-account/imp")
        assert st == 200 and read["data"] == d
        stored = c.storage.entries["account-key/imp/0"]
        assert stored.seal_wrap
        again = keys.from_pem(stored.value.decode())
        assert again.private_numbers() == key.private_numbers()
        # The imported account is usable: a role and an order on it complete.
        st, _ = await c.write("role/web", {"acme_account_name": "imp", "allowed_domains": "example.com",
                                           "allowed_domain_options": "bare_domains"})
        env.ca.reuse_valid = True
        _, order = await c.write("role/web/new-order", {"identifiers": "example.com"})
        st, status = await c.read(f"role/web/order/{order['data']['order_id']}/status")
        assert status["data"]["order_status"] == "completed"
    run(go())


def _bad_imports(env: Env) -> list[tuple[dict[str, Any], str]]:
    key, url = registered_key(env, ["ops@example.com"])
    stranger = ec.generate_private_key(ec.SECP256R1())
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    return [
        ({"account_key": pem(key)}, "directory_url"),
        ({"directory_url": "ftp://ca.test/dir", "account_key": pem(key)}, "directory_url"),
        ({"directory_url": "https://ca.test/dir"}, "account_key"),
        ({"directory_url": "https://ca.test/dir", "account_key": "-----BEGIN PRIVATE KEY-----\nAAAA\n"
                                                                  "-----END PRIVATE KEY-----"}, "account_key"),
        ({"directory_url": "https://ca.test/dir", "account_key": pem(ed25519.Ed25519PrivateKey.generate())},
         "account_key"),
        ({"directory_url": "https://ca.test/dir", "account_key": pem(weak)}, "rsa-1024"),
        ({"directory_url": "https://ca.test/dir", "account_key": pem(stranger)}, "knows no account"),
        ({"directory_url": "https://ca.test/dir", "account_key": pem(key), "account_url": url + "0"}, "not"),
        ({"directory_url": "https://ca.test/dir", "account_key": pem(key), "trusted_ca": "x"}, "trusted_ca"),
    ]


def test_bad_imports_are_refused_and_store_nothing(env):
    async def go():
        c = env.client
        for fields, message in _bad_imports(env):
            st, body = await c.write("config/acme-account/imp/import", fields)
            assert st == 400 and message in body["errors"][0], (fields.keys(), body)
            assert "BEGIN" not in body["errors"][0]
            assert c.storage.snapshot() == {}
    run(go())


def test_import_refuses_deactivated_account_and_existing_name(env):
    async def go():
        c = await setup(env)
        key, url = registered_key(env, [])
        env.ca.accounts[next(k for k, v in env.ca.accounts.items() if v[0] == url)] = (url, [], "deactivated")
        before = c.storage.snapshot()
        st, body = await c.write("config/acme-account/imp/import", {"directory_url": "https://ca.test/dir",
                                                                   "account_key": pem(key)})
        assert st == 400 and "deactivated" in body["errors"][0]
        key2, _ = registered_key(env, [])
        st, body = await c.write("config/acme-account/le/import", {"directory_url": "https://ca.test/dir",
                                                                  "account_key": pem(key2)})
        assert st == 400 and "already exists" in body["errors"][0]
        assert c.storage.snapshot() == before
    run(go())


# --- lookup/orders/recent ------------------------------------------------------------------------------

def test_recent_orders_window_and_key_info(env):
    async def go():
        c = await setup(env)
        st, _ = await c.list("lookup/orders/recent")
        assert st == 404
        _, a = await c.write("role/web/new-order", {"identifiers": "a.example.com"})
        _, b = await c.write("role/web/new-order", {"identifiers": "b.example.com"})
        env.tick(2 * 3600)
        _, n = await c.write("role/web/new-order", {"identifiers": "n.example.com"})
        ids = {x: body["data"]["order_id"] for x, body in (("a", a), ("b", b), ("n", n))}
        st, body = await c.list("lookup/orders/recent")          # the UI's default window is 1h
        assert st == 200 and body["data"]["keys"] == [ids["n"]]
        info = body["data"]["key_info"][ids["n"]]
        assert info == {"creation_date": "2030-01-01T14:00:00Z", "identifiers": ["n.example.com"],
                        "last_update": "2030-01-01T14:00:00Z", "order_status": "new", "role_name": "web"}
        st, body = await c.call(Operation.LIST, "lookup/orders/recent", {"within": "3h"})
        assert st == 200 and set(body["data"]["keys"]) == set(ids.values())
        assert body["data"]["keys"][0] == ids["n"]                 # newest first
        # An old order that moves is recent again.
        await c.read(f"role/web/order/{ids['a']}/status")
        st, body = await c.list("lookup/orders/recent")
        assert set(body["data"]["keys"]) == {ids["n"], ids["a"]}
        assert body["data"]["key_info"][ids["a"]]["order_status"] == "awaiting-challenge-fulfillment"
    run(go())


@pytest.mark.parametrize("within", ["soon", "0s", "-5m"])
def test_recent_orders_bad_window_is_400(env, within):
    async def go():
        c = await setup(env)
        await c.write("role/web/new-order", {"identifiers": "a.example.com"})
        before = c.storage.snapshot()
        st, body = await c.call(Operation.LIST, "lookup/orders/recent", {"within": within})
        assert st == 400, body
        assert c.storage.snapshot() == before
    run(go())


# --- role/:name/cached ---------------------------------------------------------------------------------

async def completed_order(env: Env, c: Any, identifiers: str) -> str:
    env.ca.reuse_valid = True
    _, body = await c.write("role/web/new-order", {"identifiers": identifiers})
    oid = body["data"]["order_id"]
    st, status = await c.read(f"role/web/order/{oid}/status")
    assert status["data"]["order_status"] == "completed", status
    return oid


def test_cached_returns_newest_valid_certificate_with_key(env):
    async def go():
        # The fake CA issues 7-day certificates from the real clock.
        env.now = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
        c = await setup(env)
        first = await completed_order(env, c, "www.example.com,api.example.com")
        env.tick(60)
        second = await completed_order(env, c, "api.example.com,www.example.com")
        assert first != second
        st, body = await c.read("role/web/cached", {"identifiers": "API.example.com,www.example.com",
                                                    "min_validity_percentage": 50})
        assert st == 200, body
        d = body["data"]
        assert d["order_id"] == second and d["private_key"].startswith("-----BEGIN")
        _, fetched = await c.read(f"role/web/order/{second}/fetch-cert")
        assert {k: v for k, v in d.items() if k != "order_id"} == fetched["data"]
        st, body = await c.read("role/web/cached", {"identifiers": "www.example.com,api.example.com",
                                                    "min_validity_duration": "6d", "certificate_format": "der"})
        assert st == 200 and "BEGIN" not in body["data"]["certificate"]
        # Not enough validity left, or a different identifier set: nothing cached.
        st, _ = await c.read("role/web/cached", {"identifiers": "www.example.com,api.example.com",
                                                 "min_validity_duration": "8d"})
        assert st == 404
        st, _ = await c.read("role/web/cached", {"identifiers": "www.example.com",
                                                 "min_validity_percentage": 10})
        assert st == 404
        env.tick(8 * 86400)
        st, _ = await c.read("role/web/cached", {"identifiers": "www.example.com,api.example.com",
                                                 "min_validity_percentage": 0})
        assert st == 404                                            # expired certificates never count
    run(go())


def test_cached_ignores_csr_workflow_and_revoked_orders(env):
    async def go():
        env.now = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
        c = await setup(env)
        env.ca.reuse_valid = True
        _, body = await c.write("role/web/new-order", {"csr": csr_pem(["example.com"])})
        await c.read(f"role/web/order/{body['data']['order_id']}/status")
        oid = await completed_order(env, c, "example.com")
        q = {"identifiers": "example.com", "min_validity_percentage": 1}
        st, body = await c.read("role/web/cached", q)
        assert st == 200 and body["data"]["order_id"] == oid
        await c.write(f"role/web/order/{oid}/revoke", {})
        st, _ = await c.read("role/web/cached", q)
        assert st == 404
    run(go())


@pytest.mark.parametrize("query,message", [
    ({"identifiers": "example.com"}, "exactly one"),
    ({"identifiers": "example.com", "min_validity_percentage": 5, "min_validity_duration": "1h"}, "exactly one"),
    ({"min_validity_percentage": 5}, "identifiers"),
    ({"identifiers": "example.com", "min_validity_percentage": 101}, "between"),
    ({"identifiers": "example.com", "min_validity_percentage": -1}, "between"),
    ({"identifiers": "evil.org", "min_validity_percentage": 5}, "not allowed"),
    ({"identifiers": "not a name", "min_validity_percentage": 5}, "invalid"),
    ({"identifiers": "example.com", "min_validity_percentage": 5, "certificate_format": "p12"}, "certificate_format"),
])
def test_cached_bad_input_is_400(env, query, message):
    async def go():
        c = await setup(env)
        before = c.storage.snapshot()
        st, body = await c.read("role/web/cached", query)
        assert st == 400 and message in body["errors"][0], body
        st, body = await c.read("role/nope/cached", {"identifiers": "example.com", "min_validity_percentage": 5})
        assert st == 400 and "unknown role" in body["errors"][0]
        assert c.storage.snapshot() == before
    run(go())
