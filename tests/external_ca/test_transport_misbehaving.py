"""The external-CA client against servers that drip, flood, lie, loop or sit on internal ports.

Every call must end by its deadline (checked by ordering: the call returns while the server is still sending),
read a bounded body, not take garbage for success, and fail with one text whatever the wire did.
"""
from __future__ import annotations

import concurrent.futures
import logging

import pytest

from engine.external_ca import acme_client, keys, transport
from engine.external_ca.acme_client import AcmeFailed, RetryLater
from engine.external_ca.backend import build_backend
from engine.external_ca.transport import HostPolicy, Reach
from . import misbehaving as mb
from .harness import Client
from .test_api import run


@pytest.fixture(scope="module")
def key():
    return keys.generate("ec-256")


@pytest.fixture
def short_deadline(monkeypatch):
    monkeypatch.setattr(transport, "CALL_DEADLINE_SECONDS", 1.5)


def _server(behaviour):
    return mb.RawServer(behaviour)


@pytest.mark.parametrize("behaviour", [mb.drip_body, mb.drip_headers], ids=["body", "headers"])
def test_a_dripping_server_cannot_hold_worker_threads(short_deadline, key, behaviour):
    server = _server(behaviour)
    try:
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            futures = [pool.submit(acme_client.connect, server.url, key, "", True) for _ in range(8)]
            for f in futures:
                with pytest.raises(RetryLater) as caught:
                    f.result(timeout=120)
                assert caught.value.message == transport.UNREACHABLE
        # Every call came back while the server was still dripping (it needs hours to finish).
        assert not server.finished
        assert server.cut_off.wait(30)      # and the connection was closed under it
    finally:
        server.stop()


def test_a_huge_body_is_cut_off_at_the_cap(key):
    server = _server(mb.huge_body)
    try:
        with pytest.raises(RetryLater) as caught:
            acme_client.connect(server.url, key, "", True)
        assert caught.value.message == transport.UNREACHABLE
        assert server.cut_off.wait(30)
        assert not server.finished
        assert server.bytes_sent < 20 * 1024 * 1024       # of 100 MB: the rest was never read
    finally:
        server.stop()


def test_a_garbage_200_is_not_success(key):
    server = _server(mb.garbage_200)
    try:
        with pytest.raises((RetryLater, AcmeFailed)):
            acme_client.connect(server.url, key, "", True)
    finally:
        server.stop()


def test_a_directory_without_endpoints_is_not_success(key):
    server = _server(lambda conn, s: (mb.read_request(conn), s.send(conn, mb.http_reply(
        "200 OK", b'{"newNonce": 5}', {"Content-Type": "application/json"}))))
    try:
        with pytest.raises((RetryLater, AcmeFailed)):
            acme_client.connect(server.url, key, "", True)
    finally:
        server.stop()


def test_redirects_are_limited(key):
    server = _server(mb.redirect_loop)
    try:
        with pytest.raises(RetryLater):
            acme_client.connect(server.url, key, "", True)
        assert server.requests <= transport.MAX_REDIRECTS + 1
    finally:
        server.stop()


def test_wire_failures_all_read_the_same(short_deadline):
    """Refused, silent, not HTTP, TLS to a plain port: the account API answers one text for all of them."""
    servers = [_server(mb.silent), _server(mb.not_http), _server(mb.garbage_200)]
    urls = [f"http://127.0.0.1:{mb.refused_port()}/directory", servers[0].url, servers[1].url,
            f"https://127.0.0.1:{servers[2].port}/directory"]
    try:
        c = Client(build_backend())
        texts = set()
        for i, url in enumerate(urls):
            st, body = run(c.write(f"config/acme-account/a{i}", {"directory_url": url,
                                                                   "email_contacts": "ops@example.com"}))
            assert st == 400, body
            texts.add(body["errors"][0])
        assert len(texts) == 1, texts
        assert str(servers[0].port) not in texts.pop()
    finally:
        for s in servers:
            s.stop()


def test_allowed_directory_hosts_refuses_other_hosts_before_connecting():
    server = _server(mb.directory_pointing_to("http://127.0.0.1:1"))
    try:
        c = Client(build_backend())
        st, body = run(c.write("config/network", {"allowed_directory_hosts": "acme.example.com,*.ca.example.net"}))
        assert st == 200 and body["data"]["allowed_directory_hosts"] == ["acme.example.com", "*.ca.example.net"]
        st, body = run(c.read("config/network"))
        assert body["data"]["allowed_directory_hosts"] == ["acme.example.com", "*.ca.example.net"]
        for path, data in (("config/acme-account/a", {"email_contacts": "ops@example.com"}),
                           ("config/acme-account/b/import", {"account_key": keys.to_pem(keys.generate("ec-256"))})):
            st, body = run(c.write(path, {"directory_url": server.url, **data}))
            assert st == 400 and "allowed_directory_hosts" in body["errors"][0], body
        assert server.requests == 0
        st, _ = run(c.write("config/network", {"allowed_directory_hosts": "http://x/"}))
        assert st == 400
    finally:
        server.stop()


def test_urls_the_directory_hands_out_are_held_to_the_policy_too(key):
    """An allowed directory cannot send the client on to an internal host."""
    inner = _server(mb.garbage_200)
    directory = _server(mb.directory_pointing_to(f"http://localhost:{inner.port}"))
    try:
        reach = Reach(True, HostPolicy((f"127.0.0.1:{directory.port}",)))
        with pytest.raises(AcmeFailed) as caught:
            acme_client.register(directory.url, key, ["ops@example.com"], "", "", reach)
        assert "allowed_directory_hosts" in caught.value.message
        assert directory.requests == 1 and inner.requests == 0
    finally:
        inner.stop()
        directory.stop()


def test_host_policy_matching():
    policy = HostPolicy(("acme.example.com", "*.ca.example.net", "10.0.0.5:14000"))
    assert policy.admits("https://acme.example.com/dir")
    assert policy.admits("https://ACME.example.com:8443/dir")
    assert policy.admits("https://x.ca.example.net/dir")
    assert not policy.admits("https://ca.example.net/dir")
    assert not policy.admits("https://evilacme.example.com/dir")
    assert policy.admits("https://10.0.0.5:14000/dir")
    assert not policy.admits("https://10.0.0.5:14001/dir")
    assert not policy.admits("file:///etc/passwd")
    assert HostPolicy().admits("https://anything.example/")


def test_debug_logging_does_not_copy_bodies(key, caplog):
    marker = "BodyMarker-7f3a"
    server = _server(mb.directory_pointing_to("http://127.0.0.1:1", marker=marker))
    try:
        with caplog.at_level(logging.DEBUG):
            logging.getLogger("acme").setLevel(logging.DEBUG)
            conn = acme_client.connect(server.url, key, "", True)
        assert conn.client.directory["newNonce"] == "http://127.0.0.1:1/nonce"
        assert marker not in caplog.text
    finally:
        server.stop()
