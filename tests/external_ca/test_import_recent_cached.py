"""Account import, lookup/orders/recent and role/:name/cached on InMemoryStorage with the fake CA."""
from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from engine.external_ca import keys
from .test_api import Env, run, setup


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
