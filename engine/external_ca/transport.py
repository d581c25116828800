"""The HTTP the external-CA backend does: bounded in time and size, and only to hosts the mount allows.

An account's directory URL is chosen by whoever may write config/acme-account, and every URL after it (nonce,
orders, certificates, redirects) by the server at that URL. Each exchange therefore:
- ends by a total deadline (`Deadline`): a watchdog shuts the socket down when it passes, so a server that
  drips one byte at a time cannot hold a worker thread (a per-read timeout never fires on a drip);
- reads at most `MAX_BODY_BYTES` of body (decoded), so a huge reply cannot exhaust memory;
- follows at most `MAX_REDIRECTS` redirects, each hop checked like the first URL;
- goes only to http(s) URLs whose host the mount's `allowed_directory_hosts` admits (when it is set);
- fails with one message whatever went wrong on the wire (refused, reset, timeout, TLS, oversize, not HTTP),
  so that error texts do not map which internal ports are open.

requests has no total deadline and no body cap, hence the small watchdog and the capped read here.
"""
from __future__ import annotations

import socket
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Iterator
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

CALL_DEADLINE_SECONDS = 60.0     # one ACME operation (which may be several requests), end to end
CONNECT_TIMEOUT_SECONDS = 10.0
MAX_BODY_BYTES = 1 << 20         # ACME objects and certificate chains are a few KB
MAX_REDIRECTS = 3
UNREACHABLE = "the ACME server could not be reached or did not send a usable HTTP reply"


class TransportError(requests.exceptions.RequestException):
    """Any failure on the wire; its text is the same for all of them."""

    def __init__(self, detail: str = "") -> None:
        super().__init__(UNREACHABLE)
        self.detail = detail      # for the plugin's own log, never for a response


class HostNotAllowed(requests.exceptions.RequestException):
    """A URL outside the mount's allowed_directory_hosts (refused before any connection is made)."""

    def __init__(self, host: str) -> None:
        super().__init__(f"host {host} is not in this mount's allowed_directory_hosts")
        self.host = host


# --- host policy -------------------------------------------------------------------------------------------------

def _split_host_port(text: str) -> tuple[str, int | None]:
    text = text.strip().lower()
    if text.startswith("["):                       # [v6]:port
        host, _, rest = text[1:].partition("]")
        return host, int(rest[1:]) if rest.startswith(":") and rest[1:].isdigit() else None
    if text.count(":") == 1:
        host, _, port = text.partition(":")
        return host, int(port) if port.isdigit() else None
    return text, None


def validate_host_entry(entry: str) -> str | None:
    """Why an allowed_directory_hosts entry is malformed, or None."""
    text = entry.strip()
    if not text or "/" in text or "@" in text or " " in text:
        return "an entry is a host name, *.domain, or host:port (no scheme, path or user)"
    host, port = _split_host_port(text)
    if text.count(":") == 1 and port is None:
        return "the port of an entry must be a number"
    if port is not None and not 0 < port < 65536:
        return "the port of an entry must be between 1 and 65535"
    body = host[2:] if host.startswith("*.") else host
    if not body or "*" in body:
        return "a wildcard may only be a leading *."
    return None


@dataclass(frozen=True)
class HostPolicy:
    """allowed_directory_hosts: empty admits every host (the default, as before the setting existed)."""

    allowed: tuple[str, ...] = ()

    def admits(self, url: str) -> bool:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            return False
        if not self.allowed:
            return True
        host = parts.hostname.lower().rstrip(".")
        try:
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError:
            return False
        for entry in self.allowed:
            want_host, want_port = _split_host_port(entry)
            if want_port is not None and want_port != port:
                continue
            if want_host.startswith("*."):
                if host.endswith(want_host[1:]) and host != want_host[2:]:
                    return True
            elif host == want_host.rstrip("."):
                return True
        return False

    def check(self, url: str) -> None:
        if not self.admits(url):
            raise HostNotAllowed(urlsplit(url).hostname or "(none)")


@dataclass(frozen=True)
class Reach:
    """How a connection may reach its CA: TLS verification (as requests takes it) and the host policy."""

    verify: bool | str = True
    policy: HostPolicy = field(default_factory=HostPolicy)


def as_reach(value: "Reach | bool | str") -> Reach:
    return value if isinstance(value, Reach) else Reach(verify=value)


