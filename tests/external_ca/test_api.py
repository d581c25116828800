"""The external-CA API without a server or a CA: shapes consumers rely on, the state machine on a fake CA,
rate limits, expiry, and bad input that must leave storage untouched."""
from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization

from engine.external_ca import build_backend
from engine.external_ca.acme_client import AcmeFailed, RetryLater
from engine.external_ca.common import SEAL_WRAPPED_PREFIXES
from engine.external_ca.records import load_order
from plugin.framework import StaticSystemView
from .fake_ca import FakeCA
from .flows import csr_pem
from .harness import Client

NOW = dt.datetime(2030, 1, 1, 12, 0, tzinfo=dt.timezone.utc)


class Env:
    def __init__(self, monkeypatch: Any, system: StaticSystemView | None = None) -> None:
        self.now = NOW
        self.ca = FakeCA(now=lambda: self.now)
        self.ca.install(monkeypatch)
        self.client = Client(build_backend(clock=lambda: self.now), system=system)

    def tick(self, seconds: float) -> None:
        self.now += dt.timedelta(seconds=seconds)


def run(coro: Any) -> Any:
    return asyncio.run(coro)


@pytest.fixture()
def env(monkeypatch):
    return Env(monkeypatch)


async def setup(env: Env, **role: Any) -> Client:
    c = env.client
    st, body = await c.write("config/acme-account/le", {"directory_url": "https://ca.test/dir",
                                                        "email_contacts": "a@example.com,b@example.com"})
    assert st == 200, body
    fields = {"acme_account_name": "le", "allowed_domains": "example.com",
              "allowed_domain_options": "bare_domains,subdomains", **role}
    st, body = await c.write("role/web", fields)
    assert st == 200, body
    return c


async def status(c: Client, oid: str, role: str = "web") -> dict[str, Any]:
    st, body = await c.read(f"role/{role}/order/{oid}/status")
    assert st == 200, body
    return body["data"]


# --- shapes -------------------------------------------------------------------------------------------

def test_account_write_answers_200_with_typed_fields(env):
    async def go():
        c = env.client
        st, body = await c.write("config/acme-account/le", {
            "directory_url": "https://ca.test/dir", "email_contacts": ["a@example.com"], "key_type": "ec-384"})
        assert st == 200
        d = body["data"]
        assert d["active_key_version"] == 0 and d["email_contacts"] == ["a@example.com"]
        assert d["account_keys"] == {"0": {"key_type": "ec-384", "key_version": 0,
                                           "key_creation_date": "2030-01-01T12:00:00Z"}}
        assert d["trusted_ca"] == "" and d["last_updated_date"] == "2030-01-01T12:00:00Z"
        assert not any("eab" in k for k in d)
        # Terraform's update: immutable fields re-sent unchanged, only trusted_ca differs.
        st, body = await c.write("config/acme-account/le", {
            "directory_url": "https://ca.test/dir", "email_contacts": ["a@example.com"], "key_type": "ec-384",
            "trusted_ca": env.ca.ca_cert.public_bytes(serialization.Encoding.PEM).decode()})
        assert st == 200 and body["data"]["trusted_ca"].startswith("-----BEGIN CERTIFICATE")
        st, body = await c.list("config/acme-account")
        assert body["data"]["keys"] == ["le"]
        stored = c.storage.entries
        keys = [k for k in stored if k.startswith("account-key/")]
        assert keys and all(stored[k].seal_wrap for k in keys)
        assert c.backend.special_paths.seal_wrap_storage == SEAL_WRAPPED_PREFIXES
    run(go())


def test_role_shape_defaults_and_cli_comma_strings(env):
    async def go():
        c = await setup(env)
        st, body = await c.read("role/web")
        d = body["data"]
        assert d["allowed_domains"] == ["example.com"]
        assert d["allowed_domain_options"] == ["bare_domains", "subdomains"]
        assert d["allowed_challenge_types"] == ["http-01", "dns-01", "tls-alpn-01"]
        assert d["csr_generate_key_type"] == "ec-256" and d["csr_identifier_population"] == "cn_first"
        assert isinstance(d["creation_date"], str) and isinstance(d["last_updated_date"], str)
        st, body = await c.write("role/web", {"allowed_challenge_types": ["http-01"]})
        assert st == 200 and body["data"]["allowed_domains"] == ["example.com"]
        assert body["data"]["allowed_challenge_types"] == ["http-01"]
    run(go())


