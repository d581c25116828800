"""The gRPC server side of the plugin link, on our lean HTTP/2 connection.

Services are the grpclib-generated bases (their `__mapping__()` names each method's path, cardinality and
message types); a handler gets a `ServerStream` with the small part of grpclib's stream API they use:
`metadata`, `recv_message()`, `send_message()`, `send_trailing_metadata()` and `async for`.
"""
from __future__ import annotations

import asyncio
import collections
import collections.abc
import logging
import ssl
from typing import Any, Iterable
from urllib.parse import quote

from grpclib.const import Status
from grpclib.exceptions import GRPCError

from plugin.host import grpc_messages, http2, sockets

log = logging.getLogger("python-pki.grpc")

# Streams one connection may have open at once (advertised in SETTINGS; one more is refused with
# REFUSED_STREAM, which a gRPC client retries). The server's requests in flight to the plugin are far fewer.
MAX_CONCURRENT_STREAMS = 256
# The largest request message we take. Vault's SDK lifts gRPC's 4 MiB default (MaxInt32 both ways) because a
# request body may be as large as the server's max_request_size (32 MiB by default); this sits above that.
MAX_MESSAGE_BYTES = 64 * 1024 * 1024
MAX_HEADER_LIST_SIZE = http2.MAX_HEADER_LIST_SIZE

_RESPONSE_HEADERS = b"\x88" + http2.hpack_literal(b"content-type", b"application/grpc")   # 0x88 = :status 200


def trailers_block(status: Status, message: str | None, headers_too: bool = False) -> bytes:
    fields = [(b"grpc-status", str(status.value).encode())]
    if message:
        fields.append((b"grpc-message", quote(message, safe=" !\"#$&'()*+,-./:;<=>?@[\\]^_`{|}~").encode()))
    return (_RESPONSE_HEADERS if headers_too else b"") + http2.hpack_block(fields)


_OK_TRAILERS = trailers_block(Status.OK, None)


class ServerStream(http2.Stream):
    __slots__ = ("conn", "path", "metadata", "request_type", "unary", "task", "handler", "_buf", "_messages",
                 "_waiter", "_headers_sent", "_trailers_sent")

    def __init__(self, conn: "GrpcServerConnection", stream_id: int) -> None:
        super().__init__(stream_id, conn.peer_initial_window)
        self.conn = conn
        self.path = ""
        self.metadata: dict[str, str] = {}
        self.request_type: Any = None
        self.unary = False              # one request message expected: its absence is an error, not the end
        self.task: asyncio.Task[None] | None = None
        self.handler: Any = None        # a unary-request handler waiting for its request message
        self._buf = bytearray()
        self._messages: collections.deque[bytes] = collections.deque()
        self._waiter: asyncio.Future[None] | None = None
        self._headers_sent = False
        self._trailers_sent = False

    # -- from the connection -------------------------------------------------------------------------------------
    def on_headers(self, headers: list[tuple[bytes, bytes]], end_stream: bool) -> None:
        if self.path:
            self._wake()        # trailers from a client carry nothing we use; end_stream is what matters
            self._start_if_ready()
            return
        for name, value in headers:
            if name == b":path":
                self.path = value.decode("latin-1")
            elif not name.startswith(b":") and name not in (b"content-type", b"te", b"user-agent", b"grpc-timeout",
                                                            b"grpc-accept-encoding", b"grpc-encoding"):
                self.metadata[name.decode("latin-1")] = value.decode("latin-1")
        self.conn.dispatch(self)
        self._start_if_ready()

    def on_data(self, data: bytes, end_stream: bool) -> None:
        if data:
            self._buf += data
            try:
                while (message := grpc_messages.take(self._buf, MAX_MESSAGE_BYTES)) is not None:
                    self._messages.append(message)
            except grpc_messages.CompressedMessage:
                self._abort(Status.UNIMPLEMENTED, "compressed messages are not supported")
                return
            except grpc_messages.MessageTooLarge as exc:
                self._buf.clear()
                self._abort(Status.RESOURCE_EXHAUSTED,
                            f"received message larger than max ({exc.args[0]} vs. {MAX_MESSAGE_BYTES})")
                return
        self._wake()
        self._start_if_ready()

    def _start_if_ready(self) -> None:
        if self.handler is not None and (self._messages or self.remote_closed or self.reset_code is not None):
            handler, self.handler = self.handler, None
            self.conn.start(handler, self)

    def on_reset(self, code: int) -> None:
        self.reset_code = code
        self._wake()
        if self.task is not None and not self.task.done():
            self.task.cancel()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # -- grpclib's stream API, as our services use it ---------------------------------------------------------
    async def recv_message(self) -> Any:
        while not self._messages:
            if self.remote_closed or self.reset_code is not None:
                if self.unary and self.reset_code is None:
                    raise GRPCError(Status.INTERNAL, "the request carried no message")
                return None
            self._waiter = self.conn.loop.create_future()
            await self._waiter
            self._waiter = None
        return self.request_type.FromString(self._messages.popleft())

    def __aiter__(self) -> "ServerStream":
        return self

    async def __anext__(self) -> Any:
        message = await self.recv_message()
        if message is None:
            raise StopAsyncIteration
        return message

    async def send_message(self, message: Any) -> None:
        if self._trailers_sent:
            raise RuntimeError("stream already finished")
        body = message.SerializeToString()
        if not self._headers_sent:
            self._headers_sent = True
            self.conn.send_headers(self, _RESPONSE_HEADERS, False)
        await self.conn.send_data(self, grpc_messages.frame(body))

    async def send_trailing_metadata(self, *, status: Status = Status.OK, status_message: str | None = None,
                                     **_: Any) -> None:
        self.finish(status, status_message)

    def finish(self, status: Status = Status.OK, message: str | None = None) -> None:
        if self._trailers_sent or self.reset_code is not None:
            return
        self._trailers_sent = True
        if status is Status.OK and not message and self._headers_sent:
            block = _OK_TRAILERS
        else:
            block = trailers_block(status, message, headers_too=not self._headers_sent)
        self._headers_sent = True
        self.conn.send_headers(self, block, True)
        if not self.remote_closed:
            # The reply is complete; the client may still be sending, which we no longer want.
            self.conn.reset(self, http2.ERR_NO_ERROR)

    def _abort(self, status: Status, message: str) -> None:
        self.finish(status, message)
        if self.task is not None and not self.task.done():
            self.task.cancel()