# --- deadlines ---------------------------------------------------------------------------------------------------

class Deadline:
    """A point in time after which every socket registered with it is shut down."""

    def __init__(self, seconds: float) -> None:
        self.expires = time.monotonic() + seconds
        self._lock = threading.Lock()
        self._socks: list[socket.socket] = []
        self.expired = False

    def remaining(self) -> float:
        return self.expires - time.monotonic()

    def watch(self, sock: socket.socket | None) -> None:
        if sock is None:
            return
        with self._lock:
            if self.expired:
                _shut(sock)
            else:
                self._socks.append(sock)

    def expire(self) -> None:
        with self._lock:
            self.expired = True
            socks, self._socks = self._socks, []
        for sock in socks:
            _shut(sock)


def _shut(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


_current = threading.local()


@contextmanager
def deadline(seconds: float | None = None) -> Iterator[Deadline]:
    """The deadline of the ACME call running on this thread; an inner call keeps the outer (earlier) one."""
    outer: Deadline | None = getattr(_current, "deadline", None)
    if outer is not None:
        yield outer
        return
    d = Deadline(CALL_DEADLINE_SECONDS if seconds is None else seconds)
    timer = threading.Timer(max(0.0, d.remaining()), d.expire)
    timer.daemon = True
    timer.start()
    _current.deadline = d
    try:
        yield d
    finally:
        _current.deadline = None
        timer.cancel()


def _watch_current(sock: socket.socket | None) -> None:
    d: Deadline | None = getattr(_current, "deadline", None)
    if d is not None:
        d.watch(sock)


class _WatchedHTTPConnection(HTTPConnection):
    def _new_conn(self) -> socket.socket:
        sock = super()._new_conn()
        _watch_current(sock)          # covers the TLS handshake and a reused connection's first request
        return sock

    def getresponse(self, *args: Any, **kwargs: Any) -> Any:
        _watch_current(self.sock)     # a pooled connection reused under a later call's deadline
        return super().getresponse(*args, **kwargs)


class _WatchedHTTPSConnection(HTTPSConnection):
    def _new_conn(self) -> socket.socket:
        sock = super()._new_conn()
        _watch_current(sock)
        return sock

    def getresponse(self, *args: Any, **kwargs: Any) -> Any:
        _watch_current(self.sock)
        return super().getresponse(*args, **kwargs)


class _HTTPPool(HTTPConnectionPool):
    ConnectionCls = _WatchedHTTPConnection


class _HTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _WatchedHTTPSConnection


_POOLS = {"http": _HTTPPool, "https": _HTTPSPool}


class BoundedAdapter(HTTPAdapter):
    """Checks each hop's URL against the policy and puts its sockets under the call's deadline."""

    def __init__(self, policy: HostPolicy) -> None:
        self.policy = policy
        super().__init__(max_retries=0)

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = dict(_POOLS)

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        manager.pool_classes_by_scheme = dict(_POOLS)
        return manager

    def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> requests.Response:
        self.policy.check(request.url or "")
        return super().send(request, *args, **kwargs)


def bounded_session(policy: HostPolicy) -> requests.Session:
    session = requests.Session()
    session.max_redirects = MAX_REDIRECTS
    adapter = BoundedAdapter(policy)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


def request(session: requests.Session, method: str, url: str, **kwargs: Any) -> requests.Response:
    """One exchange under the current call's deadline, its body read in full up to MAX_BODY_BYTES."""
    with deadline() as d:
        left = d.remaining()
        if left <= 0:
            raise TransportError("deadline passed")
        kwargs["timeout"] = (min(CONNECT_TIMEOUT_SECONDS, left), left)
        kwargs["stream"] = True
        try:
            response = session.request(method, url, **kwargs)
            body = bytearray()
            try:
                for chunk in response.iter_content(16384):
                    body += chunk
                    if len(body) > MAX_BODY_BYTES:
                        raise TransportError("reply body over the size cap")
                    if d.expired:
                        raise TransportError("deadline passed")
            finally:
                response.close()
        except (HostNotAllowed, TransportError):
            raise
        except (requests.exceptions.RequestException, OSError, ValueError) as exc:
            raise TransportError(type(exc).__name__) from None
        if d.expired:
            raise TransportError("deadline passed")
        response._content = bytes(body)        # what .json()/.text read; the stream is closed
        response._content_consumed = True
        return response