# --- state machine ------------------------------------------------------------------------------------

def test_state_machine_walk_identifier_workflow(env):
    async def go():
        c = await setup(env)
        st, body = await c.write("role/web/new-order", {"identifiers": "www.example.com,api.example.com"})
        oid = body["data"]["order_id"]
        assert (await load_order(c.storage, oid)).status.value == "new"
        assert env.ca.calls == ["register"]     # new-order itself does no ACME work
        d = await status(c, oid)
        assert d["order_status"] == "awaiting-challenge-fulfillment"
        assert d["next_work_date"] == "0001-01-01T00:00:00Z"
        assert set(d["challenges"]) == {"www.example.com", "api.example.com"}
        for challs in d["challenges"].values():
            assert all(isinstance(v, str) for ch in challs for v in ch.values())
        st, ch = await c.read(f"role/web/order/{oid}/challenge",
                              {"identifier": "www.example.com", "challenge_type": "dns-01"})
        assert st == 200
        assert ch["data"]["dns_record_name"] == "_acme-challenge.www.example.com"
        assert ch["data"]["challenge_auth"].startswith(ch["data"]["challenge_token"] + ".")
        st, _ = await c.write(f"role/web/order/{oid}/fulfilled-challenge",
                              {"identifier": "www.example.com", "challenge_type": "http-01"})
        assert st == 204
        assert (await load_order(c.storage, oid)).status.value == "awaiting-challenge-fulfillment"
        st, _ = await c.write(f"role/web/order/{oid}/fulfilled-challenge",
                              {"identifier": "api.example.com", "challenge_type": "http-01"})
        assert (await load_order(c.storage, oid)).status.value == "notify-acme-server-challenges-completed"
        d = await status(c, oid)
        assert d["order_status"] == "processing-challenge"     # answered; next poll is scheduled
        env.tick(2)
        d = await status(c, oid)
        assert d["order_status"] == "completed", d
        assert d["serial_number"] and d["last_error"] == ""
        st, cert = await c.read(f"role/web/order/{oid}/fetch-cert")
        assert st == 200 and cert["data"]["private_key_type"] == "EC"
        assert cert["data"]["ca_chain"] and cert["data"]["certificate_format"] == "pem"
        assert c.storage.entries[f"order-key/{oid}"].seal_wrap
        st, der = await c.read(f"role/web/order/{oid}/fetch-cert", {"certificate_format": "der"})
        assert "BEGIN" not in der["data"]["certificate"]
    run(go())


def test_preauthorized_identifiers_skip_challenges(env):
    async def go():
        c = await setup(env)
        env.ca.reuse_valid = True
        st, body = await c.write("role/web/new-order", {"identifiers": "example.com"})
        d = await status(c, body["data"]["order_id"])
        assert d["order_status"] == "completed"
    run(go())


def test_rate_limit_waits_for_retry_after(env):
    async def go():
        c = await setup(env)
        env.ca.fail_next("create_order", RetryLater("ACME error rateLimited", 30))
        st, body = await c.write("role/web/new-order", {"identifiers": "example.com"})
        oid = body["data"]["order_id"]
        d = await status(c, oid)
        assert d["order_status"] == "new" and "rateLimited" in d["last_error"]
        assert d["next_work_date"] == "2030-01-01T12:00:30Z"
        calls = env.ca.calls.count("create_order")
        env.tick(10)
        await status(c, oid)
        assert env.ca.calls.count("create_order") == calls      # Retry-After is honoured
        env.tick(25)
        d = await status(c, oid)
        assert d["order_status"] == "awaiting-challenge-fulfillment" and d["last_error"] == ""
    run(go())


