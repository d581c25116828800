"""CRLs: numbering, extensions, verification with openssl, pkilint, chunked storage, config/crl, periodic work."""
from __future__ import annotations

import asyncio
import time
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from engine import crl as crlmod
from engine.revocation_index import BUCKET_PREFIX
from revocation_helpers import BIN, AsyncMount, crl_of, pem_cert, run_tool


def run(coro):  # noqa: ANN001, ANN201
    return asyncio.run(coro)


def number(crl: x509.CertificateRevocationList) -> int:
    return crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number


def test_numbers_follow_the_builtin_sequence_and_delta_points_at_complete() -> None:
    async def go() -> None:
        m = AsyncMount()
        await m.setup_ca()
        assert number(crl_of(await m.read("crl"))) == 1
        assert number(crl_of(await m.read("crl/delta"))) == 2
        await m.ok("revoke", serial_number=(await m.issue())["serial_number"])
        full, delta = crl_of(await m.read("crl")), crl_of(await m.read("crl/delta"))
        assert (number(full), number(delta)) == (3, 4)
        indicator = delta.extensions.get_extension_for_class(x509.DeltaCRLIndicator)
        assert indicator.critical and indicator.value.crl_number == 3
        assert (await m.read("crl/rotate")).data == {"success": True}
        assert number(crl_of(await m.read("crl"))) == 5
    run(go())


def test_crl_content_aki_signature_and_pem_forms() -> None:
    async def go() -> None:
        m = AsyncMount()
        root = await m.setup_ca()
        cert = await m.issue()
        await m.ok("revoke", serial_number=cert["serial_number"])
        crl = crl_of(await m.read("crl"))
        ca = pem_cert(root["certificate"])
        assert crl.is_signature_valid(ca.public_key())
        aki = crl.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value.key_identifier
        assert aki == ca.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
        entry = crl.get_revoked_certificate_by_serial_number(pem_cert(cert["certificate"]).serial_number)
        assert entry is not None and not list(entry.extensions)
        assert (crl.next_update_utc - crl.last_update_utc).total_seconds() == 72 * 3600
        pem = await m.read("crl/pem")
        assert pem.data["http_content_type"] == "application/x-pem-file"
        assert x509.load_pem_x509_crl(pem.body).public_bytes(serialization.Encoding.DER) == crl.public_bytes(
            serialization.Encoding.DER)
        assert (await m.read("crl")).data["http_content_type"] == "application/pkix-crl"
        assert (await m.read("cert/crl")).data["certificate"].startswith("-----BEGIN X509 CRL-----")
        for suffix in ("", "/pem", "/der", "/delta", "/delta/pem", "/delta/der"):
            assert (await m.read(f"issuer/default/crl{suffix}")).status == 200
        assert (await m.read("issuer/default/crl")).data["crl"].endswith("-----END X509 CRL-----\n")
    run(go())


def test_no_issuer_means_empty_204() -> None:
    async def go() -> None:
        m = AsyncMount()
        assert (await m.read("crl")).status == 204
        assert (await m.read("crl/delta/pem")).status == 204
    run(go())


def test_openssl_verify_crl_check_good_then_revoked(tmp_path: Path) -> None:
    async def go() -> None:
        m = AsyncMount()
        root = await m.setup_ca()
        good, bad = await m.issue("good.example.com"), await m.issue("bad.example.com")
        await m.ok("revoke", serial_number=bad["serial_number"])
        (tmp_path / "ca.pem").write_text(root["certificate"])
        (tmp_path / "crl.pem").write_bytes((await m.read("crl/pem")).body)
        (tmp_path / "good.pem").write_text(good["certificate"])
        (tmp_path / "bad.pem").write_text(bad["certificate"])
        (tmp_path / "crl.der").write_bytes((await m.read("crl")).body)
    run(go())
    ok = run_tool("openssl", "verify", "-crl_check", "-CAfile", str(tmp_path / "ca.pem"), "-CRLfile",
                  str(tmp_path / "crl.pem"), str(tmp_path / "good.pem"))
    assert ok.returncode == 0, ok.stdout + ok.stderr
    revoked = run_tool("openssl", "verify", "-crl_check", "-CAfile", str(tmp_path / "ca.pem"), "-CRLfile",
                       str(tmp_path / "crl.pem"), str(tmp_path / "bad.pem"))
    assert revoked.returncode != 0 and "certificate revoked" in revoked.stdout + revoked.stderr
    lint = run_tool(str(BIN / "lint_crl"), "lint", "-t", "CRL", "-p", "PKIX", "-s", "ERROR", str(tmp_path / "crl.der"))
    assert lint.returncode == 0 and not lint.stdout.strip(), lint.stdout


