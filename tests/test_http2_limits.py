"""Limits of our HTTP/2 + gRPC server: what a misbehaving peer gets, frame by frame (RFC 9113, gRPC's rules).

Only the server holding the plugin's mTLS key reaches this server, but it must still not fall over: each limit is
advertised where HTTP/2 has a setting for it and enforced without buffering what lies beyond it.
"""
from __future__ import annotations

import asyncio
import logging
import struct

from hpack import Encoder

from plugin.host import http2
from plugin.host.grpc_server import MAX_CONCURRENT_STREAMS, MAX_HEADER_LIST_SIZE, MAX_MESSAGE_BYTES
from proto import backend_pb2
from tests.test_grpc_wire import _frames, _grpc_status, _request_frames, _run_briefly, _served_storage

HANG = backend_pb2.StorageGetArgs(key="hang").SerializeToString()


def _settings(data: bytes) -> dict[int, int]:
    out: dict[int, int] = {}
    for kind, payload in _frames(data):
        if kind == http2.SETTINGS:
            for off in range(0, len(payload), 6):
                key, value = struct.unpack_from(">HI", payload, off)
                out[key] = value
    return out


def _goaway_code(data: bytes) -> int | None:
    for kind, payload in _frames(data):
        if kind == http2.GOAWAY:
            return struct.unpack(">II", payload[:8])[1]
    return None


def _resets(data: bytes) -> dict[int, int]:
    out, pos = {}, 0
    while pos < len(data):
        length = int.from_bytes(data[pos:pos + 3], "big")
        if data[pos + 3] == http2.RST_STREAM:
            sid = int.from_bytes(data[pos + 5:pos + 9], "big") & 0x7FFFFFFF
            out[sid] = int.from_bytes(data[pos + 9:pos + 13], "big")
        pos += 9 + length
    return out


def _headers_only(sid: int, path: str, end_stream: bool = False) -> bytes:
    block = Encoder().encode([(":method", "POST"), (":scheme", "http"), (":path", path),
                              (":authority", "localhost"), ("content-type", "application/grpc")])
    flags = http2.FLAG_END_HEADERS | (http2.FLAG_END_STREAM if end_stream else 0)
    return http2.frame(http2.HEADERS, flags, sid, block)


def test_the_server_advertises_its_stream_and_header_limits() -> None:
    async def go() -> None:
        from plugin.host.grpc_server import GrpcServerConnection
        from tests.test_grpc_wire import Recorder
        conn = GrpcServerConnection({})
        rec = Recorder()
        conn.connection_made(rec)  # type: ignore[arg-type]
        await asyncio.sleep(0)
        settings = _settings(rec.data)
        assert settings[http2.SETTINGS_MAX_CONCURRENT_STREAMS] == MAX_CONCURRENT_STREAMS
        assert settings[http2.SETTINGS_MAX_HEADER_LIST_SIZE] == MAX_HEADER_LIST_SIZE

    _run_briefly(go())


def test_a_stream_beyond_the_concurrency_limit_is_refused_and_the_others_go_on() -> None:
    async def go() -> None:
        service, conn, rec = await _served_storage("hang", b"late")
        sids = [1 + 2 * i for i in range(MAX_CONCURRENT_STREAMS + 1)]
        conn.data_received(b"".join(_request_frames(sid, "/pb.Storage/Get", HANG) for sid in sids))
        await asyncio.sleep(0)
        assert _resets(rec.data) == {sids[-1]: http2.ERR_REFUSED_STREAM}
        assert not rec.closed and len(conn.streams) == MAX_CONCURRENT_STREAMS
        service.hang.set()
        for _ in range(5):
            await asyncio.sleep(0)
        assert not conn.streams
        # Once the others are done a new stream is served again.
        rec.writes.clear()
        conn.data_received(_request_frames(sids[-1] + 2, "/pb.Storage/Get", HANG))
        for _ in range(3):
            await asyncio.sleep(0)
        assert _grpc_status(rec.data) == "0"

    _run_briefly(go())