def test_refusal_by_the_ca_is_an_error_state(env):
    async def go():
        c = await setup(env)
        env.ca.fail_next("create_order", AcmeFailed("ACME error rejectedIdentifier: no"))
        st, body = await c.write("role/web/new-order", {"identifiers": "example.com"})
        d = await status(c, body["data"]["order_id"])
        assert d["order_status"] == "error" and "rejectedIdentifier" in d["last_error"]
    run(go())


def test_order_expiry_via_periodic(env):
    async def go():
        c = await setup(env)
        st, body = await c.write("role/web/new-order", {"identifiers": "example.com"})
        oid = body["data"]["order_id"]
        assert (await status(c, oid))["order_status"] == "awaiting-challenge-fulfillment"
        env.tick(2 * 86400)
        await c.periodic()
        assert (await load_order(c.storage, oid)).status.value == "expired"
        st, _ = await c.list("role/web/active-orders")
        assert st == 404
    run(go())


def test_periodic_advances_due_orders(env):
    async def go():
        c = await setup(env)
        env.ca.processing_polls = 1
        st, body = await c.write("role/web/new-order", {"identifiers": "example.com"})
        oid = body["data"]["order_id"]
        await c.periodic()
        assert (await load_order(c.storage, oid)).status.value == "awaiting-challenge-fulfillment"
        await c.write(f"role/web/order/{oid}/fulfilled-challenge",
                      {"identifier": "example.com", "challenge_type": "http-01"})
        for _ in range(4):
            env.tick(5)
            await c.periodic()
        assert (await load_order(c.storage, oid)).status.value == "completed"
    run(go())


def test_shared_active_order_and_active_list(env):
    async def go():
        c = await setup(env)
        _, a = await c.write("role/web/new-order", {"identifiers": "a.example.com,b.example.com"})
        _, b = await c.write("role/web/new-order", {"identifiers": ["b.example.com", "A.example.com"]})
        assert a["data"]["order_id"] == b["data"]["order_id"] and b["warnings"]
        _, other = await c.write("role/web/new-order", {"identifiers": "a.example.com"})
        assert other["data"]["order_id"] != a["data"]["order_id"]
        st, listed = await c.list("role/web/active-orders")
        assert sorted(listed["data"]["keys"]) == sorted([a["data"]["order_id"], other["data"]["order_id"]])
    run(go())


def test_identity_templated_role(monkeypatch):
    system = StaticSystemView(entities={"ent-1": {"id": "ent-1", "name": "alice", "metadata": {}}})
    env = Env(monkeypatch, system)

    async def go():
        c = await setup(env, allowed_domains="{{identity.entity.name}}.users.example.com",
                        allowed_domain_options="bare_domains")
        st, _ = await c.write("role/web/new-order", {"identifiers": "alice.users.example.com"}, entity_id="ent-1")
        assert st == 200
        before = c.storage.snapshot()
        st, body = await c.write("role/web/new-order", {"identifiers": "bob.users.example.com"}, entity_id="ent-1")
        assert st == 400 and "bob.users.example.com" in body["errors"][0]
        st, _ = await c.write("role/web/new-order", {"identifiers": "alice.users.example.com"})
        assert st == 400      # no entity: the template admits nothing
        assert c.storage.snapshot() == before
    run(go())


def test_revoke_goes_to_the_ca(env):
    async def go():
        c = await setup(env)
        env.ca.reuse_valid = True
        _, body = await c.write("role/web/new-order", {"identifiers": "example.com"})
        oid = body["data"]["order_id"]
        assert (await status(c, oid))["order_status"] == "completed"
        st, _ = await c.write(f"role/web/order/{oid}/revoke", {"reason": "key_compromise"})
        assert st == 204 and env.ca.revoked == [1]
        assert (await status(c, oid))["order_status"] == "revoked"
    run(go())


# --- bad input: 4xx and nothing stored --------------------------------------------------------------------

