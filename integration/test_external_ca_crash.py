"""The external-CA plugin process is SIGKILLed by the test while an order sits in each of its non-terminal
states, inside a real `bao`; the order resumes through ordinary API calls and completes against pebble.

Where a state's step talks to the CA, the kill lands while that call is in flight in the worst place: the CA
has processed the request but its answer never reaches the plugin (a proxy in front of pebble swallows it).
So the step's ACME call has taken effect at the CA while the stored order still says the old state, and the
resumed plugin must repeat that call safely. `awaiting-challenge-fulfillment` has no CA call (it waits for
the client), so the plugin is killed there while idle.
"""
from __future__ import annotations

import http.client
import http.server
import json
import os
import signal
import ssl
import threading
import time
import uuid
from typing import Any, Callable, Iterator
from urllib.parse import urlsplit

import pytest

from integration.acme_support import Mount, external_ca_plugin, pebble_ca, xca  # noqa: F401 - fixtures
from integration.harness import BaoServer, pids_with_cmdline
from tests.external_ca.flows import TERMINAL, assert_chains_to_root, san_values
from tests.external_ca.pebble import Pebble

pytestmark = pytest.mark.acme

EXTERNAL_CA_ARG = "--backend=external-ca"


class LosingProxy:
    """A TLS reverse proxy to pebble that can swallow one successful answer.

    `arm(method, path_prefix, nth)`: the nth 2xx answer of pebble to a matching request is not passed on;
    `held` is set and the handler waits for `release()`, then drops the connection. Counting 2xx answers
    only keeps pebble's random nonce rejections (retried by the client) out of the count. The Host header
    is passed through, so every URL pebble hands out points back at the proxy.
    """

    def __init__(self, pebble: Pebble) -> None:
        target = urlsplit(pebble.directory_url)
        self.target = (target.hostname or "127.0.0.1", target.port or 443)
        self.upstream_ctx = ssl.create_default_context(cadata=pebble.tls_ca_pem)
        self.held = threading.Event()
        self._release = threading.Event()
        self._lock = threading.Lock()
        self._rule: tuple[str, str, int] | None = None
        self._count = 0
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _forward(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("connection", "keep-alive")}
                conn = http.client.HTTPSConnection(*proxy.target, context=proxy.upstream_ctx, timeout=30)
                try:
                    conn.request(self.command, self.path, body=body, headers=headers)
                    resp = conn.getresponse()
                    payload = resp.read()
                finally:
                    conn.close()
                if proxy._swallow(self.command, self.path, resp.status):
                    proxy.held.set()
                    proxy._release.wait(60)
                    self.close_connection = True
                    return
                self.send_response(resp.status)
                for k, v in resp.getheaders():
                    if k.lower() not in ("connection", "keep-alive", "transfer-encoding", "content-length"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(payload)))
                self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_HEAD = _forward  # noqa: N815

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(os.path.join(pebble.tmp, "tls.pem"), os.path.join(pebble.tmp, "tls.key"))
        self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def directory_url(self) -> str:
        return f"https://127.0.0.1:{self.port}/dir"

    def arm(self, method: str, path_prefix: str, nth: int = 1) -> None:
        with self._lock:
            self._rule, self._count = (method, path_prefix, nth), 0
            self.held.clear()
            self._release.clear()

    def disarm(self) -> None:
        with self._lock:
            self._rule = None
        self._release.set()

    def _swallow(self, method: str, path: str, status: int) -> bool:
        with self._lock:
            if self._rule is None or not 200 <= status < 300:
                return False
            want_method, prefix, nth = self._rule
            if method != want_method or not path.startswith(prefix):
                return False
            self._count += 1
            if self._count < nth:
                return False
            self._rule = None
            return True

    def stop(self) -> None:
        self.disarm()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def proxy(pebble_ca: Pebble) -> Iterator[LosingProxy]:  # noqa: F811 - the imported fixture
    p = LosingProxy(pebble_ca)
    yield p
    p.stop()


def external_ca_pids(bao: BaoServer) -> list[int]:
    out = []
    for pid in pids_with_cmdline(str(bao.launcher_path)):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                argv = fh.read().split(b"\0")
        except OSError:
            continue
        if EXTERNAL_CA_ARG.encode() in argv:
            out.append(pid)
    return out


def kill_plugin(bao: BaoServer) -> None:
    pids = external_ca_pids(bao)
    assert pids, "no external-CA plugin process found"
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while set(pids) & set(external_ca_pids(bao)):
        assert time.monotonic() < deadline, "the killed plugin process did not go away"
        time.sleep(0.05)
    # The server marks the plugin exited a little after the process is reaped; a request racing that gets
    # one 500 from the server itself (see test_plugin_host.py).
    time.sleep(1.0)


