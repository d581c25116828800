"""End-to-end ACME flows against a real pebble + challtestsrv (real http-01 and dns-01 validation).

pebble runs with PEBBLE_WFE_NONCEREJECT (a quarter of nonces refused) and PEBBLE_AUTHZREUSE on.
"""
from __future__ import annotations

import asyncio
import datetime as dt

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from engine.external_ca import acme_client, build_backend, keys
from engine.external_ca.records import account_key_path, load_account, load_order
from . import flows
from .harness import Client

pytestmark = pytest.mark.acme


def run(coro):
    return asyncio.run(coro)


def test_identifier_workflow_http01_with_ip_chains_to_root(pebble):
    async def go():
        c = Client(build_backend())
        await flows.account(c, pebble)
        await flows.role(c, "web", allowed_domains="example.com", allowed_domain_options="subdomains",
                         allowed_ip_ranges="127.0.0.0/8", allowed_challenge_types="http-01")
        oid = await flows.new_order(c, "web", identifiers="www.example.com,127.0.0.1")
        assert (await flows.status(c, "web", oid))["order_status"] != "new"
        cert = await flows.complete(c, pebble, "web", oid, "http-01")
        leaf = flows.assert_chains_to_root(cert, pebble.root_pem())
        assert flows.san_values(leaf) == {"www.example.com", "127.0.0.1"}
        key = serialization.load_pem_private_key(cert["private_key"].encode(), None)
        assert key.public_key().public_numbers() == leaf.public_key().public_numbers()
        assert cert["private_key_type"] == "EC"
        st, found = await c.read("lookup/cert/" + cert["serial_number"].replace(":", "-").upper())
        assert st == 200 and found["data"]["order_id"] == oid
        st, listed = await c.list("role/web/active-orders")
        assert st == 404   # the only order is finished
    run(go())


def test_wildcard_dns01_and_revocation(pebble):
    async def go():
        c = Client(build_backend())
        await flows.account(c, pebble)
        await flows.role(c, "wild", allowed_domains="*.dns.example.org", allowed_domain_options="wildcards",
                         allowed_challenge_types="dns-01")
        oid = await flows.new_order(c, "wild", identifiers="*.dns.example.org")
        cert = await flows.complete(c, pebble, "wild", oid, "dns-01")
        leaf = flows.assert_chains_to_root(cert, pebble.root_pem())
        assert flows.san_values(leaf) == {"*.dns.example.org"}
        st, _ = await c.write(f"role/wild/order/{oid}/revoke", {"reason": "superseded"})
        assert st == 204
        assert (await flows.status(c, "wild", oid))["order_status"] == "revoked"
        st, body = await c.read(f"role/wild/order/{oid}/fetch-cert")
        assert st == 400
    run(go())


def _csr(names: list[str]) -> tuple[str, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
           .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False)
           .sign(key, hashes.SHA256()))
    return csr.public_bytes(serialization.Encoding.PEM).decode(), key


def test_csr_workflow_returns_no_key(pebble):
    async def go():
        c = Client(build_backend())
        await flows.account(c, pebble)
        await flows.role(c, "csr", allowed_domains="csr.example.net", allowed_domain_options="bare_domains,subdomains")
        pem, key = _csr(["a.csr.example.net", "csr.example.net"])
        oid = await flows.new_order(c, "csr", csr=pem)
        cert = await flows.complete(c, pebble, "csr", oid, "http-01")
        leaf = flows.assert_chains_to_root(cert, pebble.root_pem())
        assert "private_key" not in cert
        assert leaf.public_key().public_numbers() == key.public_key().public_numbers()
    run(go())


def test_same_identifiers_share_one_active_order(pebble):
    async def go():
        c = Client(build_backend())
        await flows.account(c, pebble)
        await flows.role(c, "lb", allowed_domains="lb.example.com", allowed_domain_options="bare_domains")
        first = await flows.new_order(c, "lb", identifiers="lb.example.com")
        st, body = await c.write("role/lb/new-order", {"identifiers": ["LB.example.com"]})
        assert st == 200 and body["data"]["order_id"] == first and body["warnings"]
        await flows.complete(c, pebble, "lb", first)
        third = await flows.new_order(c, "lb", identifiers="lb.example.com")
        assert third != first   # the shared order finished: a new one starts
    run(go())