def test_hundred_thousand_entries_are_chunked_in_storage_and_all_listed() -> None:
    async def go() -> None:
        m = AsyncMount()
        await m.setup_ca()
        rt = crlmod.runtime(m.backend.pki_context)  # type: ignore[attr-defined]
        await rt.ensure_index(m.storage)
        issuer_id = (await m.backend.pki_context.issuers(m.storage).all())[0].id  # type: ignore[attr-defined]
        now = int(time.time())
        for i in range(100_000):
            rt.pending.entries[(i + 1) * 7919 + 2 ** 100] = (now, issuer_id)
        t0 = time.perf_counter()
        await crlmod.request_rebuild(m.storage, m.backend.pki_context)  # type: ignore[attr-defined]
        elapsed = time.perf_counter() - t0
        crl = crl_of(await m.read("crl"))
        assert len(crl) == 100_000
        biggest = max(len(e.value) for k, e in m.storage.entries.items() if k.startswith("crls/"))
        assert biggest < 512 * 1024
        assert sum(1 for k in m.storage.entries if k.startswith(BUCKET_PREFIX)) >= 25
        print(f"100k-entry CRL build: {elapsed:.2f} s")
    run(go())


def test_config_crl_defaults_validation_and_partial_update() -> None:
    async def go() -> None:
        m = AsyncMount()
        defaults = (await m.read("config/crl")).data
        assert defaults == {"expiry": "72h", "disable": False, "ocsp_disable": False, "ocsp_expiry": "12h",
                            "auto_rebuild": False, "auto_rebuild_grace_period": "12h", "enable_delta": False,
                            "delta_rebuild_interval": "15m", "allow_expired_cert_revocation": False}
        before = m.storage.snapshot()
        for bad, text in [({"enable_delta": True}, "Delta CRLs cannot be enabled"),
                          ({"expiry": "bogus"}, "given expiry could not be decoded"),
                          ({"auto_rebuild": True, "expiry": "1h", "auto_rebuild_grace_period": "2h"},
                           "must be strictly shorter")]:
            reply = await m.write("config/crl", **bad)
            assert reply.status == 400 and text in reply.error
        assert m.storage.snapshot() == before
        await m.ok("config/crl", auto_rebuild=True, enable_delta=True)
        after = (await m.ok("config/crl", expiry="48h"))
        assert after["auto_rebuild"] and after["enable_delta"] and after["expiry"] == "48h"
    run(go())


def test_disable_writes_empty_crls() -> None:
    async def go() -> None:
        m = AsyncMount()
        await m.setup_ca()
        await m.ok("revoke", serial_number=(await m.issue())["serial_number"])
        await m.ok("config/crl", disable=True)
        assert len(crl_of(await m.read("crl"))) == 0
    run(go())


def test_auto_rebuild_defers_and_delta_carries_new_revocations() -> None:
    async def go() -> None:
        m = AsyncMount()
        await m.setup_ca()
        await m.ok("config/crl", auto_rebuild=True, enable_delta=True, delta_rebuild_interval="1s")
        cert = await m.issue()
        await m.ok("revoke", serial_number=cert["serial_number"])
        serial = pem_cert(cert["certificate"]).serial_number
        assert crl_of(await m.read("crl")).get_revoked_certificate_by_serial_number(serial) is None
        assert any(k.startswith("delta-wal/") for k in m.storage.entries)
        await asyncio.sleep(1.1)
        await m.periodic()
        delta = crl_of(await m.read("crl/delta"))
        assert delta.get_revoked_certificate_by_serial_number(serial) is not None
        await m.read("crl/rotate")
        assert crl_of(await m.read("crl")).get_revoked_certificate_by_serial_number(serial) is not None
        assert not any(k.startswith("delta-wal/") for k in m.storage.entries)
    run(go())


def test_a_fresh_process_finds_records_the_crl_never_saw() -> None:
    """Crash safety at the unit level: a record written, then the process dies before any CRL build."""
    async def go() -> None:
        m = AsyncMount()
        await m.setup_ca()
        await m.ok("config/crl", auto_rebuild=True)
        serials = [(await m.issue(f"h{i}.example.com"))["serial_number"] for i in range(5)]
        for s in serials:
            await m.ok("revoke", serial_number=s)
        restarted = AsyncMount(storage=m.storage)         # new backend, same storage: plugin restarted
        assert (await restarted.read("crl/rotate")).status == 200
        crl = crl_of(await restarted.read("crl"))
        assert {r.serial_number for r in crl} == {int(s.replace(":", ""), 16) for s in serials}
    run(go())
