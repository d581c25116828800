"""Small local servers that misbehave the way a hostile or broken "ACME CA" would, for the transport tests."""
from __future__ import annotations

import json
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Callable


@dataclass
class RawServer:
    """A TCP server on 127.0.0.1 running `behaviour(conn, server)` for each connection, in its own thread."""

    behaviour: Callable[[socket.socket, "RawServer"], None]
    sock: socket.socket = field(init=False)
    port: int = field(init=False)
    requests: int = 0
    bytes_sent: int = 0
    finished: bool = False             # a behaviour that ran to its end (was never cut off) sets this
    cut_off: threading.Event = field(default_factory=threading.Event)
    stopping: bool = False

    def __post_init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/directory"

    def _serve(self) -> None:
        while not self.stopping:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._one, args=(conn,), daemon=True).start()

    def _one(self, conn: socket.socket) -> None:
        self.requests += 1
        try:
            self.behaviour(conn, self)
        except OSError:
            self.cut_off.set()
        finally:
            conn.close()

    def send(self, conn: socket.socket, data: bytes) -> None:
        conn.sendall(data)
        self.bytes_sent += len(data)

    def stop(self) -> None:
        self.stopping = True
        self.sock.close()


def read_request(conn: socket.socket) -> bytes:
    data = b""
    conn.settimeout(10)
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(4096)
        if not chunk:
            break
        data += chunk
    return data


def drip_body(conn: socket.socket, server: RawServer) -> None:
    """Headers at once, then a long body one byte at a time: no single read ever times out."""
    read_request(conn)
    server.send(conn, b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n")
    for _ in range(100000):
        time.sleep(0.05)
        server.send(conn, b" ")
    server.finished = True


def drip_headers(conn: socket.socket, server: RawServer) -> None:
    read_request(conn)
    for byte in b"HTTP/1.1 200 OK\r\nX-Slow: " + b"a" * 100000:
        time.sleep(0.05)
        server.send(conn, bytes([byte]))
    server.finished = True


def huge_body(conn: socket.socket, server: RawServer) -> None:
    """A 100 MB reply with no length announced."""
    read_request(conn)
    server.send(conn, b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n")
    chunk = b"[" + b"1," * 32767 + b"1"
    while server.bytes_sent < 100 * 1024 * 1024:
        server.send(conn, chunk)
    server.finished = True


def silent(conn: socket.socket, server: RawServer) -> None:
    read_request(conn)
    time.sleep(30)
    server.finished = True


def not_http(conn: socket.socket, server: RawServer) -> None:
    server.send(conn, b"SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n")
    time.sleep(0.2)


def http_reply(status: str, body: bytes, headers: dict[str, str] | None = None) -> bytes:
    head = f"HTTP/1.1 {status}\r\nContent-Length: {len(body)}\r\nConnection: close\r\n"
    for k, v in (headers or {}).items():
        head += f"{k}: {v}\r\n"
    return head.encode() + b"\r\n" + body


def garbage_200(conn: socket.socket, server: RawServer) -> None:
    read_request(conn)
    server.send(conn, http_reply("200 OK", b"<html>hello</html>", {"Content-Type": "application/json"}))


def redirect_loop(conn: socket.socket, server: RawServer) -> None:
    read_request(conn)
    server.send(conn, http_reply("302 Found", b"", {"Location": f"http://127.0.0.1:{server.port}/directory"}))


def directory_pointing_to(base: str, marker: str = "") -> Callable[[socket.socket, RawServer], None]:
    """A directory document whose endpoints are under `base` (maybe another host); `marker` goes in its meta."""
    def behaviour(conn: socket.socket, server: RawServer) -> None:
        read_request(conn)
        body = json.dumps({"newNonce": f"{base}/nonce", "newAccount": f"{base}/account", "newOrder": f"{base}/order",
                           "revokeCert": f"{base}/revoke", "keyChange": f"{base}/key-change",
                           "meta": {"website": marker or "https://example.com"}}).encode()
        server.send(conn, http_reply("200 OK", body, {"Content-Type": "application/json"}))
    return behaviour


def refused_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port