class GrpcServerConnection(http2.Connection):
    client_side = False

    def __init__(self, routes: dict[str, Any], on_lost: Any = None) -> None:
        super().__init__()
        self._routes = routes
        self._on_lost = on_lost
        self.loop = asyncio.get_running_loop()

    def extra_settings(self) -> list[tuple[int, int]]:
        return [*super().extra_settings(), (http2.SETTINGS_MAX_CONCURRENT_STREAMS, MAX_CONCURRENT_STREAMS)]

    def new_remote_stream(self, sid: int) -> http2.Stream | None:
        if sid % 2 == 0:
            raise http2.ProtocolError("client opened an even stream")
        if len(self.streams) >= MAX_CONCURRENT_STREAMS:
            self.refuse(sid)
            return None
        stream = ServerStream(self, sid)
        self.register(stream)
        return stream

    def dispatch(self, stream: ServerStream) -> None:
        handler = self._routes.get(stream.path)
        if handler is None:
            stream.finish(Status.UNIMPLEMENTED, f"Method not found: {stream.path}")
            return
        stream.request_type = handler.request_type
        stream.unary = not handler.cardinality.client_streaming
        if handler.cardinality.client_streaming:
            self.start(handler, stream)
        else:
            stream.handler = handler     # started once its one request message is here (see `start`)

    def start(self, handler: Any, stream: ServerStream) -> None:
        """Run the handler at once, inside the receive call, as far as it goes without waiting. Most unary calls
        (resolve-path, reads served from memory, existence checks) finish right here, so their reply leaves in the
        loop turn their request arrived in, without a task, a future or two more turns of the loop. A handler that
        does wait continues as a task from where it stopped."""
        coro = self._run(handler.func, stream)
        try:
            waiting_on = coro.send(None)
        except StopIteration:
            return
        stream.task = self.loop.create_task(_Continuation(coro, waiting_on))

    async def _run(self, func: Any, stream: ServerStream) -> None:
        try:
            await func(stream)
        except GRPCError as exc:
            stream.finish(exc.status, exc.message)
            return
        except asyncio.CancelledError:
            if stream.reset_code is None and self.transport is not None:
                stream.finish(Status.CANCELLED, "cancelled")
            return
        except ConnectionResetError:
            return
        except Exception:  # noqa: BLE001 - reported to the caller, logged here
            log.exception("gRPC handler %s failed", stream.path)
            stream.finish(Status.UNKNOWN, "Internal Server Error")
            return
        stream.finish()

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        if self._on_lost is not None:
            self._on_lost(self)


class _Continuation(collections.abc.Coroutine):
    """The rest of an eagerly started coroutine, in a form a task can drive (Python 3.11 has no eager tasks).
    The first `send` hands the task what the coroutine already waits on; everything after goes straight to the
    coroutine. A cancellation that comes before the task's first step is thrown into the coroutine too, at the
    await it stopped on, so its `finally` blocks and `async with` exits run: wrapped in a coroutine function of
    our own, such a cancellation would end the wrapper before it ever ran and leave the handler suspended."""

    __slots__ = ("_coro", "_first", "_started")

    def __init__(self, coro: Any, waiting_on: Any) -> None:
        self._coro = coro
        self._first = waiting_on
        self._started = False

    def send(self, value: Any) -> Any:
        if not self._started:
            self._started = True
            first, self._first = self._first, None
            return first
        return self._coro.send(value)

    def throw(self, typ: Any, val: Any = None, tb: Any = None) -> Any:
        self._started = True
        self._first = None
        if val is None and tb is None:
            return self._coro.throw(typ)
        return self._coro.throw(typ, val, tb)

    def close(self) -> None:
        self._first = None
        self._coro.close()

    def __await__(self) -> Any:
        raise TypeError("a continuation is driven by its task, never awaited")


class GrpcServer:
    """Listens on a unix socket or TCP port, one `GrpcServerConnection` per accepted connection."""

    def __init__(self, services: Iterable[Any]) -> None:
        self._routes: dict[str, Any] = {}
        for service in services:
            self._routes.update(service.__mapping__())
        self._listener: sockets.Listener | None = None
        self._connections: set[GrpcServerConnection] = set()

    def _factory(self) -> GrpcServerConnection:
        conn = GrpcServerConnection(self._routes, self._connections.discard)
        self._connections.add(conn)
        return conn

    async def start(self, host: str | None = None, port: int | None = None, *, path: str | None = None,
                    ssl: ssl.SSLContext | None = None) -> None:
        listener = sockets.Listener(self._factory, ssl)
        if path is not None:
            listener.bind_unix(path)
        else:
            assert host is not None and port is not None
            listener.bind_tcp(host, port)
        self._listener = listener

    @property
    def sockets(self) -> list[Any]:
        return self._listener.sockets if self._listener is not None else []

    def close(self) -> None:
        if self._listener is not None:
            self._listener.close()
        for conn in list(self._connections):
            conn.close()

    async def wait_closed(self) -> None:
        await asyncio.sleep(0)      # lets connection_lost callbacks run
