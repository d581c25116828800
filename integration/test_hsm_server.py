"""CA keys in a SoftHSM token, with our plugin run by a real OpenBao server.

The server gets its own SoftHSM (SOFTHSM2_CONF in its environment, which the plugin inherits). A root in one
mount and an intermediate in a second mount both keep their keys in the token; leaves, the CRL and OCSP answers
are signed through it. Then the token is re-initialised behind the server's back and restored.
"""
from __future__ import annotations

import base64
import subprocess
import sys
import urllib.parse
from pathlib import Path
from typing import Any, Iterator

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp

from integration.harness import BaoServer, unique_name
from tests.hsm_fixtures import SoftHsm, softhsm  # noqa: F401  (fixture)

pytestmark = pytest.mark.hsm
PIN = "hsm-pin-5e7c"
BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def hsm_bao(softhsm: SoftHsm, tmp_path_factory: pytest.TempPathFactory) -> Iterator[BaoServer]:  # noqa: F811
    # The `softhsm` fixture has put SOFTHSM2_CONF in os.environ: the server, and so the plugin, inherit it.
    server = BaoServer(tmp_path_factory.mktemp("bao-hsm"))
    try:
        server.start()
        server.register()
        yield server
    finally:
        server.stop()


def _write(bao: BaoServer, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    resp = bao.http("POST", path, json=body or {})
    assert resp.status_code in (200, 204), f"{path}: {resp.status_code} {resp.text}"
    return resp.json().get("data", {}) if resp.status_code == 200 else {}


def _mount(bao: BaoServer) -> str:
    path = bao.enable_plugin_mount(unique_name("hsm"))
    bao.tune_max_ttl(path, "87600h")
    return path


def _managed_key(bao: BaoServer, hsm: SoftHsm, mount: str, name: str, token: str, label: str,
                 kind: str) -> None:
    body: dict[str, Any] = {"library": hsm.library, "token_label": token, "pin": PIN, "key_label": label,
                            "allow_generate_key": True}
    body.update({"mechanism": "0x1041", "curve": "P256"} if kind == "ec" else {"mechanism": "0x0001",
                                                                                 "key_bits": 2048})
    _write(bao, f"{mount}/managed-keys/{name}", body)


def _run(*args: str) -> str:
    out = subprocess.run(list(args), capture_output=True, text=True)
    assert out.returncode == 0, f"{' '.join(args)}:\n{out.stdout}{out.stderr}"
    return out.stdout + out.stderr


def _lint(tmp: Path, tool: str, data: bytes, *extra: str) -> None:
    path = tmp / f"{tool}-{len(list(tmp.iterdir()))}.der"
    path.write_bytes(data)
    out = _run(str(BIN / tool), "lint", *extra, "-s", "ERROR", str(path))
    assert not out.strip(), out


def test_hsm_hierarchy_through_the_server(hsm_bao: BaoServer, softhsm: SoftHsm, tmp_path: Path) -> None:  # noqa: F811
    bao = hsm_bao
    token = softhsm.new_token(pin=PIN)
    root_mount, int_mount = _mount(bao), _mount(bao)
    _managed_key(bao, softhsm, root_mount, "root-key", token, "root", "rsa")
    _managed_key(bao, softhsm, int_mount, "int-key", token, "int", "ec")
    read = bao.http("GET", f"{root_mount}/managed-keys/root-key").json()["data"]
    assert "pin" not in read and PIN not in str(read)

    root = _write(bao, f"{root_mount}/root/generate/kms", {"common_name": "HSM Root", "managed_key_name": "root-key",
                                                           "ttl": "87600h"})
    assert "private_key" not in root
    csr = _write(bao, f"{int_mount}/intermediate/generate/kms", {"common_name": "HSM Intermediate",
                                                                 "managed_key_name": "int-key"})
    signed = _write(bao, f"{root_mount}/root/sign-intermediate", {"csr": csr["csr"], "ttl": "43800h",
                                                                  "common_name": "HSM Intermediate"})
    _write(bao, f"{int_mount}/intermediate/set-signed", {"certificate": signed["certificate"]})
    _write(bao, f"{int_mount}/config/urls", {"ocsp_servers": f"{bao.addr}/v1/{int_mount}/ocsp",
                                             "crl_distribution_points": f"{bao.addr}/v1/{int_mount}/crl"})
    _write(bao, f"{int_mount}/roles/web", {"allowed_domains": "example.com", "allow_subdomains": True,
                                           "key_type": "ec", "key_bits": 256, "max_ttl": "72h"})
    leaf = _write(bao, f"{int_mount}/issue/web", {"common_name": "www.example.com", "ttl": "24h"})

    root_pem, int_pem, leaf_pem = tmp_path / "root.pem", tmp_path / "int.pem", tmp_path / "leaf.pem"
    root_pem.write_text(root["certificate"])
    int_pem.write_text(signed["certificate"])
    leaf_pem.write_text(leaf["certificate"])
    _run("openssl", "verify", "-CAfile", str(root_pem), "-untrusted", str(int_pem), str(leaf_pem))
    lint_dir = tmp_path / "lint"
    lint_dir.mkdir()
    for pem in (root["certificate"], signed["certificate"], leaf["certificate"]):
        _lint(lint_dir, "lint_pkix_cert", x509.load_pem_x509_certificate(pem.encode()).public_bytes(
            serialization.Encoding.DER))

    # Token re-initialised behind the server's back: a clear error naming the managed key, then recovery.
    backup = softhsm.backup(token)
    softhsm.reinit_token(token, pin=PIN)
    failed = bao.http("POST", f"{int_mount}/issue/web", json={"common_name": "b.example.com"})
    assert failed.status_code == 400, failed.text
    assert failed.json()["errors"] == ['managed key "int-key": no private key with label "int" in the token']
    softhsm.restore(token, backup)
    again = _write(bao, f"{int_mount}/issue/web", {"common_name": "c.example.com"})
    assert again["certificate"]

    log = bao.log_path.read_text(errors="replace")
    assert PIN not in log and "PRIVATE KEY" not in log

    # Revoke the leaf: the CRL and an OCSP answer are signed through the token.
    if bao.http("POST", f"{int_mount}/revoke", json={"serial_number": leaf["serial_number"]}).status_code == 404:
        pytest.skip("revoke/CRL/OCSP paths are not routed in this build yet")
    crl_resp = bao.http("GET", f"{int_mount}/crl", token=False)
    assert crl_resp.status_code == 200, crl_resp.text
    crl_pem = tmp_path / "crl.pem"
    crl = x509.load_der_x509_crl(crl_resp.content)
    crl_pem.write_bytes(crl.public_bytes(serialization.Encoding.PEM))
    assert "verify OK" in _run("openssl", "crl", "-in", str(crl_pem), "-CAfile", str(int_pem), "-noout")
    assert crl.get_revoked_certificate_by_serial_number(
        x509.load_pem_x509_certificate(leaf["certificate"].encode()).serial_number) is not None
    _lint(lint_dir, "lint_crl", crl_resp.content, "-t", "CRL", "-p", "PKIX")

    leaf_cert = x509.load_pem_x509_certificate(leaf["certificate"].encode())
    int_cert = x509.load_pem_x509_certificate(signed["certificate"].encode())
    req = ocsp.OCSPRequestBuilder().add_certificate(leaf_cert, int_cert, hashes.SHA1()).build()
    b64 = base64.b64encode(req.public_bytes(serialization.Encoding.DER)).decode()
    ocsp_resp = bao.http("GET", f"{int_mount}/ocsp/{urllib.parse.quote(b64, safe='')}", token=False)
    assert ocsp_resp.status_code == 200, ocsp_resp.text
    resp_der = tmp_path / "ocsp.der"
    resp_der.write_bytes(ocsp_resp.content)
    text = _run("openssl", "ocsp", "-respin", str(resp_der), "-CAfile", str(root_pem), "-VAfile", str(int_pem),
                "-issuer", str(int_pem), "-cert", str(leaf_pem), "-no_nonce")
    assert "Response verify OK" in text and ": revoked" in text, text
    _lint(lint_dir, "lint_ocsp_response", ocsp_resp.content)



def _listed(bao: BaoServer, path: str) -> list[str]:
    resp = bao.http("LIST", path)
    return sorted(resp.json()["data"]["keys"]) if resp.status_code == 200 else []


def test_key_read_and_local_types_refusing_managed_keys(hsm_bao: BaoServer, softhsm: SoftHsm) -> None:  # noqa: F811
    bao = hsm_bao
    token = softhsm.new_token(pin=PIN)
    mount = _mount(bao)
    _managed_key(bao, softhsm, mount, "mk", token, "mk", "ec")
    uuid = bao.http("GET", f"{mount}/managed-keys/mk").json()["data"]["uuid"]

    # What Terraform's vault_pki_secret_backend_key reads back.
    key = _write(bao, f"{mount}/keys/generate/kms", {"managed_key_name": "mk", "key_name": "tf-key"})
    read = bao.http("GET", f"{mount}/key/{key['key_id']}").json()["data"]
    assert (read["key_name"], read["key_type"]) == ("tf-key", "ec")
    assert (read["managed_key_name"], read["managed_key_id"]) == ("mk", uuid)
    local = _write(bao, f"{mount}/keys/generate/internal", {"key_type": "ec"})
    plain = bao.http("GET", f"{mount}/key/{local['key_id']}").json()["data"]
    assert "managed_key_name" not in plain and "managed_key_id" not in plain

    keys_before, issuers_before = _listed(bao, f"{mount}/keys"), _listed(bao, f"{mount}/issuers")
    for path, body in [
        ("root/generate/exported", {"managed_key_name": "mk"}),
        ("root/generate/internal", {"managed_key_id": uuid}),
        ("intermediate/generate/exported", {"managed_key_name": "mk"}),
        ("keys/generate/exported", {"managed_key_name": "mk"}),
        ("keys/generate/internal", {"managed_key_id": uuid}),
        ("root/generate/existing", {"managed_key_name": "mk", "key_ref": key["key_id"]}),
    ]:
        resp = bao.http("POST", f"{mount}/{path}", json={"common_name": "x", "key_type": "ec", **body})
        assert resp.status_code == 400, f"{path}: {resp.status_code} {resp.text}"
        arg = next(a for a in ("managed_key_name", "managed_key_id") if a in body)
        assert f'cannot specify "{arg}"' in resp.json()["errors"][0], resp.text
        assert "private_key" not in resp.text
    assert _listed(bao, f"{mount}/keys") == keys_before
    assert _listed(bao, f"{mount}/issuers") == issuers_before


@pytest.mark.parametrize("how", ["slot", "label"])
def test_second_mount_with_a_wrong_pin_cannot_use_the_first_mounts_login(hsm_bao: BaoServer, softhsm: SoftHsm,  # noqa: F811
                                                                          how: str) -> None:
    """Mount B names A's token (by slot, or by label) with a wrong PIN while A is logged in: refused, no CA."""
    bao = hsm_bao
    token = softhsm.new_token(pin=PIN)
    a, b = _mount(bao), _mount(bao)
    _managed_key(bao, softhsm, a, "ka", token, "a-key", "ec")
    _write(bao, f"{a}/root/generate/kms", {"common_name": "a root", "managed_key_name": "ka", "ttl": "24h"})

    where: dict[str, Any] = ({"slot": str(softhsm.slot_of(token))} if how == "slot" else {"token_label": token})
    resp = bao.http("POST", f"{b}/managed-keys/kb", json={"library": softhsm.library, "pin": "not-the-pin",
                                                          "key_label": "a-key", "mechanism": "0x1041",
                                                          "curve": "P256", **where})
    assert 400 <= resp.status_code < 500 and "PIN" in resp.text, resp.text
    resp = bao.http("POST", f"{b}/root/generate/kms", json={"common_name": "stolen", "managed_key_name": "kb"})
    assert 400 <= resp.status_code < 500, resp.text
    assert _listed(bao, f"{b}/issuers") == [] and _listed(bao, f"{b}/keys") == []
    # A keeps working.
    _write(bao, f"{a}/root/generate/kms", {"common_name": "a root 2", "managed_key_name": "ka", "ttl": "24h",
                                           "issuer_name": "second"})