BAD_ORDERS = [
    ({"identifiers": "evil.com"}, "not allowed"),
    ({"identifiers": "*.example.com"}, "not allowed"),
    ({"identifiers": "127.0.0.1"}, "not allowed"),
    ({"identifiers": "not a name"}, "invalid"),
    ({"csr": "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----"}, "csr"),
    ({"csr": "garbage"}, "csr"),
    ({}, "required"),
    ({"identifiers": "example.com", "csr": "x"}, "mutually exclusive"),
]


@pytest.mark.parametrize("fields,message", BAD_ORDERS)
def test_bad_new_order_stores_nothing(env, fields, message):
    async def go():
        c = await setup(env)
        before = c.storage.snapshot()
        st, body = await c.write("role/web/new-order", fields)
        assert st == 400 and message in body["errors"][0], body
        assert c.storage.snapshot() == before
    run(go())


def test_csr_outside_role_refused(env):
    async def go():
        c = await setup(env)
        before = c.storage.snapshot()
        st, body = await c.write("role/web/new-order", {"csr": csr_pem(["www.example.com", "evil.org"])})
        assert st == 400 and "evil.org" in body["errors"][0]
        assert c.storage.snapshot() == before
    run(go())


def test_unknown_account_and_role_refused(env):
    async def go():
        c = await setup(env)
        before = c.storage.snapshot()
        st, body = await c.write("role/other", {"acme_account_name": "nope", "allowed_domains": "example.com"})
        assert st == 400 and "unknown ACME account" in body["errors"][0]
        st, body = await c.write("role/nope/new-order", {"identifiers": "example.com"})
        assert st == 400 and "unknown role" in body["errors"][0]
        st, body = await c.write("role/web", {"acme_account_name": "other"})
        assert st == 400 and "cannot be changed" in body["errors"][0]
        st, body = await c.write("role/web", {"allowed_domain_options": "everything"})
        assert st == 400
        st, body = await c.write("config/acme-account/le", {"directory_url": "https://elsewhere.test/dir"})
        assert st == 400 and "cannot be changed" in body["errors"][0]
        st, body = await c.delete("config/acme-account/le")
        assert st == 400 and "web" in body["errors"][0]
        assert c.storage.snapshot() == before
    run(go())


@pytest.mark.parametrize("fields,message", [
    ({"directory_url": "https://ca.test/dir"}, "email_contacts"),
    ({"email_contacts": "a@example.com"}, "directory_url"),
    ({"directory_url": "ftp://x", "email_contacts": "a@example.com"}, "directory_url"),
    ({"directory_url": "https://ca.test/dir", "email_contacts": "not-an-email"}, "e-mail"),
    ({"directory_url": "https://ca.test/dir", "email_contacts": "a@example.com", "key_type": "rsa-1024"}, "key_type"),
    ({"directory_url": "https://ca.test/dir", "email_contacts": "a@example.com", "eab_kid": "k"}, "together"),
    ({"directory_url": "https://ca.test/dir", "email_contacts": "a@example.com", "trusted_ca": "nope"}, "trusted_ca"),
])
def test_bad_account_stores_nothing(env, fields, message):
    async def go():
        c = env.client
        st, body = await c.write("config/acme-account/x", fields)
        assert st == 400 and message in body["errors"][0], body
        assert c.storage.snapshot() == {}
        assert "register" not in env.ca.calls
    run(go())


def test_registration_refused_by_ca_stores_nothing(env):
    async def go():
        env.ca.fail_next("register", AcmeFailed("ACME error externalAccountRequired: eab"))
        st, body = await env.client.write("config/acme-account/x", {"directory_url": "https://ca.test/dir",
                                                                    "email_contacts": "a@example.com"})
        assert st == 400 and "externalAccountRequired" in body["errors"][0]
        assert env.client.storage.snapshot() == {}
    run(go())


