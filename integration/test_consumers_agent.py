"""`bao agent` rendering a `pkiCert` template (consumers.md section 4) from our mount and from the built-in one.

The agent authenticates with a token file, renders one template once (`-exit-after-auth`) and exits. The template
writes `.Cert`, `.Key` and `.CA` into one file: pkiCert issues once per destination file, so separate files would
hold a key and a certificate from two different issuances.
"""
from __future__ import annotations

import re
import subprocess
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from integration.harness import BaoServer

PEM_BLOCK = re.compile(r"-----BEGIN ([A-Z ]+)-----\n.*?\n-----END \1-----\n?", re.S)


def _ok(resp) -> dict:
    assert resp.status_code in (200, 204), f"{resp.request.method} {resp.url}: {resp.status_code} {resp.text}"
    return resp.json()["data"] if resp.status_code == 200 else {}


def _hierarchy(bao: BaoServer, mount: str) -> tuple[str, str]:
    """Root and intermediate issuers in one mount, a role issuing from the intermediate; (root, int) PEMs."""
    root = _ok(bao.http("PUT", f"{mount}/root/generate/internal",
                        {"common_name": "Agent Root CA", "key_type": "ec", "issuer_name": "root", "ttl": "87600h"}))
    csr = _ok(bao.http("PUT", f"{mount}/intermediate/generate/internal",
                       {"common_name": "Agent Intermediate CA", "key_type": "ec"}))["csr"]
    signed = _ok(bao.http("PUT", f"{mount}/issuer/root/sign-intermediate",
                          {"csr": csr, "format": "pem_bundle", "ttl": "43800h"}))
    mapping = _ok(bao.http("PUT", f"{mount}/intermediate/set-signed", {"certificate": signed["certificate"]}))
    int_id = mapping["imported_issuers"][0]
    _ok(bao.http("PUT", f"{mount}/roles/team-a",
                 {"allowed_domains": "tenant-1.example.com", "allow_subdomains": True, "max_ttl": "72h",
                  "issuer_ref": int_id}))
    int_pem = _ok(bao.http("GET", f"{mount}/issuer/{int_id}"))["certificate"]
    return root["certificate"], int_pem


def _render(bao: BaoServer, mount: str, workdir: Path) -> str:
    workdir.mkdir()
    token_file = workdir / "token"
    token_file.write_text(bao.token)
    dest = workdir / "bundle.pem"
    template = (
        f'{{{{ with pkiCert "{mount}/issue/team-a" "common_name=app.tenant-1.example.com" "ttl=1h" }}}}'
        "{{ .Cert }}{{ .Key }}{{ .CA }}{{ end }}"
    )
    (workdir / "agent.hcl").write_text(f"""
pid_file = "{workdir}/agent.pid"
exit_after_auth = true
vault {{
  address = "{bao.addr}"
}}
auto_auth {{
  method "token_file" {{
    config = {{
      token_file_path = "{token_file}"
    }}
  }}
}}
template_config {{
  exit_on_retry_failure = true
}}
template {{
  contents    = <<EOT
{template}
EOT
  destination = "{dest}"
  perms       = "0600"
}}
""")
    env = {k: v for k, v in bao.env().items() if k not in ("BAO_TOKEN", "VAULT_TOKEN")}
    proc = subprocess.run([bao.bao_bin, "agent", f"-config={workdir / 'agent.hcl'}"],
                          env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert dest.is_file(), f"agent rendered nothing\n{proc.stdout}{proc.stderr}"
    assert dest.stat().st_mode & 0o777 == 0o600
    return dest.read_text()


def _blocks(text: str) -> list[tuple[str, str]]:
    return [(m.group(1), m.group(0)) for m in PEM_BLOCK.finditer(text)]


def _shape(text: str) -> list[tuple[str, bool | str]]:
    """Each PEM block's type and, for certificates, whether it is a CA; for keys, the algorithm family."""
    out: list[tuple[str, bool | str]] = []
    for kind, pem in _blocks(text):
        if kind == "CERTIFICATE":
            try:
                is_ca = x509.load_pem_x509_certificate(pem.encode()).extensions.get_extension_for_class(
                    x509.BasicConstraints).value.ca
            except x509.ExtensionNotFound:
                is_ca = False
            out.append((kind, is_ca))
        else:
            out.append((kind, type(serialization.load_pem_private_key(pem.encode(), None)).__name__))
    return out


def _check_rendered(text: str, root_pem: str, int_pem: str, tmp: Path) -> None:
    blocks = _blocks(text)
    certs = [pem for kind, pem in blocks if kind == "CERTIFICATE"]
    keys = [pem for kind, pem in blocks if kind.endswith("PRIVATE KEY")]
    assert len(certs) == 2 and len(keys) == 1, text
    leaf_pem, ca_pem = certs
    # .CA is the issuing intermediate (issuing_ca == ca_chain[0]), never the root.
    assert ca_pem.strip() == int_pem.strip()
    leaf = x509.load_pem_x509_certificate(leaf_pem.encode())
    assert leaf.subject.rfc4514_string() == "CN=app.tenant-1.example.com"
    key = serialization.load_pem_private_key(keys[0].encode(), None)
    pub = serialization.PublicFormat.SubjectPublicKeyInfo
    assert (key.public_key().public_bytes(serialization.Encoding.PEM, pub)
            == leaf.public_key().public_bytes(serialization.Encoding.PEM, pub))
    (tmp / "root.pem").write_text(root_pem)
    (tmp / "ca.pem").write_text(ca_pem)
    (tmp / "leaf.pem").write_text(leaf_pem)
    verify = subprocess.run(["openssl", "verify", "-CAfile", str(tmp / "root.pem"), "-untrusted", str(tmp / "ca.pem"),
                             str(tmp / "leaf.pem")], capture_output=True, text=True)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    (tmp / "key.pem").write_text(keys[0])
    # openssl's own view of the pair: the key's public half is the certificate's.
    pub_from_key = subprocess.run(["openssl", "pkey", "-in", str(tmp / "key.pem"), "-pubout"],
                                  capture_output=True, text=True, check=True).stdout
    pub_from_cert = subprocess.run(["openssl", "x509", "-in", str(tmp / "leaf.pem"), "-noout", "-pubkey"],
                                   capture_output=True, text=True, check=True).stdout
    assert pub_from_key == pub_from_cert


def test_agent_pkicert_renders_a_verifiable_bundle_like_the_builtin(bao: BaoServer, mounts, tmp_path: Path) -> None:
    rendered = {}
    for name in ("ours", "ref"):
        mount = getattr(mounts, name)
        root_pem, int_pem = _hierarchy(bao, mount)
        rendered[name] = _render(bao, mount, tmp_path / name)
        check_dir = tmp_path / f"{name}-check"
        check_dir.mkdir()
        _check_rendered(rendered[name], root_pem, int_pem, check_dir)
    assert _shape(rendered["ours"]) == _shape(rendered["ref"])
    assert _shape(rendered["ours"]) == [("CERTIFICATE", False), ("RSA PRIVATE KEY", "RSAPrivateKey"),
                                        ("CERTIFICATE", True)]
