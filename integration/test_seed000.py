"""Seed 000 (the production guide), steps 1-4 and its issuance examples, run as the guide writes them with `bao`
for `vault` and our plugin for `pki`, on uniquely named mounts of the shared server; chains checked with openssl."""
from __future__ import annotations

import json
import shlex
import subprocess
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID

from integration.harness import BaoServer, unique_name
from integration.lint import lint_findings

# Steps 1-4 of the guide, as printed there (only `vault` -> `bao` and the engine type are changed, below).
GUIDE = r'''
# Enable the PKI engine for the root CA
vault secrets enable -path=pki pki

# Set maximum TTL for root CA (10 years)
vault secrets tune -max-lease-ttl=87600h pki

# Generate the root certificate
vault write pki/root/generate/internal \
  common_name="My Organization Root CA" \
  issuer_name="root-2026" \
  ttl=87600h \
  key_type=rsa \
  key_bits=4096

# Configure CA and CRL URLs
vault write pki/config/urls \
  issuing_certificates="https://vault.example.com:8200/v1/pki/ca" \
  crl_distribution_points="https://vault.example.com:8200/v1/pki/crl"

# Enable a separate PKI engine for the intermediate CA
vault secrets enable -path=pki_int pki

# Set maximum TTL (5 years)
vault secrets tune -max-lease-ttl=43800h pki_int

# Generate intermediate CSR
vault write -format=json pki_int/intermediate/generate/internal \
  common_name="My Organization Intermediate CA" \
  issuer_name="intermediate-2026" \
  key_type=rsa \
  key_bits=4096 \
  | jq -r '.data.csr' > intermediate.csr

# Sign the intermediate CSR with the root CA
vault write -format=json pki/root/sign-intermediate \
  csr=@intermediate.csr \
  format=pem_bundle \
  ttl=43800h \
  | jq -r '.data.certificate' > intermediate.cert.pem

# Import the signed intermediate certificate
vault write pki_int/intermediate/set-signed \
  certificate=@intermediate.cert.pem

# Configure URLs for the intermediate
vault write pki_int/config/urls \
  issuing_certificates="https://vault.example.com:8200/v1/pki_int/ca" \
  crl_distribution_points="https://vault.example.com:8200/v1/pki_int/crl" \
  ocsp_servers="https://vault.example.com:8200/v1/pki_int/ocsp"

# Role for web servers (1 year, RSA)
vault write pki_int/roles/web-server \
  allowed_domains="example.com" \
  allow_subdomains=true \
  max_ttl=8760h \
  key_type=rsa \
  key_bits=2048 \
  require_cn=true \
  allow_ip_sans=true \
  server_flag=true \
  client_flag=false

# Role for internal microservices (24 hours, ECDSA)
vault write pki_int/roles/microservice \
  allowed_domains="internal.example.com,svc.cluster.local" \
  allow_subdomains=true \
  allow_bare_domains=false \
  max_ttl=24h \
  key_type=ec \
  key_bits=256 \
  require_cn=false \
  allow_ip_sans=true \
  server_flag=true \
  client_flag=true \
  enforce_hostnames=true

# Role for client authentication (30 days)
vault write pki_int/roles/client-auth \
  allowed_domains="users.example.com" \
  allow_subdomains=true \
  max_ttl=720h \
  key_type=ec \
  key_bits=256 \
  client_flag=true \
  server_flag=false \
  no_store=true

# Issue a certificate for a web server
vault write -format=json pki_int/issue/web-server \
  common_name="api.example.com" \
  alt_names="api-v2.example.com" \
  ip_sans="10.0.1.50" \
  ttl=720h > web-server.json
'''

# Not in the guide's CLI block, but its text issues from these roles too (Go example: microservice, 24h).
EXTRA = r'''
vault write -format=json pki_int/issue/microservice \
  common_name="payment-svc.internal.example.com" ttl=24h ip_sans="10.0.2.7" > microservice.json
vault write -format=json pki_int/issue/client-auth common_name="alice.users.example.com" ttl=48h > client.json
'''


def _script(bao_bin: str, root: str, inter: str) -> str:
    text = GUIDE + EXTRA
    # Mount names first (pki_int before pki), then the engine type: ours instead of the built-in `pki`.
    text = text.replace("pki_int", "@INT@").replace("pki/", f"{root}/").replace("-path=pki ", f"-path={root} ")
    text = text.replace("-max-lease-ttl=87600h pki\n", f"-max-lease-ttl=87600h {root}\n")
    text = text.replace("@INT@", inter)
    text = text.replace(" pki\n", " python-pki\n")
    return f"set -euo pipefail\nvault() {{ {shlex.quote(bao_bin)} \"$@\"; }}\n" + text


