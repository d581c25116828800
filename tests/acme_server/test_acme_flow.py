"""The ACME server in-process: a whole order with a real http-01 responder, and the error cases' answers."""
from __future__ import annotations

import asyncio
import http.server
import threading
from typing import Iterator

import pytest
from cryptography import x509

from engine.acme.protocol import acme_state
from plugin.framework import Operation
from tests.acme_server.driver import BASE, AcmeMount, Client, csr_der

PROBLEM = "application/problem+json"


class Responder:
    """http-01 answers on a free loopback port (PYTHON_PKI_ACME_HTTP_PORT points validation here)."""

    def __init__(self) -> None:
        self.answers: dict[str, str] = {}
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                token = self.path.rsplit("/", 1)[-1]
                body = outer.answers.get(token)
                self.send_response(200 if body else 404)
                self.end_headers()
                if body:
                    self.wfile.write(body.encode())

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def responder(monkeypatch) -> Iterator[Responder]:
    r = Responder()
    monkeypatch.setenv("PYTHON_PKI_ACME_HTTP_PORT", str(r.port))
    yield r
    r.server.shutdown()


def run(coro):
    return asyncio.run(coro)


async def _issue(m: AcmeMount, c: Client, responder: Responder, names: list[str]) -> tuple[dict, Client]:
    assert (await c.register()).status == 201
    order = await c.order(*names)
    assert order.status == 201, order.body
    for authz_url in order.json()["authorizations"]:
        authz = (await c.post(c.sub_of(authz_url))).json()
        chal = next(ch for ch in authz["challenges"] if ch["type"] == "http-01")
        responder.answers[chal["token"]] = f"{chal['token']}.{_thumb(c)}"
        accepted = await c.post(c.sub_of(chal["url"]), {})
        assert accepted.status == 200, accepted.body
        assert accepted.json()["status"] == "processing"
        assert f'<{authz_url}>;rel="up"' in accepted.headers["Link"]
    await acme_state(m.backend.pki_context).validator.idle()  # type: ignore[attr-defined]
    order_url = order.header("Location")
    return (await c.post(c.sub_of(order_url))).json() | {"url": order_url}, c


def _thumb(c: Client) -> str:
    import base64
    return base64.urlsafe_b64encode(c.key.thumbprint()).decode().rstrip("=")


def test_directory_nonce_and_disabled():
    async def go():
        m = AcmeMount()
        assert (await m.raw(Operation.READ, "acme/directory")).status == 404
        await m.setup()
        d = await m.raw(Operation.READ, "roles/x/acme/directory")
        assert d.status == 400 and d.content_type == PROBLEM
        assert "role does not exist" in d.json()["detail"] and "subproblems" not in d.json()
        d = await m.raw(Operation.READ, "acme/directory")
        assert d.status == 200 and d.json()["newNonce"] == f"{BASE}/acme/new-nonce"
        assert d.json()["meta"] == {"externalAccountRequired": False}
        head = await m.raw(Operation.HEADER, "acme/new-nonce")
        get = await m.raw(Operation.READ, "acme/new-nonce")
        assert (head.status, get.status) == (200, 204)
        assert head.header("Cache-Control") == "no-store" and head.header("Replay-Nonce")
        assert head.header("Link") == f'<{BASE}/acme/directory>;rel="index"'
    run(go())


def test_whole_order_with_http01(responder):
    async def go():
        m = AcmeMount()
        await m.setup()
        order, c = await _issue(m, Client(m), responder, ["127.0.0.1", "localhost"])
        assert order["status"] == "ready", order
        fin = await c.post(c.sub_of(order["finalize"]), {"csr": csr_der(["localhost", "127.0.0.1"])})
        assert fin.status == 200, fin.body
        assert fin.json()["status"] == "valid" and fin.header("Location") == order["url"]
        chain = await c.post(c.sub_of(fin.json()["certificate"]))
        assert chain.content_type == "application/pem-certificate-chain"
        certs = x509.load_pem_x509_certificates(chain.body)
        assert len(certs) == 2 and certs[0].issuer == certs[1].subject
        san = certs[0].extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert set(san.get_values_for_type(x509.DNSName)) == {"localhost"}
        eku = certs[0].extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        assert list(eku) == [x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]
        # Revoke by the certificate's own key is refused for a key that is not the cert's; by account works.
        import base64
        from cryptography.hazmat.primitives.serialization import Encoding
        der = base64.urlsafe_b64encode(certs[0].public_bytes(Encoding.DER)).decode().rstrip("=")
        other = Client(m)
        refused = await other.post("revoke-cert", {"certificate": der}, use_jwk=True)
        assert refused.status == 400 and "proof of possession" in refused.json()["detail"]
        revoked = await c.post("revoke-cert", {"certificate": der})
        assert revoked.status == 200, revoked.body
        again = await c.post("revoke-cert", {"certificate": der})
        assert again.json()["type"].endswith(":alreadyRevoked")
    run(go())


