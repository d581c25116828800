"""config/acme policy on directories and issuance, in-process (authorizations marked valid in storage, so each
case tests the policy and not the validation)."""
from __future__ import annotations

import asyncio
import datetime as dt

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from engine.acme.records import AcmeStore
from plugin.framework import Operation
from tests.acme_server.driver import AcmeMount, Client, csr_der


async def ready_order(c: Client, *names: str):  # noqa: ANN201
    order = await c.order(*names)
    assert order.status == 201, order.body
    store = AcmeStore(c.mount.storage)
    kid = c.kid.rsplit("/", 1)[-1]
    for url in order.json()["authorizations"]:
        authz = await store.authz(kid, url.rsplit("/", 1)[-1])
        authz.status = "valid"
        await store.put_authz(authz)
    return order.json()


async def issue(c: Client, *names: str) -> x509.Certificate:
    order = await ready_order(c, *names)
    fin = await c.post(c.sub_of(order["finalize"]), {"csr": csr_der(list(names))})
    assert fin.status == 200, fin.body
    return x509.load_pem_x509_certificates((await c.post(c.sub_of(fin.json()["certificate"]))).body)[0]


def run(coro):  # noqa: ANN001, ANN201
    return asyncio.run(coro)


def test_directory_policies_and_allowed_lists():
    async def go():
        m = AcmeMount()
        await m.setup()
        await m.vault(Operation.UPDATE, "roles/web", allowed_domains="example.com", allow_subdomains=True,
                      key_type="any", ext_key_usage="ClientAuth,ServerAuth", ttl="72h")
        await m.vault(Operation.UPDATE, "roles/other", allow_any_name=True, key_type="any")
        await m.vault(Operation.UPDATE, "roles/nostore", allow_any_name=True, key_type="any", no_store=True)
        nostore = await m.raw(Operation.READ, "roles/nostore/acme/directory")
        assert nostore.status == 500 and "NoStore" in nostore.json()["detail"]
        await m.vault(Operation.UPDATE, "config/acme", allowed_roles="web", default_directory_policy="role:web")
        assert (await m.raw(Operation.READ, "roles/other/acme/directory")).status == 500
        assert (await m.raw(Operation.READ, "roles/web/acme/directory")).status == 200
        # role:web governs the default directory: names outside the role are rejected at new-order.
        c = Client(m)
        await c.register()
        bad = await c.order("www.elsewhere.org")
        assert bad.status == 400 and bad.json()["type"].endswith(":rejectedIdentifier")
        leaf = await issue(c, "www.example.com")
        eku = list(leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)
        assert eku == [ExtendedKeyUsageOID.SERVER_AUTH]       # the role's ClientAuth dropped
        await m.vault(Operation.UPDATE, "config/acme", allow_role_ext_key_usage=True)
        leaf = await issue(c, "api.example.com")
        eku = set(leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)
        assert eku == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
        await m.vault(Operation.UPDATE, "config/acme", default_directory_policy="forbid", allowed_roles="*")
        forbidden = await m.raw(Operation.READ, "acme/directory")
        assert forbidden.status == 500 and "default directory not allowed" in forbidden.json()["detail"]
        # allowed_issuers: a second issuer outside the list cannot be used through its directory.
        second = await m.vault(Operation.UPDATE, "root/generate/internal", common_name="Second", key_type="ec",
                               issuer_name="second")
        first = [i for i in (await m.vault(Operation.LIST, "issuers"))["keys"] if i != second["issuer_id"]][0]
        await m.vault(Operation.UPDATE, "config/acme", allowed_issuers=first, default_directory_policy="sign-verbatim")
        assert (await m.raw(Operation.READ, "issuer/second/acme/directory")).status == 500
        assert (await m.raw(Operation.READ, f"issuer/{first}/acme/directory")).status == 200
    run(go())


def test_ttl_capped_and_truncated_to_the_issuer():
    async def go():
        m = AcmeMount()
        m.system.default_ttl = m.system.max_ttl = 200 * 86400
        await m.setup(max_ttl="240h")
        c = Client(m)
        await c.register()
        leaf = await issue(c, "capped.example.com")
        assert abs((leaf.not_valid_after_utc - leaf.not_valid_before_utc) - dt.timedelta(hours=240)) \
            < dt.timedelta(minutes=2)
        # An issuer that expires sooner, with leaf_not_after_behavior=err, truncates instead of failing.
        short = await m.vault(Operation.UPDATE, "root/generate/internal", common_name="Short", key_type="ec",
                              ttl="48h", issuer_name="short")
        await m.vault(Operation.UPDATE, "issuer/short", leaf_not_after_behavior="err", issuer_name="short")
        sc = Client(m, "issuer/short/acme/")
        await sc.register()
        leaf = await issue(sc, "truncated.example.com")
        root = x509.load_pem_x509_certificate(short["certificate"].encode())
        assert leaf.not_valid_after_utc == root.not_valid_after_utc
    run(go())


def test_public_acme_env_and_the_account_management_paths(monkeypatch):
    async def go():
        m = AcmeMount()
        await m.setup()
        c = Client(m)
        await c.register()
        kid = c.kid.rsplit("/", 1)[-1]
        listed = await m.vault(Operation.LIST, "acme/mgmt/account/keyid/")
        assert listed["keys"] == [kid]
        one = await m.vault(Operation.READ, f"acme/mgmt/account/keyid/{kid}")
        assert one["status"] == "valid" and one["directory"] == "acme/"
        revoked = await m.vault(Operation.UPDATE, f"acme/mgmt/account/keyid/{kid}", status="revoked")
        assert revoked["status"] == "revoked"
        assert (await c.order("x.example.com")).status == 401
        monkeypatch.setenv("BAO_DISABLE_PUBLIC_ACME", "true")
        assert (await m.raw(Operation.READ, "acme/directory")).status == 404
        monkeypatch.setenv("BAO_DISABLE_PUBLIC_ACME", "false")
        monkeypatch.setenv("VAULT_DISABLE_PUBLIC_ACME", "1")
        assert (await m.raw(Operation.READ, "acme/directory")).status == 404
        await m.vault(Operation.UPDATE, "config/acme", eab_policy="always-required")
        assert (await m.raw(Operation.READ, "acme/directory")).status == 200
    run(go())
