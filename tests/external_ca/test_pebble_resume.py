"""The plugin dies at each order state (the write that leaves the state fails); a fresh backend on the same
storage resumes the order and completes it against pebble."""
from __future__ import annotations

import asyncio
import json
import uuid

import pytest

from engine.external_ca import build_backend
from engine.storage import InMemoryStorage
from . import flows
from .harness import Client

pytestmark = pytest.mark.acme


class CrashingStorage(InMemoryStorage):
    """Fails the first write that moves an order out of `leaving`, like a process killed mid-transition."""

    def __init__(self, leaving: str) -> None:
        super().__init__()
        self.leaving = leaving
        self.crashed = False

    async def put(self, key: str, value: bytes, seal_wrap: bool = False) -> None:
        if key.startswith("order/") and not self.crashed:
            before = self.entries.get(key)
            old = json.loads(before.value)["status"] if before else None
            if old == self.leaving and json.loads(value)["status"] != self.leaving:
                self.crashed = True
                raise RuntimeError("simulated crash")
        await super().put(key, value, seal_wrap)


STATES = ["new", "submitted", "awaiting-challenge-fulfillment", "notify-acme-server-challenges-completed",
          "processing-challenge", "fetching-certificate"]


@pytest.mark.parametrize("state", STATES)
def test_order_resumes_after_crash_in_state(pebble, state):
    async def go():
        storage = CrashingStorage(state)
        c = Client(build_backend(), storage)
        # A fresh account and name: pebble cannot reuse an authorization, so every state is visited.
        await flows.account(c, pebble, name="crash")
        domain = f"{uuid.uuid4().hex[:10]}.crash.example.com"
        st, body = await c.write("role/crash", {"acme_account_name": "crash", "allowed_domains": domain,
                                                "allowed_domain_options": "bare_domains"})
        assert st == 200, body
        oid = await flows.new_order(c, "crash", identifiers=domain)
        seen_crash_state = None
        for _ in range(120):
            st, body = await c.read(f"role/crash/order/{oid}/status")
            if storage.crashed and seen_crash_state is None:
                seen_crash_state = json.loads(storage.entries[f"order/{oid}"].value)["status"]
                c = Client(build_backend(), storage)       # the restart: new process, same storage
                continue
            assert st == 200, body
            data = body["data"]
            if data["order_status"] == "completed":
                break
            assert data["order_status"] not in flows.TERMINAL, data
            if data["order_status"] == "awaiting-challenge-fulfillment":
                st, ch = await c.read(f"role/crash/order/{oid}/challenge",
                                      {"identifier": domain, "challenge_type": "http-01"})
                assert st == 200, ch
                pebble.add_http01(ch["data"]["challenge_token"], ch["data"]["challenge_auth"])
                st, _ = await c.write(f"role/crash/order/{oid}/fulfilled-challenge",
                                      {"identifier": domain, "challenge_type": "http-01"})
                if st == 500 and storage.crashed and seen_crash_state is None:
                    seen_crash_state = json.loads(storage.entries[f"order/{oid}"].value)["status"]
                    c = Client(build_backend(), storage)
                    st, _ = await c.write(f"role/crash/order/{oid}/fulfilled-challenge",
                                          {"identifier": domain, "challenge_type": "http-01"})
                assert st == 204
            await asyncio.sleep(0.2)
        assert seen_crash_state == state
        st, cert = await c.read(f"role/crash/order/{oid}/fetch-cert")
        assert st == 200, cert
        flows.assert_chains_to_root(cert["data"], pebble.root_pem())
    asyncio.run(go())
