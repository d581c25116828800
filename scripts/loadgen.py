"""A light HTTP/1.1 load generator for requests that differ one from the next (revoke each serial, say).

`hey` sends one body over and over, so it cannot drive revocations. Python `requests` from threads can, but on
two cores it spent more CPU per request than the server did, and that CPU came out of the cores the server and
the plugin share, which hid most of the difference between the two mounts. This keeps each connection alive,
sends bytes prepared in advance and parses only the status line, Content-Length or chunked framing, and the JSON
body: a few tens of microseconds per request.
"""
from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit


@dataclass
class Reply:
    status: int
    body: bytes
    seconds: float = 0.0      # from sending the request to the end of the reply

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


def _request_bytes(host: str, token: str, method: str, path: str, body: dict | None) -> bytes:
    payload = json.dumps(body).encode() if body is not None else b""
    head = (f"{method} /v1/{path} HTTP/1.1\r\nHost: {host}\r\nX-Vault-Token: {token}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n")
    return head.encode() + payload


async def _read_reply(reader: asyncio.StreamReader) -> Reply:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ", 2)[1])
    length, chunked = 0, False
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"transfer-encoding" and b"chunked" in value.lower():
            chunked = True
    if not chunked:
        return Reply(status, await reader.readexactly(length) if length else b"")
    parts = []
    while True:
        size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
        if size == 0:
            await reader.readuntil(b"\r\n")
            return Reply(status, b"".join(parts))
        parts.append(await reader.readexactly(size))
        await reader.readexactly(2)


async def _run(addr: str, token: str, calls: list[tuple[str, str, dict | None]], clients: int) -> list[Reply]:
    url = urlsplit(addr)
    host, port = url.hostname or "127.0.0.1", url.port or 80
    prepared = [_request_bytes(url.netloc, token, m, p, b) for m, p, b in calls]
    replies: list[Reply | None] = [None] * len(prepared)
    next_index = iter(range(len(prepared)))

    async def client() -> None:
        reader, writer = await asyncio.open_connection(host, port)
        try:
            for i in next_index:
                t0 = time.perf_counter()
                writer.write(prepared[i])
                reply = await _read_reply(reader)
                reply.seconds = time.perf_counter() - t0
                replies[i] = reply
        finally:
            writer.close()

    await asyncio.gather(*(client() for _ in range(clients)))
    return [r for r in replies if r is not None]


def run(addr: str, token: str, calls: list[tuple[str, str, dict | None]], clients: int = 8) -> tuple[float, list[Reply]]:
    """Send every call over `clients` kept-alive connections; (seconds taken, replies in call order)."""
    t0 = time.perf_counter()
    replies = asyncio.run(_run(addr, token, calls, clients))
    return time.perf_counter() - t0, replies
