"""Sockets for the plugin link: a transport over a non-blocking `ssl.SSLSocket`, a listener and a dialler.

Why not asyncio's own TLS: it runs OpenSSL on memory buffers and moves every record through a Python state
machine (sslproto), which profiled at about a quarter of the plugin's CPU per call. An `SSLSocket` in
non-blocking mode reads, decrypts, encrypts and writes inside OpenSSL, one call per direction, so the
event loop only has to tell us when the socket is ready. Plain sockets (no AutoMTLS) take the same path.
"""
from __future__ import annotations

import asyncio
import logging
import os
import socket
import ssl
from typing import Callable

log = logging.getLogger("python-pki.sockets")

READ_SIZE = 256 * 1024
HANDSHAKE_TIMEOUT = 10.0
_AGAIN = (BlockingIOError, InterruptedError, ssl.SSLWantReadError, ssl.SSLWantWriteError)


class SocketTransport(asyncio.Transport):
    """The part of asyncio's Transport our HTTP/2 connection uses: write, close, is_closing."""

    def __init__(self, loop: asyncio.AbstractEventLoop, sock: socket.socket, protocol: asyncio.Protocol) -> None:
        super().__init__()
        self._loop = loop
        self._sock = sock
        self._fd = sock.fileno()
        self._protocol = protocol
        self._tls = isinstance(sock, ssl.SSLSocket)
        self._pending: bytes = b""          # what the socket would not take yet
        self._closing = False
        self._closed = False

    def start(self) -> None:
        self._protocol.connection_made(self)
        if not self._closed:
            self._loop.add_reader(self._fd, self._on_readable)

    # -- reading -------------------------------------------------------------------------------------------------
    def _on_readable(self) -> None:
        sock = self._sock
        try:
            while True:
                data = sock.recv(READ_SIZE)
                if not data:
                    self._abort(None)
                    return
                self._protocol.data_received(data)
                if self._closed:
                    return
                # OpenSSL may hold decrypted bytes the socket no longer signals; drain them now.
                if not self._tls or not sock.pending():   # type: ignore[attr-defined]
                    return
        except _AGAIN:
            return
        except (OSError, ssl.SSLError) as exc:
            self._abort(exc)

    # -- writing -------------------------------------------------------------------------------------------------
    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._closed or self._closing or not data:
            return
        if self._pending:
            self._pending += bytes(data)
            return
        self._send(bytes(data))

    def _send(self, data: bytes) -> None:
        try:
            sent = self._sock.send(data)
        except _AGAIN:
            sent = 0     # TLS: nothing taken; the same bytes must be offered again
        except (OSError, ssl.SSLError) as exc:
            self._abort(exc)
            return
        if sent < len(data):
            first = not self._pending
            self._pending = data[sent:]
            if first:
                self._loop.add_writer(self._fd, self._on_writable)
        else:
            self._pending = b""

    def _on_writable(self) -> None:
        data, self._pending = self._pending, b""
        self._send(data)
        if self._closed:
            return
        if not self._pending:
            self._loop.remove_writer(self._fd)
            if self._closing:
                self._abort(None)

    # -- closing -------------------------------------------------------------------------------------------------
    def is_closing(self) -> bool:
        return self._closing or self._closed

    def close(self) -> None:
        if self._closed:
            return
        self._closing = True
        if not self._pending:
            self._abort(None)

    def abort(self) -> None:
        self._abort(None)

    def _abort(self, exc: BaseException | None) -> None:
        if self._closed:
            return
        self._closed = True
        self._loop.remove_reader(self._fd)
        if self._pending:
            self._loop.remove_writer(self._fd)
        self._pending = b""
        try:
            self._sock.close()
        except OSError:
            pass
        self._loop.call_soon(self._protocol.connection_lost, exc)  # type: ignore[arg-type]



async def _ready(loop: asyncio.AbstractEventLoop, sock: socket.socket, writable: bool) -> None:
    fut = loop.create_future()
    fd = sock.fileno()
    add, remove = (loop.add_writer, loop.remove_writer) if writable else (loop.add_reader, loop.remove_reader)
    add(fd, lambda: fut.done() or fut.set_result(None))
    try:
        await fut
    finally:
        remove(fd)


