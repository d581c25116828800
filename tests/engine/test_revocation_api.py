"""revoke / revoke-with-key / certs/revoked / cert/:serial through the backend on in-memory storage."""
from __future__ import annotations

import asyncio
import datetime as dt

import pytest
from cryptography.hazmat.primitives import serialization

from revocation_helpers import AsyncMount, foreign_ca_leaf, pem_cert


def run(coro):  # noqa: ANN001, ANN201
    return asyncio.run(coro)


def test_revoke_by_every_serial_form_returns_the_original_record() -> None:
    async def go() -> None:
        m = AsyncMount()
        await m.setup_ca()
        cert = await m.issue()
        serial = cert["serial_number"]
        first = await m.write("revoke", serial_number=serial)
        assert first.status == 200
        assert set(first.data) == {"revocation_time", "revocation_time_rfc3339", "state"}
        assert first.data["state"] == "revoked"
        for form in (serial.upper(), serial.replace(":", "-"), serial.upper().replace(":", "-")):
            again = await m.write("revoke", serial_number=form)
            assert again.status == 200 and again.data == first.data
        read = await m.read(f"cert/{serial}")
        assert read.data["revocation_time"] == first.data["revocation_time"]
        assert read.data["issuer_id"]
    run(go())


def test_certs_revoked_lists_colon_serials() -> None:
    async def go() -> None:
        from plugin.framework import Operation
        m = AsyncMount()
        await m.setup_ca()
        assert (await m.call(Operation.LIST, "certs/revoked/")).status == 404
        serials = [(await m.issue(f"h{i}.example.com"))["serial_number"] for i in range(3)]
        for s in serials[:2]:
            await m.ok("revoke", serial_number=s)
        listed = await m.call(Operation.LIST, "certs/revoked/")
        assert sorted(listed.data["keys"]) == sorted(serials[:2])
    run(go())


@pytest.mark.parametrize("body, message", [
    ({}, "The serial number or certificate to revoke must be provided."),
    ({"serial_number": "aa:bb:cc"}, "certificate with serial aa:bb:cc not found."),
    ({"serial_number": "aabbcc"}, "certificate with serial aabbcc not found."),
    ({"certificate": "short"}, "provided certificate data was too short"),
])
def test_bad_revoke_input_is_400_and_changes_nothing(body: dict, message: str) -> None:
    async def go() -> None:
        m = AsyncMount()
        await m.setup_ca()
        await m.issue()
        before = m.storage.snapshot()
        reply = await m.write("revoke", **body)
        assert reply.status == 400 and message in reply.error
        assert m.storage.snapshot() == before
    run(go())


def test_both_serial_and_certificate_is_refused() -> None:
    async def go() -> None:
        m = AsyncMount()
        await m.setup_ca()
        cert = await m.issue()
        reply = await m.write("revoke", serial_number=cert["serial_number"], certificate=cert["certificate"])
        assert reply.status == 400 and "not both" in reply.error
    run(go())


def test_certificate_from_another_ca_is_refused_without_writes() -> None:
    async def go() -> None:
        m = AsyncMount()
        await m.setup_ca()
        before = m.storage.snapshot()
        reply = await m.write("revoke", certificate=foreign_ca_leaf())
        assert reply.status == 400 and "not issued by any issuer in this mount" in reply.error
        assert m.storage.snapshot() == before
    run(go())


def test_expired_certificate_gets_a_warning_and_no_record() -> None:
    async def go() -> None:
        m = AsyncMount()
        await m.setup_ca()
        cert = await m.issue(ttl="1s")
        await asyncio.sleep(0.01)
        before = m.storage.snapshot()
        reply = await m.write("revoke", serial_number=cert["serial_number"])
        assert reply.status == 200 and "already expired; refusing to add to CRL" in reply.warnings[0]
        assert m.storage.snapshot() == before
    run(go())


def test_no_store_certificate_is_revoked_by_pem_and_then_stored() -> None:
    async def go() -> None:
        m = AsyncMount()
        await m.setup_ca(no_store=True)
        cert = await m.issue()
        serial = cert["serial_number"]
        assert (await m.write("revoke", serial_number=serial)).status == 400
        reply = await m.write("revoke", certificate=cert["certificate"])
        assert reply.status == 200 and reply.data["state"] == "revoked"
        assert (await m.read(f"cert/{serial}")).data["revocation_time"] == reply.data["revocation_time"]
    run(go())


def test_revoke_with_key_checks_possession() -> None:
    async def go() -> None:
        m = AsyncMount()
        await m.setup_ca()
        a, b = await m.issue("a.example.com"), await m.issue("b.example.com")
        before = m.storage.snapshot()
        wrong = await m.write("revoke-with-key", serial_number=a["serial_number"], private_key=b["private_key"])
        assert wrong.status == 400 and "does not match" in wrong.error
        assert m.storage.snapshot() == before
        right = await m.write("revoke-with-key", serial_number=a["serial_number"], private_key=a["private_key"])
        assert right.status == 200
    run(go())


def test_revoking_an_issuer_serial_is_refused() -> None:
    async def go() -> None:
        m = AsyncMount()
        root = await m.setup_ca()
        reply = await m.write("revoke", serial_number=root["serial_number"])
        assert reply.status == 400 and "to its own CRL is not allowed" in reply.error
    run(go())


def test_revocation_time_is_now() -> None:
    async def go() -> None:
        m = AsyncMount()
        await m.setup_ca()
        cert = await m.issue()
        reply = await m.ok("revoke", serial_number=cert["serial_number"])
        assert abs(reply["revocation_time"] - dt.datetime.now().timestamp()) < 5
        assert reply["revocation_time_rfc3339"].endswith("Z")
        assert pem_cert(cert["certificate"]).public_bytes(serialization.Encoding.PEM)
    run(go())


def test_issuer_revoke_marks_it_and_puts_it_on_the_parent_crl() -> None:
    async def go() -> None:
        from cryptography import x509
        m = AsyncMount()
        await m.setup_ca()
        inter = await m.ok("intermediate/generate/internal", common_name="Intermediate", key_type="ec")
        signed = await m.ok("root/sign-intermediate", csr=inter["csr"], common_name="Intermediate", ttl="8760h")
        imported = await m.ok("intermediate/set-signed", certificate=signed["certificate"])
        new_id = (imported.get("imported_issuers") or [])[0]
        reply = await m.write(f"issuer/{new_id}/revoke")
        assert reply.status == 200 and reply.data["revoked"] is True
        assert "issuing-certificates" not in reply.data["usage"]
        crl = x509.load_der_x509_crl((await m.read("crl")).body)
        assert crl.get_revoked_certificate_by_serial_number(pem_cert(signed["certificate"]).serial_number)
    run(go())
