"""A lean HTTP/2 connection: the part of RFC 9113 that gRPC between Go and us uses, on one asyncio transport.

Why not h2/grpclib: profiled under load, their per-frame state machines, event objects and header
validation were over half of the plugin's CPU, more than the PKI work itself, and every server request
costs several gRPC calls. This keeps only what a gRPC peer sends (SETTINGS, HEADERS/CONTINUATION,
DATA, WINDOW_UPDATE, PING, RST_STREAM, GOAWAY), enforces flow control on what we send, and grants the
peer large windows so that receiving never stalls.

Header blocks we send are HPACK literals "without indexing" (no encoder state to keep in step with the
peer); what we receive is decoded with the `hpack` package, whose dynamic table follows the peer's.
"""
from __future__ import annotations

import asyncio
import logging
import struct
from hpack import Decoder
from hpack.exceptions import HPACKError, OversizedHeaderListError

log = logging.getLogger("python-pki.http2")

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE, PING, GOAWAY, WINDOW_UPDATE, CONTINUATION = range(10)
FLAG_END_STREAM = 0x1
FLAG_ACK = 0x1
FLAG_END_HEADERS = 0x4
FLAG_PADDED = 0x8
FLAG_PRIORITY = 0x20

SETTINGS_HEADER_TABLE_SIZE = 0x1
SETTINGS_ENABLE_PUSH = 0x2
SETTINGS_MAX_CONCURRENT_STREAMS = 0x3
SETTINGS_INITIAL_WINDOW_SIZE = 0x4
SETTINGS_MAX_FRAME_SIZE = 0x5
SETTINGS_MAX_HEADER_LIST_SIZE = 0x6

ERR_NO_ERROR = 0x0
ERR_PROTOCOL = 0x1
ERR_INTERNAL = 0x2
ERR_FLOW_CONTROL = 0x3
ERR_STREAM_CLOSED = 0x5
ERR_FRAME_SIZE = 0x6
ERR_REFUSED_STREAM = 0x7
ERR_CANCEL = 0x8
ERR_COMPRESSION = 0x9
ERR_ENHANCE_YOUR_CALM = 0xB

DEFAULT_WINDOW = 65_535
DEFAULT_MAX_FRAME = 16_384
MAX_WINDOW = 2 ** 31 - 1
# What we let the peer send before it must wait for a WINDOW_UPDATE. Large, because we consume data as it
# arrives (messages are bounded by what the peer's gRPC layer allows anyway) and a stall costs a round trip.
OUR_STREAM_WINDOW = 4 * 1024 * 1024
OUR_CONNECTION_WINDOW = 16 * 1024 * 1024
HEADER_CACHE_SIZE = 256
# What one header block may take, compressed and decoded (advertised as SETTINGS_MAX_HEADER_LIST_SIZE; gRPC
# metadata from the server is a few hundred bytes), and how many CONTINUATION frames may carry it: an endless
# run of empty ones would otherwise be free for the peer and cost us a frame each.
MAX_HEADER_LIST_SIZE = 64 * 1024
MAX_CONTINUATIONS = 64
PING_ACK_DELAY = 0.002      # seconds a PING answer may wait for a reply to ride with

_FRAME_HEADER = struct.Struct(">BHBBI")   # 24-bit length as a byte plus a short, then type, flags, stream id


class ProtocolError(Exception):
    def __init__(self, message: str, code: int = ERR_PROTOCOL) -> None:
        super().__init__(message)
        self.code = code


def frame(kind: int, flags: int, stream_id: int, payload: bytes | memoryview = b"") -> bytes:
    n = len(payload)
    return _FRAME_HEADER.pack(n >> 16, n & 0xFFFF, kind, flags, stream_id) + payload


def hpack_int(value: int, prefix_bits: int, first: int = 0) -> bytes:
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes((first | value,))
    out = bytearray((first | limit,))
    value -= limit
    while value >= 128:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def hpack_literal(name: bytes, value: bytes) -> bytes:
    """A header field as an HPACK literal without indexing, new name, no Huffman coding."""
    return b"\x00" + hpack_int(len(name), 7) + name + hpack_int(len(value), 7) + value


def hpack_block(headers: list[tuple[bytes, bytes]]) -> bytes:
    return b"".join(hpack_literal(n, v) for n, v in headers)