async def _handshake(loop: asyncio.AbstractEventLoop, sock: ssl.SSLSocket) -> None:
    while True:
        try:
            sock.do_handshake()
            return
        except ssl.SSLWantReadError:
            await _ready(loop, sock, writable=False)
        except ssl.SSLWantWriteError:
            await _ready(loop, sock, writable=True)


async def _secure(loop: asyncio.AbstractEventLoop, raw: socket.socket, ctx: ssl.SSLContext | None, *,
                  server_side: bool, server_hostname: str | None = None) -> socket.socket:
    if ctx is None:
        return raw
    sock = ctx.wrap_socket(raw, server_side=server_side, do_handshake_on_connect=False,
                           server_hostname=None if server_side else server_hostname)
    try:
        await asyncio.wait_for(_handshake(loop, sock), HANDSHAKE_TIMEOUT)
    except BaseException:
        sock.close()
        raise
    return sock


def _tune(sock: socket.socket) -> None:
    sock.setblocking(False)
    if sock.family in (socket.AF_INET, socket.AF_INET6):
        # Replies are small and latency-bound; never let Nagle hold one back.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


ProtocolFactory = Callable[[], asyncio.Protocol]


class Listener:
    """Accepts connections on a unix path or a TCP port, runs the TLS handshake, starts a protocol on each."""

    def __init__(self, factory: ProtocolFactory, ctx: ssl.SSLContext | None) -> None:
        self._factory = factory
        self._ctx = ctx
        self._sock: socket.socket | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._handshakes: set[asyncio.Task[None]] = set()
        self._path: str | None = None

    def bind_unix(self, path: str) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind(path)
        except OSError:
            sock.close()
            raise
        self._path = path
        self._listen(sock)

    def bind_tcp(self, host: str, port: int) -> None:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.bind((host, port))
        except OSError:
            sock.close()
            raise
        self._listen(sock)

    def _listen(self, sock: socket.socket) -> None:
        sock.setblocking(False)
        sock.listen(128)
        self._sock = sock
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(sock.fileno(), self._accept)

    @property
    def sockets(self) -> list[socket.socket]:
        return [self._sock] if self._sock is not None else []

    def _accept(self) -> None:
        assert self._sock is not None and self._loop is not None
        while True:
            try:
                raw, _ = self._sock.accept()
            except _AGAIN:
                return
            except OSError as exc:
                log.debug("accept failed: %s", exc)
                return
            _tune(raw)
            task = self._loop.create_task(self._serve(raw))
            self._handshakes.add(task)
            task.add_done_callback(self._handshakes.discard)

    async def _serve(self, raw: socket.socket) -> None:
        assert self._loop is not None
        try:
            sock = await _secure(self._loop, raw, self._ctx, server_side=True)
        except (OSError, ssl.SSLError, asyncio.TimeoutError) as exc:
            log.debug("TLS handshake with a client failed: %s", exc)
            return
        SocketTransport(self._loop, sock, self._factory()).start()

    def close(self) -> None:
        if self._sock is None:
            return
        assert self._loop is not None
        self._loop.remove_reader(self._sock.fileno())
        self._sock.close()
        self._sock = None
        for task in list(self._handshakes):
            task.cancel()
        if self._path is not None:
            try:
                os.unlink(self._path)
            except OSError:
                pass


async def dial(factory: ProtocolFactory, ctx: ssl.SSLContext | None, *, path: str | None = None,
               host: str | None = None, port: int | None = None,
               server_hostname: str | None = None) -> asyncio.Protocol:
    loop = asyncio.get_running_loop()
    if path is not None:
        raw = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        address: object = path
    else:
        assert host is not None and port is not None
        raw = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
        address = (host, port)
    try:
        _tune(raw)
        await loop.sock_connect(raw, address)
        sock = await _secure(loop, raw, ctx, server_side=False, server_hostname=server_hostname)
    except BaseException:
        raw.close()
        raise
    protocol = factory()
    SocketTransport(loop, sock, protocol).start()
    return protocol