def test_failed_validation_makes_the_order_invalid(responder, monkeypatch):
    from engine.acme import validation
    monkeypatch.setattr(validation, "BACKOFF", 0.01)

    async def go():
        m = AcmeMount()
        await m.setup()
        c = Client(m)
        await c.register()
        order = await c.order("127.0.0.1")
        authz_url = order.json()["authorizations"][0]
        chal = (await c.post(c.sub_of(authz_url))).json()["challenges"][0]
        responder.answers[chal["token"]] = "wrong"
        await c.post(c.sub_of(chal["url"]), {})
        await acme_state(m.backend.pki_context).validator.idle()
        authz = (await c.post(c.sub_of(authz_url))).json()
        assert authz["status"] == "invalid"
        assert authz["challenges"][0]["error"]["type"] == "urn:ietf:params:acme:error:incorrectResponse"
        got = (await c.post(c.sub_of(order.header("Location")))).json()
        assert got["status"] == "invalid"
        fin = await c.post(c.sub_of(got["finalize"]), {"csr": csr_der(["127.0.0.1"])})
        assert fin.status == 403 and fin.json()["type"].endswith(":orderNotReady")
    run(go())


def test_jws_errors():
    async def go():
        m = AcmeMount()
        await m.setup()
        c = Client(m)
        bad_nonce = await c.post("new-account", {}, use_jwk=True, nonce="bWFkZS11cA")
        assert bad_nonce.status == 400 and bad_nonce.json()["type"].endswith(":badNonce")
        assert bad_nonce.header("Replay-Nonce")
        wrong_url = await c.post("new-account", {}, use_jwk=True, url=f"{BASE}/acme/elsewhere")
        assert wrong_url.status == 401 and wrong_url.json()["type"].endswith(":unauthorized")
        no_kid = await c.post("new-order", {"identifiers": [{"type": "dns", "value": "a.example"}]}, use_jwk=True)
        assert no_kid.status == 400 and "without a 'kid'" in no_kid.json()["detail"]
        created = await c.register()
        assert created.status == 201 and created.header("Location").startswith(f"{BASE}/acme/account/")
        again = await c.register()
        assert again.status == 200 and again.header("Location") == created.header("Location")
        # Accounts do not cross directories.
        other_dir = Client(m, "roles/none/acme/", key=c.key)
        other_dir.kid = c.kid
        crossed = await other_dir.post("new-order", {"identifiers": []})
        assert crossed.status in (400, 500)
        dates = await c.post("new-order", {"identifiers": [{"type": "dns", "value": "a.example"}],
                                           "notAfter": "2030-01-01T00:00:00Z"})
        assert "NotBefore and NotAfter are not supported" in dates.json()["detail"]
        wildcard = await c.order("*.a.example")
        authz = (await c.post(c.sub_of(wildcard.json()["authorizations"][0]))).json()
        assert [ch["type"] for ch in authz["challenges"]] == ["dns-01"] and authz["wildcard"] is True
        assert authz["identifier"] == {"type": "dns", "value": "a.example"}
        ca_csr = await c.post(c.sub_of(wildcard.json()["finalize"]), {"csr": csr_der(["*.a.example"], ca=True)})
        assert ca_csr.json()["type"].endswith(":badCSR") and "CA set to true" in ca_csr.json()["detail"]
        deact = await c.post(c.sub_of(created.header("Location")), {"status": "deactivated"})
        assert deact.json()["status"] == "deactivated"
        gone = await c.order("b.example")
        assert gone.status == 401
    run(go())


