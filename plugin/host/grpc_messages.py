"""gRPC's message framing inside a stream: a flag byte (compressed or not), a four-byte length, the bytes."""
from __future__ import annotations


class CompressedMessage(Exception):
    """The peer compressed a message; we never offer compression, so it should not."""


class MessageTooLarge(Exception):
    """The length prefix announces more than we accept; raised before the body is buffered."""


def frame(body: bytes) -> bytes:
    return len(body).to_bytes(5, "big") + body      # flag 0 and the length, big-endian, in one go


def take(buf: bytearray, limit: int | None = None) -> bytes | None:
    """Remove and return the first complete message in `buf`, or None while it is still incomplete."""
    if len(buf) < 5:
        return None
    size = int.from_bytes(buf[1:5], "big")
    if limit is not None and size > limit:
        raise MessageTooLarge(size)
    if len(buf) < 5 + size:
        return None
    if buf[0]:
        raise CompressedMessage()
    message = bytes(buf[5:5 + size])
    del buf[:5 + size]
    return message