def _openssl_verify(workdir: Path, leaf: str) -> subprocess.CompletedProcess:
    return subprocess.run(["openssl", "verify", "-CAfile", "root.pem", "-untrusted", "intermediate.cert.pem", leaf],
                          cwd=workdir, capture_output=True, text=True)


def test_seed000_production_guide_steps_1_to_4(bao: BaoServer, tmp_path: Path) -> None:
    root, inter = unique_name("seed-pki"), unique_name("seed-pki-int")
    script = _script(bao.bao_bin, root, inter)
    assert "vault secrets enable -path=" + root + " python-pki" in script
    try:
        run = subprocess.run(["bash", "-c", script], cwd=tmp_path, env=bao.env(), capture_output=True, text=True,
                             timeout=600)
        assert run.returncode == 0, run.stdout + run.stderr

        types = {k.rstrip("/"): v["type"] for k, v in bao.http("GET", "sys/mounts").json()["data"].items()}
        assert types[root] == types[inter] == "python-pki"

        root_pem = bao.cli("read", "-field=certificate", f"{root}/cert/ca").stdout
        (tmp_path / "root.pem").write_text(root_pem)
        root_cert = x509.load_pem_x509_certificate(root_pem.encode())
        assert isinstance(root_cert.public_key(), rsa.RSAPublicKey) and root_cert.public_key().key_size == 4096
        # format=pem_bundle: the intermediate then its root; set-signed took the bundle.
        inter_certs = x509.load_pem_x509_certificates((tmp_path / "intermediate.cert.pem").read_bytes())
        assert inter_certs[0].subject.rfc4514_string() == "CN=My Organization Intermediate CA"
        # The bundle holds the intermediate and the root: two issuers, the keyed one default. `issuer_name` on
        # intermediate/generate names nothing (the built-in ignores it too: both issuers are unnamed).
        issuers = bao.http("LIST", f"{inter}/issuers").json()["data"]["key_info"].values()
        assert sorted((bool(v["key_id"]), v["is_default"], v["issuer_name"]) for v in issuers) == \
            [(False, False, ""), (True, True, "")]

        for cert in [root_cert, inter_certs[0]]:
            assert lint_findings(cert) == []

        leaves = {}
        for name in ("web-server", "microservice", "client"):
            data = json.loads((tmp_path / f"{name}.json").read_text())["data"]
            (tmp_path / f"{name}.pem").write_text(data["certificate"])
            verify = _openssl_verify(tmp_path, f"{name}.pem")
            assert verify.returncode == 0, verify.stdout + verify.stderr
            leaf = x509.load_pem_x509_certificate(data["certificate"].encode())
            assert lint_findings(leaf) == [], name
            assert data["ca_chain"][0].strip() == inter_certs[0].public_bytes(Encoding.PEM).decode().strip()
            leaves[name] = (leaf, data)

        web, web_data = leaves["web-server"]
        sans = web.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert set(sans.get_values_for_type(x509.DNSName)) == {"api.example.com", "api-v2.example.com"}
        assert [str(i) for i in sans.get_values_for_type(x509.IPAddress)] == ["10.0.1.50"]
        assert abs((web.not_valid_after_utc - web.not_valid_before_utc).total_seconds() - (720 * 3600 + 30)) <= 2
        assert web.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value == \
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH])
        assert isinstance(web.public_key(), rsa.RSAPublicKey) and web.public_key().key_size == 2048
        assert web_data["private_key_type"] == "rsa"

        micro, _ = leaves["microservice"]
        assert isinstance(micro.public_key(), ec.EllipticCurvePublicKey) and micro.public_key().key_size == 256

        client, client_data = leaves["client"]
        assert client.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value == \
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH])
        # no_store: the client certificate is not in the store, the web-server one is.
        stored = bao.http("LIST", f"{inter}/certs").json()["data"]["keys"]
        assert web_data["serial_number"] in stored
        assert client_data["serial_number"] not in stored
    finally:
        for mount in (inter, root):
            bao.http("DELETE", f"sys/mounts/{mount}")