def stored_status(bao: BaoServer, mount: str, oid: str) -> str:
    """The order's state as written in the mount's storage (read through sys/raw, not through the plugin)."""
    uuid_ = bao.http("GET", "sys/mounts").json()["data"][mount + "/"]["uuid"]
    resp = bao.http("GET", f"sys/raw/logical/{uuid_}/order/{oid}")
    assert resp.status_code == 200, resp.text
    return json.loads(resp.json()["data"]["value"])["status"]


class Driver:
    """Moves one order along through the API as a client would: status reads, and the http-01 challenge
    served by challtestsrv then reported with fulfilled-challenge."""

    def __init__(self, m: Mount, pebble: Pebble, role: str, oid: str, domain: str) -> None:
        self.m, self.pebble, self.role, self.oid, self.domain = m, pebble, role, oid, domain

    def status(self) -> dict[str, Any]:
        return self.m.ok("GET", f"role/{self.role}/order/{self.oid}/status")

    def serve_challenge(self) -> None:
        ch = self.m.ok("GET", f"role/{self.role}/order/{self.oid}/challenge",
                       params={"identifier": self.domain, "challenge_type": "http-01"})
        self.pebble.add_http01(ch["challenge_token"], ch["challenge_auth"])

    def report_fulfilled(self) -> None:
        resp = self.m.req("PUT", f"role/{self.role}/order/{self.oid}/fulfilled-challenge",
                          json={"identifier": self.domain, "challenge_type": "http-01"})
        assert resp.status_code == 204, resp.text

    def run(self, until: Callable[[dict[str, Any]], bool], timeout: float = 30) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            data = self.status()
            if until(data) or data["order_status"] in TERMINAL:
                return data
            if data["order_status"] == "awaiting-challenge-fulfillment":
                self.serve_challenge()
                self.report_fulfilled()
                continue
            assert time.monotonic() < deadline, f"order stuck: {data}"
            time.sleep(0.2)


def _in(*states: str) -> Callable[[dict[str, Any]], bool]:
    return lambda data: data["order_status"] in states


# state -> the CA call whose answer is lost when the plugin dies (method, pebble path prefix, nth 2xx answer)
IN_FLIGHT = {
    "new": ("POST", "/order-plz", 1),                     # newOrder
    "submitted": ("POST", "/authZ/", 2),                  # authz refresh (the 1st fetch belongs to `new`)
    "notify-acme-server-challenges-completed": ("POST", "/chalZ/", 1),   # the challenge answer
    "processing-challenge": ("POST", "/finalize-order/", 1),             # finalize with the CSR
    "fetching-certificate": ("POST", "/certZ/", 1),       # certificate download
}
STATES = ["new", "submitted", "awaiting-challenge-fulfillment", "notify-acme-server-challenges-completed",
          "processing-challenge", "fetching-certificate"]


@pytest.mark.parametrize("state", STATES)
def test_order_completes_after_plugin_killed_in_state(bao, xca, pebble_ca, proxy, state):  # noqa: F811
    xca.ok("PUT", "config/acme-account/crash", json={
        "directory_url": proxy.directory_url, "email_contacts": "ops@example.com", "key_type": "ec-256",
        "trusted_ca": pebble_ca.tls_ca_pem})
    # A fresh name per order: pebble cannot reuse an authorization, so every state is passed through.
    domain = f"{uuid.uuid4().hex[:10]}.crash.example.com"
    xca.ok("PUT", "role/crash", json={"acme_account_name": "crash", "allowed_domains": domain,
                                      "allowed_domain_options": "bare_domains", "allowed_challenge_types": "http-01",
                                      "csr_generate_key_type": "ec-256"})
    oid = xca.ok("PUT", "role/crash/new-order", json={"identifiers": domain})["order_id"]
    drv = Driver(xca, pebble_ca, "crash", oid, domain)

    if state == "awaiting-challenge-fulfillment":
        data = drv.run(_in(state))
        assert data["order_status"] == state, data
        drv.serve_challenge()          # the client has the challenge, but has not reported it yet
        assert stored_status(bao, xca.path, oid) == state
        kill_plugin(bao)
    else:
        method, prefix, nth = IN_FLIGHT[state]
        proxy.arm(method, prefix, nth)
        failures: list[BaseException] = []

        def drive() -> None:
            try:
                drv.run(lambda _: proxy.held.is_set())
            except BaseException as exc:  # noqa: BLE001 - reported below unless the kill caused it
                if not proxy.held.is_set():
                    failures.append(exc)

        worker = threading.Thread(target=drive, daemon=True)
        worker.start()
        try:
            assert proxy.held.wait(30), f"the plugin never made the {method} {prefix} call: {failures}"
            assert stored_status(bao, xca.path, oid) == state
            kill_plugin(bao)
        finally:
            proxy.disarm()
        worker.join(30)
        assert not worker.is_alive() and not failures, failures

    data = drv.run(_in("completed"), timeout=45)
    assert data["order_status"] == "completed", data
    cert = xca.ok("GET", f"role/crash/order/{oid}/fetch-cert")
    leaf = assert_chains_to_root(cert, pebble_ca.root_pem())
    assert san_values(leaf) == {domain}