def _alpn_server(cert_pem: bytes, key_pem: bytes) -> tuple[int, object]:
    import os
    import socket
    import ssl
    import tempfile
    directory = tempfile.mkdtemp()
    cert_path, key_path = os.path.join(directory, "c.pem"), os.path.join(directory, "k.pem")
    open(cert_path, "wb").write(cert_pem)
    open(key_path, "wb").write(key_pem)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert_path, key_path)
    ctx.set_alpn_protocols(["acme-tls/1"])
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                continue
            try:
                with ctx.wrap_socket(conn, server_side=True) as tls:
                    tls.recv(1)
            except (OSError, ssl.SSLError):
                pass
        listener.close()

    threading.Thread(target=serve, daemon=True).start()
    return listener.getsockname()[1], stop


def test_tls_alpn01_with_the_acme_identifier_extension(monkeypatch):
    import datetime as dt
    import hashlib

    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec as ec_mod

    async def go():
        m = AcmeMount()
        await m.setup()
        c = Client(m)
        await c.register()
        order = await c.order("localhost")
        authz = (await c.post(c.sub_of(order.json()["authorizations"][0]))).json()
        chal = next(ch for ch in authz["challenges"] if ch["type"] == "tls-alpn-01")
        digest = hashlib.sha256(f"{chal['token']}.{_thumb(c)}".encode()).digest()
        key = ec_mod.generate_private_key(ec_mod.SECP256R1())
        name = x509.Name([])
        now = dt.datetime.now(dt.timezone.utc)
        cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                .serial_number(1).not_valid_before(now).not_valid_after(now + dt.timedelta(hours=1))
                .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
                .add_extension(x509.UnrecognizedExtension(x509.ObjectIdentifier("1.3.6.1.5.5.7.1.31"),
                                                          b"\x04\x20" + digest), critical=True)
                .sign(key, hashes.SHA256()))
        port, stop = _alpn_server(cert.public_bytes(serialization.Encoding.PEM), key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
        monkeypatch.setenv("PYTHON_PKI_ACME_TLS_PORT", str(port))
        try:
            await c.post(c.sub_of(chal["url"]), {})
            await acme_state(m.backend.pki_context).validator.idle()
        finally:
            stop.set()
        got = (await c.post(c.sub_of(order.json()["authorizations"][0]))).json()
        assert got["status"] == "valid", got
        assert got["expires"] and [ch["status"] for ch in got["challenges"] if ch["type"] == "tls-alpn-01"] \
            == ["valid"]
    run(go())


def test_refused_connection_fails_the_challenge_after_the_retries(monkeypatch):
    import socket

    from engine.acme import validation
    monkeypatch.setattr(validation, "BACKOFF", 0.01)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    monkeypatch.setenv("PYTHON_PKI_ACME_HTTP_PORT", str(closed))

    async def go():
        m = AcmeMount()
        await m.setup()
        c = Client(m)
        await c.register()
        order = await c.order("127.0.0.1")
        authz_url = order.json()["authorizations"][0]
        chal = (await c.post(c.sub_of(authz_url))).json()["challenges"][0]
        await c.post(c.sub_of(chal["url"]), {})
        await acme_state(m.backend.pki_context).validator.idle()
        authz = (await c.post(c.sub_of(authz_url))).json()
        assert authz["status"] == "invalid"
        assert authz["challenges"][0]["error"]["type"] == "urn:ietf:params:acme:error:connection"
    run(go())


def test_refused_connection_is_a_problem_in_a_fresh_process():
    """As in the plugin process, where nothing imported requests before the validator's lazy import."""
    import socket
    import subprocess
    import sys
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    code = ("import os; os.environ['PYTHON_PKI_ACME_HTTP_PORT'] = '%d'\n"
            "from engine.acme import challenges\nfrom engine.acme.errors import AcmeProblem\n"
            "from engine.acme.records import Identifier\n"
            "try:\n    challenges._http01(Identifier('ip', '127.0.0.1', '127.0.0.1'), 't', 't.x', '')\n"
            "except AcmeProblem as exc:\n    print(exc.name)\n") % closed
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "connection", out.stderr[-2000:]
