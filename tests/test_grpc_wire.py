"""Our HTTP/2 gRPC link against an independent implementation (grpclib on h2) in both directions, and against
itself over the plugin's mTLS: large messages past the flow-control windows, concurrency, status codes and
messages, bidi streams, lost connections and redialling. Go's side is covered by the integration suite."""
from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, Awaitable, Callable

import pytest
from grpclib.client import Channel
from grpclib.const import Status
from grpclib.exceptions import GRPCError
from grpclib.server import Server

from plugin.host import http2, tls
from plugin.host.broker import Broker
from plugin.host.grpc_client import GrpcChannel
from plugin.host.grpc_server import GrpcServer
from proto import backend_grpc, backend_pb2, grpc_broker_grpc, grpc_broker_pb2
from tests.storage_service import InMemoryStorageService

BIG = bytes(range(256)) * (12 * 1024)        # 3 MiB: far past the 64 KiB default windows of an h2 peer


class Recorder:
    """Stands in for a transport: keeps each write."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False

    @property
    def data(self) -> bytes:
        return b"".join(self.writes)

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True


class StorageService(InMemoryStorageService):
    """Three keys misbehave so that status handling and lost connections can be checked."""

    def __init__(self) -> None:
        super().__init__()
        self.hang = asyncio.Event()

    async def fetch(self, key: str) -> bytes | None:
        if key == "fail/grpc":
            raise GRPCError(Status.NOT_FOUND, "no such thing: 100% gone\n")
        if key == "fail/crash":
            raise RuntimeError("boom")
        if key == "hang":
            await self.hang.wait()
        return await super().fetch(key)


class Calls:
    """One calling convention over either client, so each scenario runs against both peers."""

    def __init__(self, call: Callable[[str, Any, Any], Awaitable[Any]]) -> None:
        self.call = call

    async def put(self, key: str, value: bytes) -> None:
        await self.call("/pb.Storage/Put", backend_pb2.StoragePutArgs(
            entry=backend_pb2.StorageEntry(key=key, value=value)), backend_pb2.StoragePutReply)

    async def get(self, key: str) -> bytes | None:
        reply = await self.call("/pb.Storage/Get", backend_pb2.StorageGetArgs(key=key), backend_pb2.StorageGetReply)
        return reply.entry.value if reply.HasField("entry") else None


def _grpclib_caller(channel: Channel) -> Calls:
    storage = backend_grpc.StorageStub(channel)
    system = backend_grpc.SystemViewStub(channel)
    methods = {"/pb.Storage/Put": storage.Put, "/pb.Storage/Get": storage.Get,
               "/pb.SystemView/MaxLeaseTTL": system.MaxLeaseTTL}

    async def call(path: str, request: Any, _reply: Any) -> Any:
        return await methods[path](request)
    return Calls(call)


async def _scenario(calls: Calls) -> None:
    await calls.put("big", BIG)
    assert await calls.get("big") == BIG
    assert await calls.get("missing") is None
    values = [f"v{i}".encode() * (i + 1) for i in range(60)]
    await asyncio.gather(*(calls.put(f"k/{i}", v) for i, v in enumerate(values)))
    assert await asyncio.gather(*(calls.get(f"k/{i}") for i in range(60))) == values
    with pytest.raises(GRPCError) as err:
        await calls.get("fail/grpc")
    assert err.value.status == Status.NOT_FOUND and err.value.message == "no such thing: 100% gone\n"
    with pytest.raises(GRPCError) as err:
        await calls.get("fail/crash")
    assert err.value.status == Status.UNKNOWN
    with pytest.raises(GRPCError) as err:
        await calls.call("/pb.SystemView/MaxLeaseTTL", backend_pb2.Empty(), backend_pb2.TTLReply)
    assert err.value.status == Status.UNIMPLEMENTED
    assert await calls.get("big") == BIG          # the connection is still good after the errors


def _serve_and_run_scenario(tmp_path: Path, server_type: Any, dial: Callable[[str], tuple[Any, Calls]]) -> None:
    async def go() -> None:
        server = server_type([StorageService()])
        sock = str(tmp_path / "link.sock")
        await server.start(path=sock)
        channel, calls = dial(sock)
        try:
            await _scenario(calls)
        finally:
            channel.close()
            server.close()
            await server.wait_closed()
    asyncio.run(go())


def test_our_server_with_a_grpclib_client(tmp_path: Path) -> None:
    def dial(sock: str) -> tuple[Any, Calls]:
        channel = Channel(path=sock)
        return channel, _grpclib_caller(channel)
    _serve_and_run_scenario(tmp_path, GrpcServer, dial)


def test_our_client_with_a_grpclib_server(tmp_path: Path) -> None:
    def dial(sock: str) -> tuple[Any, Calls]:
        channel = GrpcChannel(path=sock)
        return channel, Calls(channel.unary)
    _serve_and_run_scenario(tmp_path, Server, dial)


def test_both_of_ours_over_the_plugin_mtls(tmp_path: Path) -> None:
    async def go() -> None:
        server_ident, client_ident = tls.make_identity(), tls.make_identity()
        server = GrpcServer([StorageService()])
        sock = str(tmp_path / "tls.sock")
        await server.start(path=sock, ssl=tls.server_context(server_ident, client_ident.cert_pem.decode()))
        channel = GrpcChannel(path=sock, ssl_context=tls.client_context(client_ident, server_ident.cert_pem.decode()))
        stranger = GrpcChannel(path=sock, ssl_context=tls.client_context(tls.make_identity(),
                                                                         server_ident.cert_pem.decode()))
        try:
            await _scenario(Calls(channel.unary))
            with pytest.raises(Exception):     # a client certificate the server did not hand out is refused
                await Calls(stranger.unary).get("big")
        finally:
            channel.close()
            stranger.close()
            server.close()
            await server.wait_closed()
    asyncio.run(go())


def test_a_pending_call_fails_when_the_connection_drops_and_the_next_one_redials(tmp_path: Path) -> None:
    async def go() -> None:
        service = StorageService()
        sock = str(tmp_path / "drop.sock")
        server = GrpcServer([service])
        await server.start(path=sock)
        channel = GrpcChannel(path=sock)
        calls = Calls(channel.unary)
        await calls.put("a", b"1")
        pending = asyncio.ensure_future(calls.get("hang"))
        await asyncio.sleep(0.05)
        server.close()
        await server.wait_closed()
        with pytest.raises(GRPCError) as err:
            await asyncio.wait_for(pending, 5)
        assert err.value.status == Status.UNAVAILABLE
        fresh = StorageService()
        await fresh.store.put("a", b"2")
        server = GrpcServer([fresh])
        await server.start(path=sock)
        try:
            assert await calls.get("a") == b"2"
        finally:
            channel.close()
            server.close()
            await server.wait_closed()
    asyncio.run(go())


def test_the_broker_stream_takes_announcements_and_answers_knocks(tmp_path: Path) -> None:
    async def go() -> None:
        broker = Broker(None)
        server = GrpcServer([broker])
        sock = str(tmp_path / "broker.sock")
        await server.start(path=sock)
        channel = Channel(path=sock)
        try:
            stub = grpc_broker_grpc.GRPCBrokerStub(channel)
            async with stub.StartStream.open() as stream:
                await stream.send_message(grpc_broker_pb2.ConnInfo(
                    service_id=7, knock=grpc_broker_pb2.ConnInfo.Knock(knock=True)))
                answer = await stream.recv_message()
                assert answer.service_id == 7 and answer.knock.knock and not answer.knock.ack
                await stream.send_message(grpc_broker_pb2.ConnInfo(service_id=1, network="unix",
                                                                   address=str(tmp_path / "storage.sock")))
                dialled = await broker.dial(1)
                assert dialled._path == str(tmp_path / "storage.sock")
                await stream.end()
        finally:
            channel.close()
            server.close()
            await server.wait_closed()
    asyncio.run(go())


def test_frames_written_in_one_loop_turn_leave_in_one_write_in_order() -> None:
    async def go() -> list[bytes]:
        conn = http2.Connection()
        rec = Recorder()
        conn.connection_made(rec)  # type: ignore[arg-type]
        conn._write(b"one")
        conn._write(b"two")
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        conn._write(b"three")
        await asyncio.sleep(0)
        return rec.writes

    writes = asyncio.run(go())
    assert len(writes) == 2
    assert writes[0].endswith(b"onetwo") and writes[1] == b"three"


def test_a_peer_that_breaks_the_protocol_gets_goaway_and_is_dropped() -> None:
    async def go() -> Recorder:
        conn = http2.Connection()
        rec = Recorder()
        conn.connection_made(rec)  # type: ignore[arg-type]
        conn.data_received(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        return rec

    rec = asyncio.run(go())
    assert rec.closed
    assert bytes([http2.GOAWAY]) in rec.data


def test_a_repeated_indexed_header_block_follows_the_peers_table_changes() -> None:
    # The same one-byte block means different headers once a literal has pushed a new entry into the table.
    from hpack import Encoder
    enc = Encoder()
    conn = http2.Connection()
    first = enc.encode([("x-name", "a")])          # literal, indexed at 62
    again = enc.encode([("x-name", "a")])          # the one byte 0xbe
    assert conn._decode(first) == [(b"x-name", b"a")]
    assert conn._decode(again) == [(b"x-name", b"a")]
    assert conn._decode(again) == [(b"x-name", b"a")]   # now from the cache
    other = enc.encode([("x-other", "b")])          # literal: the new entry takes index 62
    same_bytes = enc.encode([("x-other", "b")])
    assert same_bytes == again
    assert conn._decode(other) == [(b"x-other", b"b")]
    assert conn._decode(same_bytes) == [(b"x-other", b"b")]


def _frames(data: bytes) -> list[tuple[int, bytes]]:
    """(type, payload) of each HTTP/2 frame in what was written."""
    out, pos = [], 0
    while pos < len(data):
        length = int.from_bytes(data[pos:pos + 3], "big")
        out.append((data[pos + 3], data[pos + 9:pos + 9 + length]))
        pos += 9 + length
    return out


def test_a_ping_is_answered_after_the_next_reply_or_soon_without_one() -> None:
    def kinds(data: bytes) -> list[int]:
        return [kind for kind, _ in _frames(data)]

    async def go() -> tuple[list[bytes], list[bytes]]:
        conn = http2.Connection()
        rec = Recorder()
        conn.connection_made(rec)  # type: ignore[arg-type]
        conn._preface_pending = False
        await asyncio.sleep(0)
        rec.writes.clear()
        conn.data_received(http2.frame(http2.PING, 0, 0, b"12345678"))
        conn._write(http2.frame(http2.DATA, 0, 1, b"reply"))
        await asyncio.sleep(0)
        with_reply = list(rec.writes)
        rec.writes.clear()
        conn.data_received(http2.frame(http2.PING, 0, 0, b"abcdefgh"))
        await asyncio.sleep(http2.PING_ACK_DELAY * 5)
        return with_reply, list(rec.writes)

    with_reply, alone = asyncio.run(go())
    assert len(with_reply) == 1 and kinds(with_reply[0]) == [http2.DATA, http2.PING]
    assert with_reply[0].endswith(b"12345678")
    assert len(alone) == 1 and kinds(alone[0]) == [http2.PING] and alone[0].endswith(b"abcdefgh")


def test_tcp_with_mtls_both_ways(tmp_path: Path) -> None:
    # The handshake falls back to TCP when a socket path would be too long; the link must work there too.
    import socket

    async def go() -> None:
        server_ident, client_ident = tls.make_identity(), tls.make_identity()
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
        probe.close()
        server = GrpcServer([StorageService()])
        await server.start("127.0.0.1", port, ssl=tls.server_context(server_ident, client_ident.cert_pem.decode()))
        channel = GrpcChannel(host="127.0.0.1", port=port,
                              ssl_context=tls.client_context(client_ident, server_ident.cert_pem.decode()))
        try:
            await _scenario(Calls(channel.unary))
        finally:
            channel.close()
            server.close()
            await server.wait_closed()
    asyncio.run(go())


def test_a_call_the_server_will_never_process_fails_at_its_goaway() -> None:
    import struct

    from plugin.host.grpc_client import GrpcClientConnection

    async def go() -> GRPCError:
        conn = GrpcClientConnection("localhost", b"https")
        conn.connection_made(Recorder())  # type: ignore[arg-type]
        call = asyncio.ensure_future(conn.unary("/pb.Storage/Get", backend_pb2.StorageGetArgs(key="k"),
                                                backend_pb2.StorageGetReply))
        await asyncio.sleep(0)
        conn.data_received(http2.frame(http2.GOAWAY, 0, 0, struct.pack(">II", 0, http2.ERR_NO_ERROR)))
        with pytest.raises(GRPCError) as err:
            await asyncio.wait_for(call, 2)
        assert not conn.usable
        return err.value

    assert asyncio.run(go()).status == Status.UNAVAILABLE


def _request_frames(sid: int, path: str, message: bytes) -> bytes:
    from hpack import Encoder

    from plugin.host import grpc_messages
    block = Encoder().encode([(":method", "POST"), (":scheme", "http"), (":path", path),
                              (":authority", "localhost"), ("content-type", "application/grpc")])
    return (http2.frame(http2.HEADERS, http2.FLAG_END_HEADERS, sid, block)
            + http2.frame(http2.DATA, http2.FLAG_END_STREAM, sid, grpc_messages.frame(message)))


def _grpc_status(data: bytes) -> str | None:
    from hpack import Decoder
    decoder, status = Decoder(), None
    for kind, payload in _frames(data):
        if kind == http2.HEADERS:
            for name, value in decoder.decode(payload):
                if name == "grpc-status":
                    status = value
    return status


def _run_briefly(coro: Any, timeout: float = 5) -> None:
    """Run one test coroutine, failing after `timeout`; tasks left behind are dropped, not awaited, so a handler
    stuck by a regression fails the test instead of hanging the run."""
    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(asyncio.wait_for(coro, timeout))
    finally:
        loop.close()


class CancelRecordingStorage(StorageService):
    """Counts the Get handlers that saw their cancellation."""

    def __init__(self) -> None:
        super().__init__()
        self.cancelled = 0

    async def fetch(self, key: str) -> bytes | None:
        try:
            return await super().fetch(key)
        except asyncio.CancelledError:
            self.cancelled += 1
            raise


async def _served_storage(key: str, value: bytes) -> tuple[CancelRecordingStorage, Any, Recorder]:
    """A storage service holding one key, behind a server connection whose writes a Recorder keeps (the
    connection's own SETTINGS already cleared)."""
    from plugin.host.grpc_server import GrpcServerConnection
    service = CancelRecordingStorage()
    await service.store.put(key, value)
    conn = GrpcServerConnection(service.__mapping__())
    rec = Recorder()
    conn.connection_made(rec)  # type: ignore[arg-type]
    conn.data_received(http2.PREFACE)
    await asyncio.sleep(0)
    rec.writes.clear()
    return service, conn, rec


def test_a_unary_call_that_needs_no_waiting_is_answered_inside_the_receive_call() -> None:
    async def go() -> None:
        service, conn, rec = await _served_storage("k", b"value")
        conn.data_received(_request_frames(1, "/pb.Storage/Get", backend_pb2.StorageGetArgs(key="k")
                                           .SerializeToString()))
        # No loop turn has passed: the reply, with its trailers, went out as one write before data_received returned.
        assert len(rec.writes) == 1 and b"value" in rec.writes[0] and _grpc_status(rec.writes[0]) == "0"
        assert not conn.streams

    _run_briefly(go())


def test_an_eagerly_started_handler_that_waits_goes_on_as_a_task_and_can_be_cancelled() -> None:
    async def go() -> None:
        service, conn, rec = await _served_storage("hang", b"late")
        get = backend_pb2.StorageGetArgs(key="hang").SerializeToString()
        conn.data_received(b"".join(_request_frames(sid, "/pb.Storage/Get", get) for sid in (1, 3, 5)))
        assert rec.writes == []                      # all three wait on the event
        first_step_pending, running = conn.streams[3], conn.streams[5]

        def reset(sid: int) -> None:
            conn.data_received(http2.frame(http2.RST_STREAM, 0, sid, http2.ERR_CANCEL.to_bytes(4, "big")))

        reset(3)                                     # before its task has taken a single step
        for _ in range(3):
            await asyncio.sleep(0)
        reset(5)                                     # while its task waits
        for _ in range(3):
            await asyncio.sleep(0)
        assert first_step_pending.task.done() and running.task.done()
        assert service.cancelled == 2                # both cancellations reached the handler's await
        service.hang.set()
        for _ in range(5):
            await asyncio.sleep(0)
        assert len(rec.writes) == 1 and b"late" in rec.writes[0] and _grpc_status(rec.writes[0]) == "0"
        assert not conn.streams

    _run_briefly(go())
