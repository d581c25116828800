"""A second revoke answers with the first revocation whether the record is pending, folded into the CRL index,
or was written by an earlier plugin process (the index then learns it from storage)."""
from __future__ import annotations

import asyncio

from revocation_helpers import AsyncMount

from engine.backend import build_backend


def test_repeat_revoke_returns_the_original_record_wherever_it_is_known() -> None:
    async def go() -> None:
        m = AsyncMount()
        await m.setup_ca()
        await m.write("config/crl", auto_rebuild=True)
        certs = [(await m.issue(f"h{i}.example.com"))["serial_number"] for i in range(3)]
        first = {s: (await m.ok("revoke", serial_number=s)) for s in certs[:2]}
        assert await m.ok("revoke", serial_number=certs[0]) == first[certs[0]]      # pending
        assert (await m.read("crl/rotate")).status == 200
        assert await m.ok("revoke", serial_number=certs[0]) == first[certs[0]]      # folded into the index
        restarted = AsyncMount(backend=build_backend(), storage=m.storage)
        assert (await restarted.read("crl")).status == 200                          # loads the index
        for s in certs[:2]:
            assert await restarted.ok("revoke", serial_number=s) == first[s]
        fresh = await restarted.ok("revoke", serial_number=certs[2])
        assert fresh["state"] == "revoked"
        assert (await restarted.read(f"cert/{certs[2]}")).data["revocation_time"] == fresh["revocation_time"]
    asyncio.run(go())


def test_a_revocation_written_elsewhere_is_found_after_its_invalidation() -> None:
    async def go() -> None:
        m = AsyncMount()
        await m.setup_ca()
        await m.write("config/crl", auto_rebuild=True)
        serial = (await m.issue())["serial_number"]
        other = AsyncMount(backend=build_backend(), storage=m.storage)   # another node's process, same store
        first = await other.ok("revoke", serial_number=serial)
        m.backend.invalidate("revoked/" + serial.replace(":", "-"))
        assert await m.ok("revoke", serial_number=serial) == first
    asyncio.run(go())
