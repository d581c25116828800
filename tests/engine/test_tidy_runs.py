"""tidy, tidy-status, tidy-cancel and auto-tidy on in-memory storage (one event loop: tidy runs in background)."""
from __future__ import annotations

import asyncio
import json

from cryptography import x509

from engine import tidy as tidymod
from revocation_helpers import AsyncMount, crl_of

STATUS_KEYS = {
    "acme_account_deleted_count", "acme_account_revoked_count", "acme_account_safety_buffer",
    "acme_orders_deleted_count", "cert_store_deleted_count", "current_cert_store_count",
    "current_revoked_cert_count", "error", "internal_backend_uuid", "issuer_safety_buffer", "message",
    "missing_issuer_cert_count", "page_size", "pause_duration", "revoked_cert_deleted_count", "revoked_safety_buffer",
    "safety_buffer", "state", "tidy_acme", "tidy_cert_store", "tidy_expired_issuers", "tidy_invalid_certs",
    "tidy_move_legacy_ca_bundle", "tidy_revoked_cert_issuer_associations", "tidy_revoked_certs", "time_finished",
    "time_started", "total_acme_account_count",
}


def run(coro):  # noqa: ANN001, ANN201
    return asyncio.run(coro)


async def wait_done(m: AsyncMount) -> dict:
    for _ in range(200):
        status = (await m.read("tidy-status")).data
        if status["state"] not in ("Running", "Cancelling"):
            return status
        await asyncio.sleep(0.02)
    raise AssertionError("tidy did not finish")


def test_tidy_removes_expired_certs_and_revocations_and_rebuilds_the_crl() -> None:
    async def go() -> None:
        m = AsyncMount()
        await m.setup_ca()
        inactive = (await m.read("tidy-status")).data
        assert set(inactive) == STATUS_KEYS and inactive["state"] == "Inactive"
        short = [await m.issue(f"s{i}.example.com", ttl="3s") for i in range(3)]
        keep = await m.issue("keep.example.com")
        await m.ok("revoke", serial_number=short[0]["serial_number"])
        await m.ok("revoke", serial_number=keep["serial_number"])
        await asyncio.sleep(4.3)
        started = await m.write("tidy", tidy_cert_store=True, tidy_revoked_certs=True, safety_buffer="1s")
        assert started.status == 202
        assert "successfully started" in json.loads(started.body)["warnings"][0]
        status = await wait_done(m)
        assert status["state"] == "Finished"
        assert set(status) == STATUS_KEYS | {"last_auto_tidy_finished"}
        assert status["cert_store_deleted_count"] == 3 and status["revoked_cert_deleted_count"] == 1
        assert status["safety_buffer"] == 1 and status["pause_duration"] == "0s"
        crl = crl_of(await m.read("crl"))
        assert [r.serial_number for r in crl] == [
            x509.load_pem_x509_certificate(keep["certificate"].encode()).serial_number]
        assert (await m.read(f"cert/{keep['serial_number']}")).status == 200
        assert (await m.read(f"cert/{short[1]['serial_number']}")).status == 404
    run(go())


def test_nothing_selected_and_bad_buffers() -> None:
    async def go() -> None:
        m = AsyncMount()
        await m.setup_ca()
        reply = await m.write("tidy")
        assert reply.status == 202 and "no tidy operations were set" in json.loads(reply.body)["warnings"][0]
        before = m.storage.snapshot()
        assert (await m.write("tidy", tidy_cert_store=True, safety_buffer="0s")).status == 400
        assert (await m.write("tidy", tidy_cert_store=True, pause_duration="soon")).status == 400
        assert m.storage.snapshot() == before
        cancel = await m.write("tidy-cancel")
        assert "none is currently running" in cancel.warnings[0]
    run(go())


def test_cancel_and_one_at_a_time() -> None:
    async def go() -> None:
        m = AsyncMount()
        await m.setup_ca()
        for i in range(5):
            await m.issue(f"c{i}.example.com")
        await m.write("tidy", tidy_cert_store=True, pause_duration="200ms")
        again = await m.write("tidy", tidy_cert_store=True)
        assert "already in progress" in json.loads(again.body)["warnings"][0]
        cancelling = await m.write("tidy-cancel")
        assert cancelling.data["state"] == "Cancelling"
        assert (await wait_done(m))["state"] == "Cancelled"
    run(go())


def test_auto_tidy_config_and_periodic_start() -> None:
    async def go() -> None:
        m = AsyncMount()
        await m.setup_ca()
        cfg = (await m.read("config/auto-tidy")).data
        assert cfg["interval_duration"] == 43200 and cfg["pause_duration"] == "0s" and cfg["enabled"] is False
        cfg = await m.ok("config/auto-tidy", enabled=True, interval_duration="1s", tidy_cert_store=True,
                         tidy_cmpv2_nonce_store=True)
        assert cfg["interval_duration"] == 1 and cfg["tidy_cert_store"] is True
        await m.periodic()                    # first sighting starts the clock
        assert (await m.read("tidy-status")).data["state"] == "Inactive"
        await asyncio.sleep(1.05)
        await m.periodic()
        finished = await wait_done(m)
        assert finished["state"] == "Finished"
        restarted = AsyncMount(storage=m.storage)
        await restarted.periodic()            # schedule survives a restart: not due again yet
        # No new run started; the restarted process shows the stored last run.
        assert tidymod.runner(restarted.backend.pki_context).task is None
        again = (await restarted.read("tidy-status")).data
        assert again["state"] == "Finished" and again["time_started"] == finished["time_started"]
    run(go())
