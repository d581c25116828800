"""HashiCorp Vault (the `hashicorp/vault` image; skipped without a Docker engine): what only Vault does.

Vault hands a plugin the raw body of a POST on a path the plugin declares `binary` (pb.Paths field 6), which
OpenBao never does; our `ocsp` and `ocsp/*` are declared so, and answer RFC 6960 POSTs there.
"""
from __future__ import annotations

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp

from integration.harness import unique_name


def _ocsp_post(vault, mount: str, cert: x509.Certificate, issuer: x509.Certificate) -> ocsp.OCSPResponse:
    request = ocsp.OCSPRequestBuilder().add_certificate(cert, issuer, hashes.SHA1()).build()
    resp = vault.http("POST", f"{mount}/ocsp", data=request.public_bytes(serialization.Encoding.DER),
                      headers={"Content-Type": "application/ocsp-request"}, token=False)
    assert resp.status_code == 200, resp.text
    assert resp.headers["Content-Type"] == "application/ocsp-response"
    return ocsp.load_der_ocsp_response(resp.content)


def test_ocsp_post_body_reaches_the_plugin(vault_docker) -> None:
    mount = vault_docker.enable_plugin_mount(unique_name("pki"))
    root = vault_docker.http("POST", f"{mount}/root/generate/internal",
                             json={"common_name": "root.example.com", "key_type": "ec"}).json()["data"]
    vault_docker.http("POST", f"{mount}/roles/web", json={"allow_any_name": True, "key_type": "ec"})
    leaf = vault_docker.http("POST", f"{mount}/issue/web", json={"common_name": "a.example.com"}).json()["data"]
    issuer = x509.load_pem_x509_certificate(root["certificate"].encode())
    cert = x509.load_pem_x509_certificate(leaf["certificate"].encode())
    answer = _ocsp_post(vault_docker, mount, cert, issuer)
    assert answer.response_status == ocsp.OCSPResponseStatus.SUCCESSFUL
    assert answer.certificate_status == ocsp.OCSPCertStatus.GOOD
    vault_docker.http("POST", f"{mount}/revoke", json={"serial_number": leaf["serial_number"]})
    answer = _ocsp_post(vault_docker, mount, cert, issuer)
    assert answer.certificate_status == ocsp.OCSPCertStatus.REVOKED