def test_challenge_type_forbidden_and_foreign_order(env):
    async def go():
        c = await setup(env, allowed_challenge_types="http-01")
        st, _ = await c.write("role/second", {"acme_account_name": "le", "allowed_domains": "example.com"})
        _, body = await c.write("role/web/new-order", {"identifiers": "example.com"})
        oid = body["data"]["order_id"]
        await status(c, oid)
        before = c.storage.snapshot()
        for op in (c.read, c.write):
            path = "challenge" if op == c.read else "fulfilled-challenge"
            st, body = await op(f"role/web/order/{oid}/{path}", {"identifier": "example.com",
                                                                   "challenge_type": "dns-01"})
            assert st == 400 and "not allowed" in body["errors"][0]
            st, body = await op(f"role/web/order/{oid}/{path}", {"identifier": "other.example.com",
                                                                   "challenge_type": "http-01"})
            assert st == 400 and "not part of order" in body["errors"][0]
        st, _ = await c.read(f"role/second/order/{oid}/status")
        assert st == 404
        st, _ = await c.write(f"role/second/order/{oid}/fulfilled-challenge",
                              {"identifier": "example.com", "challenge_type": "http-01"})
        assert st == 404
        st, _ = await c.read(f"role/second/order/{oid}/fetch-cert")
        assert st == 404
        st, _ = await c.write(f"role/second/order/{oid}/revoke", {})
        assert st == 404
        st, body = await c.read(f"role/web/order/{oid}/fetch-cert")
        assert st == 400 and "not completed" in body["errors"][0]
        st, _ = await c.delete("role/web")
        assert st == 400
        assert c.storage.snapshot() == before
        st, _ = await c.delete("role/web", {"force": "true"})
        assert st == 204
        assert (await load_order(c.storage, oid)).status.value == "error"
    run(go())


def test_rotate_key_refused_with_waiting_orders_unless_forced(env):
    async def go():
        c = await setup(env)
        _, body = await c.write("role/web/new-order", {"identifiers": "example.com"})
        await status(c, body["data"]["order_id"])
        before = c.storage.snapshot()
        st, resp = await c.write("config/acme-account/le/rotate-key", {})
        assert st == 400 and "force" in resp["errors"][0]
        assert c.storage.snapshot() == before
        st, resp = await c.write("config/acme-account/le/rotate-key", {"force": True, "key_type": "rsa-2048"})
        assert st == 200 and resp["data"]["new_active_key_version"] == 1
        st, acct = await c.read("config/acme-account/le")
        assert acct["data"]["key_type"] == "rsa-2048" and set(acct["data"]["account_keys"]) == {"0", "1"}
    run(go())


def test_interrupted_key_change_is_resolved(env):
    async def go():
        c = await setup(env)
        env.ca.fail_next("key_change", RetryLater("connection reset"))
        st, body = await c.write("config/acme-account/le/rotate-key", {})
        assert st == 400
        from engine.external_ca.records import load_account
        acct = await load_account(c.storage, "le")
        assert acct.pending_key_version == 1       # unknown whether the CA switched keys
        # The CA says it never saw the new key: the rotation is undone on the next periodic run.
        await c.periodic()
        acct = await load_account(c.storage, "le")
        assert acct.pending_key_version is None and acct.active_key_version == 0
        assert await c.storage.get("account-key/le/1") is None
    run(go())


def test_root_help_and_openapi_cover_every_path(env):
    async def go():
        from plugin.framework import Operation, Request
        out = await env.client.backend.handle(Request(operation=Operation.HELP, path="", storage=env.client.storage,
                                                      data={"requestResponsePrefix": "python-pki-external-ca"}))
        assert out.error is None
        paths = out.response.data["openapi"]["paths"]
        assert "/role/{name}/order/{order_id}/challenge" in paths and "/role/{name}/new-order" in paths
        assert not [p for p in paths if "(" in p]
    run(go())


def test_plural_challenges_alias_from_seed_003(env):
    async def go():
        c = await setup(env)
        _, body = await c.write("role/web/new-order", {"identifiers": "example.com"})
        oid = body["data"]["order_id"]
        await status(c, oid)
        q = {"identifier": "example.com", "challenge_type": "http-01"}
        _, one = await c.read(f"role/web/order/{oid}/challenge", q)
        _, two = await c.read(f"role/web/order/{oid}/challenges", q)
        assert one["data"] == two["data"] and one["data"]["http_path"].endswith(one["data"]["challenge_token"])
    run(go())
