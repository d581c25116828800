"""fetch-cert hands out an identifier-workflow order's private key only to a caller the role's identity templates
admit for the order's identifiers right now, as role/:name/cached does."""
from __future__ import annotations

import datetime as dt

from plugin.framework import StaticSystemView
from .test_api import Env, run, setup

ENTITIES = {"ent-alice": {"id": "ent-alice", "name": "alice", "metadata": {}},
            "ent-bob": {"id": "ent-bob", "name": "bob", "metadata": {}}}


def test_fetch_cert_rechecks_the_caller_against_identity_templates(monkeypatch):
    env = Env(monkeypatch, StaticSystemView(entities=ENTITIES))

    async def go():
        env.now = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
        c = await setup(env, allowed_domains="{{identity.entity.name}}.users.example.com",
                        allowed_domain_options="bare_domains")
        env.ca.reuse_valid = True
        st, body = await c.write("role/web/new-order", {"identifiers": "alice.users.example.com"},
                                 entity_id="ent-alice")
        assert st == 200, body
        oid = body["data"]["order_id"]
        _, status = await c.read(f"role/web/order/{oid}/status", entity_id="ent-alice")
        assert status["data"]["order_status"] == "completed", status

        st, mine = await c.read(f"role/web/order/{oid}/fetch-cert", entity_id="ent-alice")
        assert st == 200 and mine["data"]["private_key"].startswith("-----BEGIN")

        for who in ("ent-bob", ""):
            for fmt in ("pem", "pem_bundle", "der"):
                st, theirs = await c.read(f"role/web/order/{oid}/fetch-cert", {"certificate_format": fmt},
                                          entity_id=who)
                assert st == 400, (who, fmt, theirs)
                assert "BEGIN" not in str(theirs) and "private_key" not in str(theirs.get("data", {}))
            # The same rule as role/:name/cached, which already refused bob.
            st, _ = await c.read("role/web/cached", {"identifiers": "alice.users.example.com",
                                                     "min_validity_percentage": 0}, entity_id=who)
            assert st == 400
    run(go())


def test_fetch_cert_on_a_plain_role_is_unchanged(monkeypatch):
    env = Env(monkeypatch)

    async def go():
        env.now = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
        c = await setup(env)
        env.ca.reuse_valid = True
        _, body = await c.write("role/web/new-order", {"identifiers": "www.example.com"})
        oid = body["data"]["order_id"]
        await c.read(f"role/web/order/{oid}/status")
        st, got = await c.read(f"role/web/order/{oid}/fetch-cert")
        assert st == 200 and got["data"]["private_key"].startswith("-----BEGIN")
    run(go())