def test_a_frame_larger_than_the_default_max_is_a_frame_size_error_before_its_payload() -> None:
    async def go() -> None:
        _, conn, rec = await _served_storage("k", b"v")
        # Only the 9-byte header of a 16 KiB + 1 frame: the error must not wait for (or buffer) the payload.
        conn.data_received(struct.pack(">BHBBI", 0, http2.DEFAULT_MAX_FRAME + 1, http2.DATA, 0, 1))
        assert _goaway_code(rec.data) == http2.ERR_FRAME_SIZE and rec.closed

    _run_briefly(go())


def test_a_header_block_past_the_list_size_is_refused_before_it_ends() -> None:
    async def go() -> None:
        _, conn, rec = await _served_storage("k", b"v")
        conn.data_received(http2.frame(http2.HEADERS, 0, 1, b""))
        chunk = b"\x00" * http2.DEFAULT_MAX_FRAME
        for _ in range(MAX_HEADER_LIST_SIZE // len(chunk) + 1):
            if rec.closed:
                break
            conn.data_received(http2.frame(http2.CONTINUATION, 0, 1, chunk))
        assert rec.closed and _goaway_code(rec.data) is not None

    _run_briefly(go())


def test_a_flood_of_empty_continuation_frames_is_refused() -> None:
    async def go() -> None:
        _, conn, rec = await _served_storage("k", b"v")
        conn.data_received(http2.frame(http2.HEADERS, 0, 1, b""))
        for _ in range(10_000):
            if rec.closed:
                break
            conn.data_received(http2.frame(http2.CONTINUATION, 0, 1, b""))
        assert rec.closed and _goaway_code(rec.data) is not None

    _run_briefly(go())


def test_a_message_over_the_max_size_is_resource_exhausted_without_reading_it() -> None:
    async def go() -> None:
        _, conn, rec = await _served_storage("k", b"v")
        prefix = b"\x00" + (MAX_MESSAGE_BYTES + 1).to_bytes(4, "big")
        conn.data_received(_headers_only(1, "/pb.Storage/Get")
                           + http2.frame(http2.DATA, 0, 1, prefix + b"x" * 100))
        assert _grpc_status(rec.data) == "8"          # RESOURCE_EXHAUSTED
        assert not rec.closed and not conn.streams

    _run_briefly(go())


def test_stream_ids_must_increase() -> None:
    async def go() -> None:
        _, conn, rec = await _served_storage("hang", b"late")
        conn.data_received(_request_frames(5, "/pb.Storage/Get", HANG))
        conn.data_received(_request_frames(3, "/pb.Storage/Get", HANG))
        assert _goaway_code(rec.data) == http2.ERR_PROTOCOL and rec.closed

    _run_briefly(go())


def test_an_empty_request_gets_an_error_status_and_logs_no_traceback(caplog) -> None:
    caplog.set_level(logging.DEBUG)

    async def go() -> None:
        _, conn, rec = await _served_storage("k", b"v")
        conn.data_received(_headers_only(1, "/pb.Storage/Get", end_stream=True))
        for _ in range(3):
            await asyncio.sleep(0)
        assert _grpc_status(rec.data) not in (None, "0")
        assert not rec.closed

    _run_briefly(go())
    assert not [r for r in caplog.records if r.exc_info], caplog.text


def test_limits_leave_ordinary_calls_alone() -> None:
    async def go() -> None:
        _, conn, rec = await _served_storage("k", b"v" * 10_000)
        conn.data_received(_request_frames(1, "/pb.Storage/Get",
                                           backend_pb2.StorageGetArgs(key="k").SerializeToString()))
        for _ in range(3):
            await asyncio.sleep(0)
        assert _grpc_status(rec.data) == "0"

    _run_briefly(go())