def test_key_rotation_old_key_refused(pebble):
    async def go():
        c = Client(build_backend())
        await flows.account(c, pebble, name="pb")
        rec = await load_account(c.storage, "pb")
        old_key = keys.from_pem((await c.storage.get(account_key_path("pb", 0))).decode())
        st, body = await c.write("config/acme-account/pb/rotate-key", {"key_type": "ec-384"})
        assert st == 200, body
        assert body["data"]["old_active_key_version"] == 0 and body["data"]["new_active_key_version"] == 1
        assert await c.storage.get(account_key_path("pb", 0)) is None
        assert c.storage.entries[account_key_path("pb", 1)].seal_wrap
        st, acct = await c.read("config/acme-account/pb")
        assert acct["data"]["account_keys"]["1"]["key_type"] == "ec-384"
        assert "PRIVATE KEY" not in str(acct["data"]) and acct["data"]["trusted_ca"] == pebble.tls_ca_pem

        old = acme_client.connect(rec.directory_url, old_key, rec.account_url, c.backend.runtime.verify_for(rec.trusted_ca))
        with pytest.raises(acme_client.AcmeFailed):
            acme_client.fetch_order(old, rec.account_url)
        # The account still works with the new key.
        await flows.role(c, "after", allowed_domains="rot.example.com", allowed_domain_options="bare_domains")
        oid = await flows.new_order(c, "after", identifiers="rot.example.com")
        await flows.complete(c, pebble, "after", oid)
    run(go())


def test_automatic_key_rotation_after_max_age(pebble):
    async def go():
        now = [dt.datetime.now(dt.timezone.utc)]
        c = Client(build_backend(clock=lambda: now[0]))
        await flows.account(c, pebble, key_max_age="24h")
        await c.periodic()
        assert (await load_account(c.storage, "pb")).active_key_version == 0
        now[0] += dt.timedelta(hours=25)
        await c.periodic()
        rec = await load_account(c.storage, "pb")
        assert rec.active_key_version == 1 and rec.pending_key_version is None
    run(go())


def test_ari_renewal_info_and_guided_renewal(pebble, ari_proxy):
    async def go():
        c = Client(build_backend())
        await flows.account(c, pebble, directory_url=ari_proxy.directory_url)
        await flows.role(c, "ari", allowed_domains="ari.example.com", allowed_domain_options="bare_domains",
                         ari_renewal=True)
        oid = await flows.new_order(c, "ari", identifiers="ari.example.com")
        cert = await flows.complete(c, pebble, "ari", oid)
        st, info = await c.read(f"role/ari/order/{oid}/renewal-info")
        assert st == 200 and info["data"]["ari_supported"] is True
        assert info["data"]["suggested_window_start"] < info["data"]["suggested_window_end"]
        assert any(p.startswith("/renewal-info/" + info["data"]["ari_cert_id"]) for p in ari_proxy.requests)
        await c.periodic()    # window in the future: no renewal
        assert (await load_order(c.storage, oid)).replaced_by == ""
        past = dt.datetime.now(dt.timezone.utc) - dt.timedelta(hours=1)
        ari_proxy.window = (past, past + dt.timedelta(minutes=30))
        rec = await load_order(c.storage, oid)
        rec.ari_next_check = ""   # skip the Retry-After wait the proxy asked for
        from engine.external_ca.records import save_order
        await save_order(c.storage, rec)
        await c.periodic()
        renewed = (await load_order(c.storage, oid)).replaced_by
        assert renewed
        new = await load_order(c.storage, renewed)
        assert new.replaces == info["data"]["ari_cert_id"] and new.identifiers == ["ari.example.com"]
        await c.periodic()   # a second run must not start another renewal
        assert len([k for k in await c.storage.list("order/")]) == 2
        await flows.complete(c, pebble, "ari", renewed)
    run(go())


def test_without_ari_the_read_says_unsupported(pebble):
    async def go():
        c = Client(build_backend())
        await flows.account(c, pebble)
        await flows.role(c, "noari", allowed_domains="noari.example.com", allowed_domain_options="bare_domains")
        oid = await flows.new_order(c, "noari", identifiers="noari.example.com")
        await flows.complete(c, pebble, "noari", oid)
        st, info = await c.read(f"role/noari/order/{oid}/renewal-info")
        assert st == 200 and info["data"]["ari_supported"] is False
    run(go())
