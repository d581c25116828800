"""The gRPC client side of the plugin link: unary calls to the server's brokered Storage and SystemView."""
from __future__ import annotations

import asyncio
import ssl
from typing import Any, TypeVar
from urllib.parse import unquote

from grpclib.const import Status
from grpclib.exceptions import GRPCError

from plugin.host import grpc_messages, http2, sockets

M = TypeVar("M")


class ClientStream(http2.Stream):
    __slots__ = ("done", "status", "message", "_buf", "_http_status")

    def __init__(self, stream_id: int, send_window: int, done: asyncio.Future[None]) -> None:
        super().__init__(stream_id, send_window)
        self.done = done
        self.status: int | None = None
        self.message = ""
        self._buf = bytearray()
        self._http_status = ""

    def on_headers(self, headers: list[tuple[bytes, bytes]], end_stream: bool) -> None:
        for name, value in headers:
            if name == b":status":
                self._http_status = value.decode("latin-1")
            elif name == b"grpc-status":
                self.status = int(value)
            elif name == b"grpc-message":
                self.message = unquote(value.decode("utf-8", "replace"))
        if end_stream:
            self._complete()

    def on_data(self, data: bytes, end_stream: bool) -> None:
        if data:
            self._buf += data
        if end_stream:
            self._complete()

    def on_reset(self, code: int) -> None:
        self.reset_code = code
        if not self.done.done():
            self.done.set_exception(GRPCError(Status.UNAVAILABLE, f"stream reset by the server (code {code})"))

    def _complete(self) -> None:
        if self.done.done():
            return
        if self.status is None:
            status = Status.UNKNOWN if self._http_status == "200" else Status.UNAVAILABLE
            self.done.set_exception(GRPCError(status, f"no grpc-status (HTTP {self._http_status or '?'})"))
            return
        self.done.set_result(None)

    def reply_bytes(self) -> bytes:
        try:
            message = grpc_messages.take(self._buf)
        except grpc_messages.CompressedMessage:
            raise GRPCError(Status.INTERNAL, "compressed reply") from None
        if message is None:
            raise GRPCError(Status.INTERNAL, "reply without a message" if len(self._buf) < 5 else "truncated reply")
        return message


class GrpcClientConnection(http2.Connection):
    client_side = True

    def __init__(self, authority: str, scheme: bytes) -> None:
        super().__init__()
        self._next_id = 1
        self._authority = authority.encode()
        self._scheme = scheme
        self._blocks: dict[str, bytes] = {}
        self._slots: asyncio.Condition | None = None

    def _request_block(self, path: str) -> bytes:
        block = self._blocks.get(path)
        if block is None:
            # :method POST and :scheme are static-table entries; :path and :authority reuse static names.
            scheme = b"\x87" if self._scheme == b"https" else b"\x86"
            block = (b"\x83" + scheme
                     + http2.hpack_int(4, 4) + http2.hpack_int(len(path), 7) + path.encode()
                     + http2.hpack_int(1, 4) + http2.hpack_int(len(self._authority), 7) + self._authority
                     + http2.hpack_block([(b"content-type", b"application/grpc"), (b"te", b"trailers")]))
            self._blocks[path] = block
        return block

    @property
    def usable(self) -> bool:
        return self.transport is not None and not self.goaway_received

    async def unary(self, path: str, request: Any, reply_type: type[M]) -> M:
        if not self.usable:
            raise ConnectionError("connection to the server is closed")
        limit = self.peer_max_streams
        if limit is not None and len(self.streams) >= limit:
            await self._wait_for_slot(limit)
        sid = self._next_id
        self._next_id += 2
        stream = ClientStream(sid, self.peer_initial_window, self._loop.create_future())  # type: ignore[union-attr]
        self.register(stream)
        body = request.SerializeToString()
        try:
            self.send_headers(stream, self._request_block(path), False)
            await self.send_data(stream, grpc_messages.frame(body), end_stream=True)
            await stream.done
        except asyncio.CancelledError:
            self.reset(stream, http2.ERR_CANCEL)
            raise
        except ConnectionResetError:
            raise GRPCError(Status.UNAVAILABLE, "stream reset by the server") from None
        finally:
            self.streams.pop(sid, None)
            if self._slots is not None:
                self._slot_freed()
        if stream.status != Status.OK.value:
            raise GRPCError(Status(stream.status), stream.message or None)
        return reply_type.FromString(stream.reply_bytes())  # type: ignore[attr-defined]

    async def _wait_for_slot(self, limit: int) -> None:
        if self._slots is None:
            self._slots = asyncio.Condition()
        async with self._slots:
            await self._slots.wait_for(lambda: len(self.streams) < limit or not self.usable)

    def _slot_freed(self) -> None:
        asyncio.ensure_future(self._notify())

    async def _notify(self) -> None:
        assert self._slots is not None
        async with self._slots:
            self._slots.notify_all()

    def on_goaway(self, last_stream_id: int) -> None:
        # Streams above the server's last id were never processed: fail them now rather than at disconnect.
        for sid, stream in list(self.streams.items()):
            if sid > last_stream_id and isinstance(stream, ClientStream) and not stream.done.done():
                stream.done.set_exception(GRPCError(Status.UNAVAILABLE, "the server is going away"))
                self.streams.pop(sid, None)

    def connection_lost(self, exc: Exception | None) -> None:
        for stream in list(self.streams.values()):
            if isinstance(stream, ClientStream) and not stream.done.done():
                stream.done.set_exception(GRPCError(Status.UNAVAILABLE, "connection to the server lost"))
        super().connection_lost(exc)


class GrpcChannel:
    """A redialling client: a call on a lost or GOAWAY'd connection opens a new one first."""

    def __init__(self, *, path: str | None = None, host: str | None = None, port: int | None = None,
                 ssl_context: ssl.SSLContext | None = None, server_hostname: str = "localhost") -> None:
        self._path, self._host, self._port = path, host, port
        self._ssl = ssl_context
        self._server_hostname = server_hostname
        self._conn: GrpcClientConnection | None = None
        self._lock = asyncio.Lock()

    async def _connection(self) -> GrpcClientConnection:
        conn = self._conn
        if conn is not None and conn.usable:
            return conn
        async with self._lock:
            if self._conn is not None and self._conn.usable:
                return self._conn
            authority = "localhost" if self._path else f"{self._host}:{self._port}"
            scheme = b"https" if self._ssl is not None else b"http"
            hostname = self._server_hostname if self._ssl is not None else None

            def factory() -> GrpcClientConnection:
                return GrpcClientConnection(authority, scheme)

            conn = await sockets.dial(factory, self._ssl, path=self._path, host=self._host, port=self._port,
                                      server_hostname=hostname)
            assert isinstance(conn, GrpcClientConnection)
            self._conn = conn
            return conn

    async def unary(self, path: str, request: Any, reply_type: type[M]) -> M:
        conn = await self._connection()
        return await conn.unary(path, request, reply_type)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
