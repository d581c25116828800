"""OCSP: good / revoked / unknown, nonce, malformed input, unauthorized, openssl and pkilint on the responses."""
from __future__ import annotations

import asyncio
import base64
from pathlib import Path
from urllib.parse import quote

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509 import ocsp

from revocation_helpers import BIN, AsyncMount, foreign_ca_leaf, pem_cert, run_tool


def run(coro):  # noqa: ANN001, ANN201
    return asyncio.run(coro)


def request_der(leaf: x509.Certificate, issuer: x509.Certificate, nonce: bytes | None = None,
                alg: hashes.HashAlgorithm = hashes.SHA1()) -> bytes:
    b = ocsp.OCSPRequestBuilder().add_certificate(leaf, issuer, alg)
    if nonce:
        b = b.add_extension(x509.OCSPNonce(nonce), critical=False)
    return b.build().public_bytes(Encoding.DER)


async def ask(m: AsyncMount, der: bytes) -> tuple[int, bytes]:
    reply = await m.read("ocsp/" + quote(base64.b64encode(der).decode(), safe=""))
    assert reply.data["http_content_type"] == "application/ocsp-response"
    return reply.status, reply.body


def test_good_then_revoked_with_time_and_signature(tmp_path: Path) -> None:
    async def go() -> None:
        m = AsyncMount()
        root = await m.setup_ca()
        cert = await m.issue()
        leaf, ca = pem_cert(cert["certificate"]), pem_cert(root["certificate"])
        status, body = await ask(m, request_der(leaf, ca))
        good = ocsp.load_der_ocsp_response(body)
        assert status == 200 and good.certificate_status == ocsp.OCSPCertStatus.GOOD
        assert good.responder_name == ca.subject and not list(good.extensions)
        (tmp_path / "good.der").write_bytes(body)
        revoked_at = (await m.ok("revoke", serial_number=cert["serial_number"]))["revocation_time"]
        sha256 = ocsp.load_der_ocsp_response((await ask(m, request_der(leaf, ca, alg=hashes.SHA256())))[1])
        assert sha256.certificate_status == ocsp.OCSPCertStatus.REVOKED
        status, body = await ask(m, request_der(leaf, ca))
        rev = ocsp.load_der_ocsp_response(body)
        assert rev.certificate_status == ocsp.OCSPCertStatus.REVOKED
        assert int(rev.revocation_time_utc.timestamp()) == revoked_at
        assert rev.revocation_reason is None
        (tmp_path / "revoked.der").write_bytes(body)
        (tmp_path / "ca.pem").write_text(root["certificate"])
        (tmp_path / "leaf.pem").write_text(cert["certificate"])
        (tmp_path / "req.der").write_bytes(request_der(leaf, ca))
    run(go())
    for name in ("good.der", "revoked.der"):
        lint = run_tool(str(BIN / "lint_ocsp_response"), "lint", "-s", "ERROR", str(tmp_path / name))
        assert lint.returncode == 0 and not lint.stdout.strip(), lint.stdout
    out = run_tool("openssl", "ocsp", "-respin", str(tmp_path / "revoked.der"), "-issuer", str(tmp_path / "ca.pem"),
                   "-cert", str(tmp_path / "leaf.pem"), "-CAfile", str(tmp_path / "ca.pem"))
    assert "Response verify OK" in out.stderr + out.stdout and ": revoked" in out.stdout, out.stdout + out.stderr


def test_nonce_is_echoed_and_not_cached() -> None:
    async def go() -> None:
        m = AsyncMount()
        root = await m.setup_ca()
        leaf, ca = pem_cert((await m.issue())["certificate"]), pem_cert(root["certificate"])
        for nonce in (b"first-nonce-1234", b"second-nonce-567"):
            _, body = await ask(m, request_der(leaf, ca, nonce=nonce))
            assert ocsp.load_der_ocsp_response(body).extensions.get_extension_for_class(
                x509.OCSPNonce).value.nonce == nonce
    run(go())


def test_cached_response_changes_after_revocation() -> None:
    async def go() -> None:
        m = AsyncMount()
        root = await m.setup_ca()
        cert = await m.issue()
        der = request_der(pem_cert(cert["certificate"]), pem_cert(root["certificate"]))
        first, second = (await ask(m, der))[1], (await ask(m, der))[1]
        assert first == second   # served from the cache
        await m.ok("revoke", serial_number=cert["serial_number"])
        assert ocsp.load_der_ocsp_response((await ask(m, der))[1]).certificate_status == \
            ocsp.OCSPCertStatus.REVOKED
    run(go())


def test_unknown_issuer_is_unknown_signed_by_default() -> None:
    async def go() -> None:
        m = AsyncMount()
        await m.setup_ca()
        foreign = pem_cert(foreign_ca_leaf())
        status, body = await ask(m, request_der(foreign, foreign))   # issuer hashes match nothing here
        resp = ocsp.load_der_ocsp_response(body)
        assert status == 200 and resp.certificate_status == ocsp.OCSPCertStatus.UNKNOWN
    run(go())


def test_garbage_is_malformed_and_writes_nothing() -> None:
    async def go() -> None:
        m = AsyncMount()
        await m.setup_ca()
        before = m.storage.snapshot()
        for path in ("ocsp/AAAA", "ocsp/" + "A" * 3000, "ocsp/%%%"):
            reply = await m.read(path)
            assert reply.status == 400 and reply.body == bytes.fromhex("3003 0a01 01")
        assert (await m.write("ocsp")).status == 400
        assert m.storage.snapshot() == before
    run(go())


def test_ocsp_disable_answers_unauthorized() -> None:
    async def go() -> None:
        m = AsyncMount()
        root = await m.setup_ca()
        await m.ok("config/crl", ocsp_disable=True)
        status, body = await ask(m, request_der(pem_cert((await m.issue())["certificate"]),
                                                pem_cert(root["certificate"])))
        assert status == 401 and body == bytes.fromhex("3003 0a01 06")
    run(go())