class Stream:
    """Per-stream HTTP/2 state both sides share; the gRPC layers subclass it."""

    __slots__ = ("id", "send_window", "recv_unacked", "remote_closed", "local_closed", "reset_code", "__weakref__")

    def __init__(self, stream_id: int, send_window: int) -> None:
        self.id = stream_id
        self.send_window = send_window
        self.recv_unacked = 0
        self.remote_closed = False
        self.local_closed = False
        self.reset_code: int | None = None

    # Hooks for the gRPC layer.
    def on_headers(self, headers: list[tuple[bytes, bytes]], end_stream: bool) -> None:
        raise NotImplementedError

    def on_data(self, data: bytes, end_stream: bool) -> None:
        raise NotImplementedError

    def on_reset(self, code: int) -> None:
        raise NotImplementedError


class Connection(asyncio.Protocol):
    """One HTTP/2 connection. Subclasses decide what a HEADERS frame on a new stream means."""

    client_side = False

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.streams: dict[int, Stream] = {}
        self.goaway_received = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._buf = bytearray()
        self._preface_pending = not self.client_side
        self._decoder = Decoder()
        self._decoder.max_header_list_size = MAX_HEADER_LIST_SIZE
        self._header_cache: dict[bytes, list[tuple[bytes, bytes]]] = {}
        self._out: list[bytes] = []
        self._flush_scheduled = False
        self._receiving = False     # inside data_received: writes wait for its end, then leave in one go
        self._ping_timer: asyncio.TimerHandle | None = None
        self._ping_acks: list[bytes] = []
        self._peer_max_frame = DEFAULT_MAX_FRAME
        self._peer_initial_window = DEFAULT_WINDOW
        self.peer_max_streams: int | None = None
        self._conn_send_window = DEFAULT_WINDOW
        self._conn_recv_unacked = 0
        self._window_waiters: list[asyncio.Future[None]] = []
        self._continuation: tuple[int, int, bytearray] | None = None   # stream id, flags, block so far
        self._continuations = 0
        self.last_remote_stream = 0     # remote stream ids must only grow (RFC 9113 5.1.1)

    # -- asyncio.Protocol ---------------------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self._loop = asyncio.get_running_loop()
        settings = [(SETTINGS_INITIAL_WINDOW_SIZE, OUR_STREAM_WINDOW)]
        if self.client_side:
            settings.insert(0, (SETTINGS_ENABLE_PUSH, 0))
        settings += self.extra_settings()
        payload = b"".join(struct.pack(">HI", k, v) for k, v in settings)
        opening = PREFACE if self.client_side else b""
        self._write(opening + frame(SETTINGS, 0, 0, payload)
                    + frame(WINDOW_UPDATE, 0, 0, struct.pack(">I", OUR_CONNECTION_WINDOW - DEFAULT_WINDOW)))

    def data_received(self, data: bytes) -> None:
        # Handlers that finish without waiting (eagerly started unary calls) reply from inside this call: their
        # frames are written once it returns, in the same loop turn as the request, instead of a turn later.
        self._receiving = True
        try:
            self._receive(data)
        finally:
            self._receiving = False
            if self._out:
                self._flush()           # PING answers ride along
            elif self._ping_acks and self._ping_timer is None and not self._flush_scheduled:
                self._ping_timer = self._loop.call_later(PING_ACK_DELAY, self._ping_timer_fired)  # type: ignore

    def _receive(self, data: bytes) -> None:
        buf = self._buf
        buf += data
        try:
            if self._preface_pending:
                if len(buf) < len(PREFACE):
                    return
                if bytes(buf[:len(PREFACE)]) != PREFACE:
                    raise ProtocolError("bad connection preface")
                del buf[:len(PREFACE)]
                self._preface_pending = False
            pos, end = 0, len(buf)
            while end - pos >= 9:
                hi, lo, kind, flags, sid = _FRAME_HEADER.unpack_from(buf, pos)
                length = (hi << 16) | lo
                if length > DEFAULT_MAX_FRAME:
                    # We never raise SETTINGS_MAX_FRAME_SIZE above its default: refused before it is buffered.
                    raise ProtocolError(f"frame of {length} bytes", ERR_FRAME_SIZE)
                if end - pos - 9 < length:
                    break
                payload = bytes(buf[pos + 9:pos + 9 + length])
                pos += 9 + length
                self._frame(kind, flags, sid & 0x7FFFFFFF, payload)
                if self.transport is None:
                    return
            del buf[:pos]
        except ProtocolError as exc:
            log.warning("HTTP/2 protocol error from peer: %s", exc)
            self._goaway(exc.code, str(exc))
        except OversizedHeaderListError:
            log.warning("HTTP/2 header list from peer over %d bytes", MAX_HEADER_LIST_SIZE)
            self._goaway(ERR_ENHANCE_YOUR_CALM, "header list too large")
        except HPACKError as exc:
            log.warning("HPACK error from peer: %s", exc)
            self._goaway(ERR_COMPRESSION, "hpack")

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        for stream in list(self.streams.values()):
            stream.on_reset(ERR_CANCEL)
        self.streams.clear()
        self._wake_window_waiters()

    # -- frames in ------------------------------------------------------------------------------------------------
    def _frame(self, kind: int, flags: int, sid: int, payload: bytes) -> None:
        if self._continuation is not None and kind != CONTINUATION:
            raise ProtocolError("expected CONTINUATION")
        if kind == DATA:
            self._on_data(flags, sid, payload)
        elif kind == HEADERS:
            self._on_headers(flags, sid, payload)
        elif kind == CONTINUATION:
            self._on_continuation(flags, sid, payload)
        elif kind == WINDOW_UPDATE:
            self._on_window_update(sid, payload)
        elif kind == SETTINGS:
            self._on_settings(flags, sid, payload)
        elif kind == PING:
            if len(payload) != 8:
                raise ProtocolError("PING of wrong size", ERR_FRAME_SIZE)
            if not flags & FLAG_ACK:
                self._ack_ping(payload)
        elif kind == RST_STREAM:
            stream = self.streams.pop(sid, None)
            if stream is not None:
                code = struct.unpack(">I", payload[:4])[0] if len(payload) >= 4 else ERR_CANCEL
                stream.reset_code = code
                stream.on_reset(code)
                self._wake_window_waiters()
        elif kind == GOAWAY:
            self.goaway_received = True
            last = struct.unpack(">I", payload[:4])[0] & 0x7FFFFFFF if len(payload) >= 4 else 0
            self.on_goaway(last)
        elif kind == PUSH_PROMISE:
            raise ProtocolError("PUSH_PROMISE not accepted")
        # PRIORITY and unknown frame types are ignored, as the RFC asks.

    def _on_data(self, flags: int, sid: int, payload: bytes) -> None:
        size = len(payload)     # flow control counts padding too
        if flags & FLAG_PADDED:
            if not payload or payload[0] >= len(payload):
                raise ProtocolError("DATA padding longer than the frame")    # RFC 9113 6.1
            pad = payload[0]
            payload = payload[1:len(payload) - pad]
        self._conn_recv_unacked += size
        if self._conn_recv_unacked >= OUR_CONNECTION_WINDOW // 2:
            self._write(frame(WINDOW_UPDATE, 0, 0, struct.pack(">I", self._conn_recv_unacked)))
            self._conn_recv_unacked = 0
        stream = self.streams.get(sid)
        if stream is None:
            return      # a stream we already reset or finished; its bytes still counted for the connection
        end = bool(flags & FLAG_END_STREAM)
        if not end:
            stream.recv_unacked += size
            if stream.recv_unacked >= OUR_STREAM_WINDOW // 2:
                self._write(frame(WINDOW_UPDATE, 0, sid, struct.pack(">I", stream.recv_unacked)))
                stream.recv_unacked = 0
        else:
            stream.remote_closed = True
            self._maybe_forget(stream)
        stream.on_data(payload, end)

    def _on_headers(self, flags: int, sid: int, payload: bytes) -> None:
        if sid == 0:
            raise ProtocolError("HEADERS on stream 0")
        start, stop = 0, len(payload)
        if flags & FLAG_PADDED:
            if not payload:
                raise ProtocolError("HEADERS padding longer than the frame")
            start = 1
            stop -= payload[0]
        if flags & FLAG_PRIORITY:
            start += 5
        if start > stop:
            raise ProtocolError("HEADERS padding longer than the frame")   # RFC 9113 6.2
        block = payload[start:stop]
        if not flags & FLAG_END_HEADERS:
            self._continuation = (sid, flags, bytearray(block))
            self._continuations = 0
            return
        self._headers_complete(sid, flags, block)

    def _on_continuation(self, flags: int, sid: int, payload: bytes) -> None:
        if self._continuation is None or self._continuation[0] != sid:
            raise ProtocolError("unexpected CONTINUATION")
        block = self._continuation[2]
        block.extend(payload)
        self._continuations += 1
        if len(block) > MAX_HEADER_LIST_SIZE or self._continuations > MAX_CONTINUATIONS:
            raise ProtocolError("header block too large", ERR_ENHANCE_YOUR_CALM)
        if flags & FLAG_END_HEADERS:
            _, first_flags, block = self._continuation
            self._continuation = None
            self._headers_complete(sid, first_flags, bytes(block))

    def _headers_complete(self, sid: int, flags: int, block: bytes) -> None:
        headers = self._decode(block)
        end = bool(flags & FLAG_END_STREAM)
        stream = self.streams.get(sid)
        if stream is None:
            if sid <= self.last_remote_stream:
                raise ProtocolError(f"stream {sid} opened after stream {self.last_remote_stream}")
            self.last_remote_stream = sid
            stream = self.new_remote_stream(sid)
            if stream is None:
                return
        if end:
            stream.remote_closed = True
            self._maybe_forget(stream)
        stream.on_headers(headers, end)

    def _decode(self, block: bytes) -> list[tuple[bytes, bytes]]:
        # Go indexes every header it sends, so after the first calls a block is all one-byte table references
        # (every byte >= 0x80) and the same bytes always mean the same headers: only a block with a literal or
        # a table-size update changes the table, and that empties the cache. Every block is decoded in order.
        if block and min(block) >= 0x80:
            headers = self._header_cache.get(block)
            if headers is None:
                headers = self._decoder.decode(block, raw=True)
                if len(self._header_cache) < HEADER_CACHE_SIZE:
                    self._header_cache[block] = headers
            return headers
        self._header_cache.clear()
        return self._decoder.decode(block, raw=True)

    def _on_window_update(self, sid: int, payload: bytes) -> None:
        if len(payload) != 4:
            raise ProtocolError("WINDOW_UPDATE of wrong size", ERR_FRAME_SIZE)
        inc = struct.unpack(">I", payload)[0] & 0x7FFFFFFF
        if sid == 0:
            self._conn_send_window += inc
            if self._conn_send_window > MAX_WINDOW:
                raise ProtocolError("connection window overflow", ERR_FLOW_CONTROL)
        else:
            stream = self.streams.get(sid)
            if stream is None:
                return
            stream.send_window += inc
        self._wake_window_waiters()

    def _on_settings(self, flags: int, sid: int, payload: bytes) -> None:
        if sid != 0:
            raise ProtocolError("SETTINGS on a stream")
        if flags & FLAG_ACK:
            return
        if len(payload) % 6:
            raise ProtocolError("SETTINGS of wrong size", ERR_FRAME_SIZE)
        for off in range(0, len(payload), 6):
            key, value = struct.unpack_from(">HI", payload, off)
            if key == SETTINGS_INITIAL_WINDOW_SIZE:
                if value > MAX_WINDOW:
                    raise ProtocolError("initial window too large", ERR_FLOW_CONTROL)
                delta = value - self._peer_initial_window
                self._peer_initial_window = value
                for stream in self.streams.values():
                    stream.send_window += delta
            elif key == SETTINGS_MAX_FRAME_SIZE:
                if not DEFAULT_MAX_FRAME <= value <= 16_777_215:
                    raise ProtocolError("bad max frame size")
                self._peer_max_frame = value
            elif key == SETTINGS_MAX_CONCURRENT_STREAMS:
                self.peer_max_streams = value
            elif key == SETTINGS_HEADER_TABLE_SIZE:
                pass    # limits the peer's decoder, and our encoder never indexes
        self._write(frame(SETTINGS, FLAG_ACK, 0))
        self._wake_window_waiters()

    # -- hooks ---------------------------------------------------------------------------------------------------
    def extra_settings(self) -> list[tuple[int, int]]:
        return [(SETTINGS_MAX_HEADER_LIST_SIZE, MAX_HEADER_LIST_SIZE)]

    def new_remote_stream(self, sid: int) -> Stream | None:
        raise ProtocolError("peer opened a stream")

    def on_goaway(self, last_stream_id: int) -> None:
        pass

    # -- frames out -----------------------------------------------------------------------------------------------
    def _ack_ping(self, payload: bytes) -> None:
        # Go's gRPC sends a flow-control (BDP) ping after nearly every message it receives and sends no other
        # until that one is answered. Answered at once, each costs us a TLS record and a syscall of its own;
        # held briefly, the answer rides after the next reply and Go pings half as often. When the receive that
        # brought the ping writes nothing, `data_received` starts a timer that bounds the delay, so a keepalive
        # ping is still answered within milliseconds.
        self._ping_acks.append(frame(PING, FLAG_ACK, 0, payload))

    def _ping_timer_fired(self) -> None:
        self._ping_timer = None
        if not self._flush_scheduled:
            self._flush()

    def _write(self, data: bytes) -> None:
        # Coalesced: one TLS record and one syscall per loop turn, whatever number of frames it holds.
        self._out.append(data)
        if not self._flush_scheduled and not self._receiving:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush)  # type: ignore[union-attr]

    def _flush(self) -> None:
        self._flush_scheduled = False
        if self._ping_timer is not None:
            self._ping_timer.cancel()
            self._ping_timer = None
        out, self._out = self._out, []
        if self._ping_acks:
            # After the data: the peer counts that data into the current ping's sample instead of starting a
            # new ping for it.
            out += self._ping_acks
            self._ping_acks = []
        if self.transport is not None and out and not self.transport.is_closing():
            self.transport.write(b"".join(out))

    def send_headers(self, stream: Stream, block: bytes, end_stream: bool) -> None:
        if self.transport is None or stream.local_closed or stream.reset_code is not None:
            return
        flags = FLAG_END_HEADERS | (FLAG_END_STREAM if end_stream else 0)
        if len(block) <= self._peer_max_frame:
            self._write(frame(HEADERS, flags, stream.id, block))
        else:
            step = self._peer_max_frame
            first = flags & ~FLAG_END_HEADERS
            self._write(frame(HEADERS, first, stream.id, block[:step]))
            for off in range(step, len(block), step):
                last = off + step >= len(block)
                self._write(frame(CONTINUATION, FLAG_END_HEADERS if last else 0, stream.id, block[off:off + step]))
        if end_stream:
            stream.local_closed = True
            self._maybe_forget(stream)

    async def send_data(self, stream: Stream, data: bytes, end_stream: bool = False) -> None:
        """Send within the peer's windows, waiting for WINDOW_UPDATEs when they run out."""
        view = memoryview(data)
        while True:
            if self.transport is None or stream.reset_code is not None:
                raise ConnectionResetError("stream closed by peer")
            n = min(len(view), self._peer_max_frame, stream.send_window, self._conn_send_window)
            if n <= 0 and len(view):
                waiter = self._loop.create_future()  # type: ignore[union-attr]
                self._window_waiters.append(waiter)
                await waiter
                continue
            last = n == len(view)
            self._write(frame(DATA, FLAG_END_STREAM if last and end_stream else 0, stream.id, view[:n]))
            stream.send_window -= n
            self._conn_send_window -= n
            view = view[n:]
            if last:
                break
        if end_stream:
            stream.local_closed = True
            self._maybe_forget(stream)

    def reset(self, stream: Stream, code: int = ERR_CANCEL) -> None:
        if self.streams.pop(stream.id, None) is not None and self.transport is not None:
            self._write(frame(RST_STREAM, 0, stream.id, struct.pack(">I", code)))
        stream.local_closed = stream.remote_closed = True
        self._wake_window_waiters()

    def refuse(self, sid: int) -> None:
        """RST_STREAM REFUSED_STREAM for a stream we never started (the peer may retry it)."""
        self._write(frame(RST_STREAM, 0, sid, struct.pack(">I", ERR_REFUSED_STREAM)))

    def _goaway(self, code: int, reason: str) -> None:
        if self.transport is None:
            return
        last = max((sid for sid in self.streams if sid % 2 != (1 if self.client_side else 0)), default=0)
        self._write(frame(GOAWAY, 0, 0, struct.pack(">II", last, code) + reason.encode()[:64]))
        self._flush()
        self.transport.close()

    def close(self) -> None:
        if self.transport is not None:
            self._goaway(ERR_NO_ERROR, "")

    def _maybe_forget(self, stream: Stream) -> None:
        if stream.local_closed and stream.remote_closed:
            self.streams.pop(stream.id, None)

    def _wake_window_waiters(self) -> None:
        waiters, self._window_waiters = self._window_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    def register(self, stream: Stream) -> None:
        self.streams[stream.id] = stream

    @property
    def peer_initial_window(self) -> int:
        return self._peer_initial_window

