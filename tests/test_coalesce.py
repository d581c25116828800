"""Write coalescing keeps the byte order and sends one write per event-loop turn."""
from __future__ import annotations

import asyncio

from plugin.host.coalesce import CoalescingTransport


class RecordingTransport:
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def get_extra_info(self, name: str):
        return f"info:{name}"


def test_writes_in_one_turn_become_one_write_in_order():
    async def scenario():
        inner = RecordingTransport()
        t = CoalescingTransport(inner)
        t.write(b"headers|")
        t.write(b"")
        t.write(b"message|")
        t.write(b"trailers")
        assert inner.writes == []          # nothing sent until the loop turns
        await asyncio.sleep(0)
        t.write(b"next")
        t.close()                          # close flushes what is pending first
        return inner, t.get_extra_info("socket")

    inner, extra = asyncio.run(scenario())
    assert inner.writes == [b"headers|message|trailers", b"next"]
    assert inner.closed and extra == "info:socket"
