"""Replayed consumer traffic (consumers.md sections 1-3, 8 and 9) against our mount and the built-in one.

Each request is sent byte for byte as Terraform, cert-manager, Consul or a pkiCert template forms it (cert-manager's
all-string bodies, Terraform's arrays beside comma strings, Consul's plain-string glob, integer `key_bits` and
intermediate flow). Both engines must give the same status and the same response keys and value types; then what
the consumer reads back is checked the way the consumer reads it (strict types, chain linking, raw bodies).
"""
from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from integration.differential import Csr, shape
from integration.harness import BaoServer, HarnessError, unique_name

ID_KEYED = {"mapping", "key_info"}


@dataclass
class Reply:
    status: int
    ctype: str
    body: Any          # parsed JSON, or the text of a raw body

    @property
    def data(self) -> Any:
        return self.body.get("data") if isinstance(self.body, dict) else None


def send(bao: BaoServer, method: str, path: str, body: Any = None, token: bool = True) -> Reply:
    resp: requests.Response = bao.http(method, path, json=body, token=token)
    ctype = resp.headers.get("Content-Type", "").split(";")[0]
    parsed: Any = resp.text
    if ctype == "application/json" and resp.text:
        parsed = resp.json()
    return Reply(resp.status_code, ctype, parsed)


def outline(reply: Reply) -> Any:
    """What must agree between the engines: status, content type, data keys and value types, warnings present."""
    if not isinstance(reply.body, dict):
        return (reply.status, reply.ctype, bool(reply.body))
    data = reply.data
    if isinstance(data, dict):
        data = {k: (sorted({type(x).__name__ for x in v.values()}) if k in ID_KEYED and isinstance(v, dict)
                    else shape(v)) for k, v in data.items()}
    return (reply.status, reply.ctype, data, "errors" in reply.body)


def both(bao: BaoServer, method: str, paths: tuple[str, str], body: Any = None, token: bool = True,
         ) -> tuple[Reply, Reply]:
    ours = send(bao, method, paths[0], body, token)
    ref = send(bao, method, paths[1], body, token)
    assert outline(ours) == outline(ref), (
        f"{method} {paths[1]} {json.dumps(body)[:200] if body else ''}\nours: {ours.body}\nbuilt-in: {ref.body}")
    return ours, ref


def ok(reply: Reply) -> dict[str, Any]:
    assert reply.status == 200, reply.body
    return reply.data


class MountMaker:
    def __init__(self, bao: BaoServer) -> None:
        self.bao = bao
        self.made: list[tuple[str, str]] = []

    def new(self) -> tuple[str, str]:
        """Another (ours, built-in) pair of fresh mounts."""
        pair = (self.bao.enable_plugin_mount(unique_name("pki")), self.bao.enable_builtin_mount(unique_name("ref")))
        self.made.append(pair)
        return pair


@pytest.fixture
def extra_mounts(bao: BaoServer) -> Iterator[MountMaker]:
    """More mount pairs on demand (Consul and Terraform keep root and intermediate apart); disabled afterwards."""
    maker = MountMaker(bao)
    yield maker
    for pair in maker.made:
        for path in pair:
            try:
                bao.disable_mount(path)
            except HarnessError:
                pass


def pem_certs(text: str) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates(text.encode()) if "BEGIN CERTIFICATE" in text else []


def is_ca(cert: x509.Certificate) -> bool:
    try:
        return cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        return False


def openssl_verify(tmp: Path, leaf: str, chain: list[str], root: str) -> None:
    (tmp / "root.pem").write_text(root)
    (tmp / "untrusted.pem").write_text("".join(c if c.endswith("\n") else c + "\n" for c in chain) or root)
    (tmp / "leaf.pem").write_text(leaf)
    proc = subprocess.run(["openssl", "verify", "-CAfile", str(tmp / "root.pem"), "-untrusted",
                           str(tmp / "untrusted.pem"), str(tmp / "leaf.pem")], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def two_tier(bao: BaoServer, pair: tuple[str, str], role: str, role_body: dict[str, Any]) -> dict[str, str]:
    """Root + intermediate in each mount of the pair (same requests), a role on the intermediate; PEMs by name."""
    out: dict[str, str] = {}
    for mount in pair:
        bao.tune_max_ttl(mount, "87600h")
        root = ok(send(bao, "PUT", f"{mount}/root/generate/internal",
                       {"common_name": "Replay Root", "key_type": "ec", "issuer_name": "root", "ttl": "87600h"}))
        csr = ok(send(bao, "PUT", f"{mount}/intermediate/generate/internal",
                      {"common_name": "Replay Intermediate", "key_type": "ec"}))["csr"]
        bundle = ok(send(bao, "PUT", f"{mount}/issuer/root/sign-intermediate",
                         {"csr": csr, "format": "pem_bundle", "ttl": "43800h"}))["certificate"]
        int_id = ok(send(bao, "PUT", f"{mount}/intermediate/set-signed", {"certificate": bundle}))[
            "imported_issuers"][0]
        assert send(bao, "PUT", f"{mount}/roles/{role}", {**role_body, "issuer_ref": int_id}).status in (200, 204)
        out[f"{mount}:root"] = root["certificate"]
        out[f"{mount}:int"] = ok(send(bao, "GET", f"{mount}/issuer/{int_id}"))["certificate"]
    return out


# ---------------------------------------------------------------------------------------------------------------
# cert-manager

def cert_manager_bundle(data: dict[str, Any]) -> list[x509.Certificate]:
    """cert-manager's strict decode of `data`, then its chain: leaf first, linked issuer by issuer, one chain."""
    for key in ("certificate", "issuing_ca", "private_key", "private_key_type", "serial_number"):
        assert key not in data or isinstance(data[key], str), key
    assert "ca_chain" not in data or (isinstance(data["ca_chain"], list)
                                      and all(isinstance(c, str) for c in data["ca_chain"]))
    leaf_list = pem_certs(data["certificate"])
    assert len(leaf_list) == 1
    chain = [pem_certs(c)[0] for c in data.get("ca_chain") or []] or pem_certs(data["issuing_ca"])
    pool = {c.subject.rfc4514_string(): c for c in chain}
    built = [leaf_list[0]]
    while not built[-1].issuer == built[-1].subject and built[-1].issuer.rfc4514_string() in pool:
        built.append(pool.pop(built[-1].issuer.rfc4514_string()))
    # Everything cert-manager was given must link into the one chain.
    assert not pool, f"unlinked certificates in ca_chain: {list(pool)}"
    return built


CERT_MANAGER_ROLE = {"allowed_domains": "example.com", "allow_subdomains": True, "allow_bare_domains": True,
                     "max_ttl": "2200h", "require_cn": False, "key_type": "ec", "key_bits": 256}


@pytest.mark.parametrize("variant", ["default-90d", "24h-no-sans", "empty-subject"])
def test_cert_manager_sign(bao: BaoServer, mounts, tmp_path: Path, variant: str) -> None:
    pair = (mounts.ours, mounts.ref)
    pems = two_tier(bao, pair, "web-server", CERT_MANAGER_ROLE)
    if variant == "default-90d":
        csr = Csr(cn="app.example.com", dns=("app.example.com", "www.example.com")).pem()
        body = {"common_name": "app.example.com", "alt_names": "app.example.com,www.example.com", "ip_sans": "",
                "uri_sans": "", "ttl": "2160h0m0s", "csr": csr, "exclude_cn_from_sans": "true"}
    elif variant == "24h-no-sans":
        csr = Csr(cn="app.example.com").pem()
        body = {"common_name": "app.example.com", "alt_names": "", "ip_sans": "", "uri_sans": "",
                "ttl": "24h0m0s", "csr": csr, "exclude_cn_from_sans": "true"}
    else:
        csr = Csr(dns=("svc.example.com",)).pem()
        body = {"common_name": "", "alt_names": "svc.example.com", "ip_sans": "", "uri_sans": "",
                "ttl": "1h0m0s", "csr": csr, "exclude_cn_from_sans": "true"}
    # cert-manager POSTs to whatever path the Issuer names; the common case is sign/:role.
    ours, ref = both(bao, "POST", (f"{mounts.ours}/sign/web-server", f"{mounts.ref}/sign/web-server"), body)
    for mount, reply in ((mounts.ours, ours), (mounts.ref, ref)):
        built = cert_manager_bundle(ok(reply))
        leaf = built[0]
        assert [c.subject.rfc4514_string() for c in built[1:]] == ["CN=Replay Intermediate", "CN=Replay Root"]
        ttl = {"default-90d": 2160, "24h-no-sans": 24, "empty-subject": 1}[variant] * 3600
        life = (leaf.not_valid_after_utc - leaf.not_valid_before_utc).total_seconds()
        assert ttl <= life <= ttl + 60
        if variant == "default-90d":
            # exclude_cn_from_sans="true" as a string still only affects the CN copy; the CSR's names stay.
            sans = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            assert set(sans.get_values_for_type(x509.DNSName)) == {"app.example.com", "www.example.com"}
        check = tmp_path / mount
        check.mkdir()
        openssl_verify(check, ok(reply)["certificate"], ok(reply)["ca_chain"], pems[f"{mount}:root"])


# ---------------------------------------------------------------------------------------------------------------
# Consul Connect's Vault CA provider

def test_consul_provider_flow(bao: BaoServer, extra_mounts, tmp_path: Path) -> None:
    roots = extra_mounts.new()
    ints = extra_mounts.new()
    cluster = "11111111-2222-3333-4444-555555555555"
    for mount in roots:
        bao.tune_max_ttl(mount, "87600h")
    for mount in ints:
        bao.tune_max_ttl(mount, "8760h")

    def pair(path: str, which: tuple[str, str]) -> tuple[str, str]:
        return (f"{which[0]}/{path}", f"{which[1]}/{path}")

    # Configure: the intermediate mount exists but is empty -> 204, empty body.
    for reply in both(bao, "GET", pair("ca/pem", ints)):
        assert reply.status == 204 and reply.body == ""
    both(bao, "PUT", pair("roles/leaf-cert", ints),
         {"allow_any_name": True, "allowed_uri_sans": "spiffe://*", "key_type": "any", "max_ttl": "72h0m0s",
          "no_store": True, "require_cn": False})
    # Consul's path join gives a double slash; the server redirects (307) and requests re-sends the PUT.
    for reply in both(bao, "PUT", (f"{ints[0]}//config/auto-tidy", f"{ints[1]}//config/auto-tidy"),
                      {"enabled": True, "tidy_expired_issuers": True}):
        assert ok(reply)["tidy_expired_issuers"] is True
    both(bao, "GET", pair("ca/pem", roots))
    root_replies = both(bao, "PUT", pair("root/generate/internal", roots),
                        {"common_name": "pri-1a2b3c.vault.ca.11111111.consul",
                         "uri_sans": f"spiffe://{cluster}.consul", "key_type": "ec", "key_bits": 256})
    root_pems = [ok(r)["certificate"] for r in root_replies]
    assert all(isinstance(p, str) and p for p in root_pems)
    for reply, root_pem in zip(both(bao, "GET", pair("ca_chain", roots)), root_pems):
        assert reply.status == 200 and pem_certs(reply.body) == pem_certs(root_pem)

    csr_replies = both(bao, "PUT", pair("intermediate/generate/internal", ints),
                       {"common_name": "pri-1a2b3c.vault.ca.11111111.consul", "key_type": "ec", "key_bits": 256,
                        "uri_sans": f"spiffe://{cluster}.consul"})
    key_ids = [ok(r)["key_id"] for r in csr_replies]
    assert all(isinstance(k, str) and k for k in key_ids)
    bundles = []
    for i, reply in enumerate(csr_replies):
        signed = send(bao, "PUT", f"{roots[i]}/root/sign-intermediate",
                      {"csr": ok(reply)["csr"], "use_csr_values": True, "format": "pem_bundle", "ttl": "8760h0m0s"})
        bundles.append(signed)
    assert outline(bundles[0]) == outline(bundles[1])
    for reply in bundles:
        certs = pem_certs(ok(reply)["certificate"])
        assert len(certs) == 2 and certs[0].subject.rfc4514_string() == "CN=pri-1a2b3c.vault.ca.11111111.consul"

    new_defaults = []
    set_signed = [send(bao, "PUT", f"{ints[i]}/intermediate/set-signed", {"certificate": ok(bundles[i])["certificate"]})
                  for i in range(2)]
    assert outline(set_signed[0]) == outline(set_signed[1])
    for reply, key_id in zip(set_signed, key_ids):
        mapping = ok(reply)["mapping"]
        assert isinstance(mapping, dict)
        matches = [issuer for issuer, key in mapping.items() if key == key_id]
        assert len(matches) == 1
        new_defaults.append(matches[0])
    issuers_cfg = both(bao, "GET", pair("config/issuers", ints))
    for i, reply in enumerate(issuers_cfg):
        echoed = {**ok(reply), "default": new_defaults[i]}
        written = send(bao, "PUT", f"{ints[i]}/config/issuers", echoed)
        assert written.status in (200, 204), written.body
    for i, reply in enumerate(both(bao, "GET", pair("ca/pem", ints))):
        assert reply.status == 200 and pem_certs(reply.body) == pem_certs(ok(bundles[i])["certificate"])[:1]

    # Every leaf: an empty-subject EC CSR whose only SAN is the SPIFFE URI.
    spiffe = f"spiffe://{cluster}.consul/ns/default/dc/dc1/svc/web"
    leaf_csr = Csr(key="ec-256", uris=(spiffe,)).pem()
    leaves = both(bao, "PUT", pair("sign/leaf-cert", ints), {"csr": leaf_csr, "ttl": "72h0m0s"})
    for i, reply in enumerate(leaves):
        data = ok(reply)
        assert isinstance(data["certificate"], str) and data["certificate"]
        assert isinstance(data["issuing_ca"], str) and data["issuing_ca"]
        leaf = pem_certs(data["certificate"])[0]
        assert leaf.subject == x509.Name([])
        sans = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert sans.get_values_for_type(x509.UniformResourceIdentifier) == [spiffe]
        check = tmp_path / f"leaf{i}"
        check.mkdir()
        openssl_verify(check, data["certificate"] + "\n", [data["issuing_ca"]], root_pems[i])
    # The leaf role is no_store: nothing listed under certs/ for the leaf.
    for i, reply in enumerate(leaves):
        listed = send(bao, "LIST", f"{ints[i]}/certs")
        assert ok(reply)["serial_number"] not in ((listed.data or {}).get("keys") or [])

    # A secondary datacenter's intermediate: same call with max_path_length 0 as a JSON integer.
    secondary_csr = Csr(key="ec-256", cn="sec-4d5e6f.vault.ca.11111111.consul",
                        uris=(f"spiffe://{cluster}.consul",)).pem()
    secondary = both(bao, "PUT", pair("root/sign-intermediate", roots),
                     {"csr": secondary_csr, "use_csr_values": True, "format": "pem_bundle", "max_path_length": 0,
                      "ttl": "8760h0m0s"})
    for reply in secondary:
        cert = pem_certs(ok(reply)["certificate"])[0]
        assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.path_length == 0

    # Root rotation: cross-sign the old root with the mount's current key.
    for i, reply in enumerate(both(bao, "GET", pair("ca/pem", roots))):
        crossed = send(bao, "PUT", f"{roots[i]}/root/sign-self-issued", {"certificate": reply.body})
        assert crossed.status == 200 and isinstance(crossed.data["certificate"], str), crossed.body


# ---------------------------------------------------------------------------------------------------------------
# Terraform

TERRAFORM_ROLE = {
    "allowed_domains": ["example.com"], "allow_any_name": False, "allow_bare_domains": False,
    "allow_glob_domains": False, "allow_ip_sans": True, "allow_localhost": True, "allow_subdomains": True,
    "allow_wildcard_certificates": True, "allowed_uri_sans_template": False,
    "basic_constraints_valid_for_non_ca": False, "client_flag": True, "code_signing_flag": False,
    "email_protection_flag": False, "enforce_hostnames": True, "generate_lease": False, "no_store": False,
    "require_cn": True, "server_flag": True, "use_csr_common_name": True, "use_csr_sans": True,
    "key_bits": 2048, "key_type": "rsa", "max_ttl": "72h",
}
ROLE_LIST_FIELDS = ("allowed_domains", "allowed_serial_numbers", "ext_key_usage", "ext_key_usage_oids",
                    "cn_validations", "key_usage", "country", "locality", "ou", "organization", "postal_code",
                    "province", "street_address", "allowed_other_sans", "allowed_uri_sans", "policy_identifiers")


def terraform_reads_role(data: dict[str, Any]) -> None:
    """What the provider's role read type-asserts (consumers.md 1.5 step 2)."""
    for key in ROLE_LIST_FIELDS:
        assert data.get(key) is None or isinstance(data[key], list), key
    assert all(isinstance(p, str) for p in data["policy_identifiers"] or [])
    for key in ("key_bits", "signature_bits", "not_before_duration", "ttl", "max_ttl"):
        assert type(data[key]) is int, key
    for key in ("key_type", "not_after"):
        assert isinstance(data[key], str), key
    assert isinstance(data["allowed_domains_template"], bool)
    for key, value in TERRAFORM_ROLE.items():
        if isinstance(value, bool):
            assert data[key] is value, key


def test_terraform_role_and_policy_identifiers(bao: BaoServer, mounts) -> None:
    pair = (f"{mounts.ours}/roles/web", f"{mounts.ref}/roles/web")
    both(bao, "PUT", pair, TERRAFORM_ROLE)
    for reply in both(bao, "GET", pair):
        data = ok(reply)
        terraform_reads_role(data)
        assert data["max_ttl"] == 259200 and data["not_before_duration"] == 30 and data["key_bits"] == 2048
    # policy_identifier blocks: one string holding a JSON array of objects; key_usage [] written by the user.
    policies = json.dumps([{"oid": "1.3.6.1.4.1.7.8", "cps": "https://example.com/cps", "notice": "hello"},
                           {"oid": "1.3.6.1.4.1.44947.1.1.1"}])
    both(bao, "PUT", pair, {**TERRAFORM_ROLE, "policy_identifiers": policies, "key_usage": [],
                            "ext_key_usage": ["ServerAuth"], "ou": ["Eng"]})
    read = both(bao, "GET", pair)
    for reply in read:
        data = ok(reply)
        terraform_reads_role(data)
        assert data["key_usage"] == [] and data["ext_key_usage"] == ["ServerAuth"] and data["ou"] == ["Eng"]
        parsed = [json.loads(p) if p.startswith("{") else {"oid": p} for p in data["policy_identifiers"]]
        assert {p["oid"] for p in parsed} == {"1.3.6.1.4.1.7.8", "1.3.6.1.4.1.44947.1.1.1"}
    assert ok(read[0])["policy_identifiers"] == ok(read[1])["policy_identifiers"]
    # The same list as the plain array of OIDs.
    both(bao, "PUT", pair, {**TERRAFORM_ROLE, "policy_identifiers": ["1.3.6.1.4.1.7.8"]})
    for reply in both(bao, "GET", pair):
        assert ok(reply)["policy_identifiers"] == ["1.3.6.1.4.1.7.8"]
    for reply in both(bao, "GET", (f"{mounts.ours}/roles/gone", f"{mounts.ref}/roles/gone")):
        assert reply.status == 404


def test_terraform_ca_lifecycle_issue_and_sign(bao: BaoServer, mounts, extra_mounts, tmp_path: Path) -> None:
    ints = extra_mounts.new()
    roots = (mounts.ours, mounts.ref)
    for mount in roots:
        bao.tune_max_ttl(mount, "87600h")
    # 1.1 root: raw-config fields only, the booleans always, key_usage as an array.
    root_body = {"common_name": "TF Root", "ttl": "87600h", "issuer_name": "tf-root", "key_type": "ec",
                 "key_bits": 256, "exclude_cn_from_sans": False, "use_pss": False,
                 "key_usage": ["CertSign", "CRLSign"], "permitted_dns_domains": "example.com,example.org"}
    roots_made = both(bao, "PUT", (f"{roots[0]}/issuers/generate/root/internal",
                                   f"{roots[1]}/issuers/generate/root/internal"), root_body)
    for mount, reply in zip(roots, roots_made):
        data = ok(reply)
        for key in ("certificate", "issuing_ca", "serial_number", "issuer_id", "key_id"):
            assert isinstance(data[key], str) and data[key], key
        assert "ca_chain" not in data
        # Drift check: unauthenticated GET issuer/<id>/pem; the serial re-derived from the PEM must match.
        pem = send(bao, "GET", f"{mount}/issuer/{data['issuer_id']}/pem", token=False)
        assert pem.status == 200 and pem.ctype == "application/pem-certificate-chain"
        serial = pem_certs(pem.body)[0].serial_number
        raw = serial.to_bytes((serial.bit_length() + 7) // 8, "big")
        assert ":".join(f"{b:02x}" for b in raw) == data["serial_number"]
    unknown = both(bao, "GET", (f"{roots[0]}/issuer/00000000-0000-0000-0000-000000000000/pem",
                                f"{roots[1]}/issuer/00000000-0000-0000-0000-000000000000/pem"), token=False)
    for reply in unknown:
        assert reply.status == 500
        assert "unable to find PKI issuer for reference: 00000000-0000-0000-0000-000000000000" in json.dumps(
            reply.body)

    # 1.2 intermediate CSR: key_usage comma-joined here, format/private_key_format always sent.
    csrs = both(bao, "PUT", (f"{ints[0]}/issuers/generate/intermediate/internal",
                             f"{ints[1]}/issuers/generate/intermediate/internal"),
                {"common_name": "TF Int", "format": "pem", "private_key_format": "der", "key_type": "rsa",
                 "key_bits": 2048, "exclude_cn_from_sans": False, "add_basic_constraints": False,
                 "key_usage": "CertSign,CRLSign"})
    # 1.3 sign-intermediate through the issuer_ref path, issuer_ref also in the body.
    signed = []
    for i, reply in enumerate(csrs):
        assert isinstance(ok(reply)["csr"], str) and isinstance(ok(reply)["key_id"], str)
        signed.append(send(bao, "PUT", f"{roots[i]}/issuer/tf-root/sign-intermediate",
                           {"csr": ok(reply)["csr"], "common_name": "TF Int", "ttl": "43800h", "format": "pem",
                            "issuer_ref": "tf-root", "exclude_cn_from_sans": False, "use_csr_values": False,
                            "use_pss": False, "max_path_length": -1, "key_usage": ["CertSign", "CRLSign"],
                            "permitted_dns_domains": "example.com"}))
    assert outline(signed[0]) == outline(signed[1])
    for reply in signed:
        data = ok(reply)
        assert isinstance(data["certificate"], str) and isinstance(data["issuing_ca"], str)
        assert isinstance(data["ca_chain"], list) and all(isinstance(c, str) for c in data["ca_chain"])
        assert pem_certs(data["ca_chain"][0]) == pem_certs(data["certificate"])
    # 1.4 set-signed with the certificate alone: imported_issuers/imported_keys null or arrays of strings.
    imported = [send(bao, "PUT", f"{ints[i]}/intermediate/set-signed", {"certificate": ok(signed[i])["certificate"]})
                for i in range(2)]
    assert outline(imported[0]) == outline(imported[1])
    for reply in imported:
        for key in ("imported_issuers", "imported_keys"):
            value = ok(reply)[key]
            assert value is None or (isinstance(value, list) and all(isinstance(v, str) for v in value))

    # 1.5 + 1.6: role and issue exactly as the provider sends them.
    role_paths = (f"{ints[0]}/roles/web", f"{ints[1]}/roles/web")
    both(bao, "PUT", role_paths, TERRAFORM_ROLE)
    issue_body = {"common_name": "a.example.com", "ttl": "1h", "format": "pem", "private_key_format": "der",
                  "exclude_cn_from_sans": False, "remove_roots_from_chain": False,
                  "alt_names": "b.example.com,c.example.com"}
    issued = both(bao, "PUT", (f"{ints[0]}/issue/web", f"{ints[1]}/issue/web"), issue_body)
    for i, reply in enumerate(issued):
        data = ok(reply)
        for key in ("certificate", "issuing_ca", "private_key", "private_key_type", "serial_number"):
            assert isinstance(data[key], str), key
        assert isinstance(data["ca_chain"], list) and all(isinstance(c, str) for c in data["ca_chain"])
        leaf = pem_certs(data["certificate"])[0]
        assert type(data["expiration"]) is int and data["expiration"] == int(leaf.not_valid_after_utc.timestamp())
        # private_key_format "der" with format "pem" means the PEM of the key's own (PKCS#1) encoding.
        assert data["private_key"].startswith("-----BEGIN RSA PRIVATE KEY-----")
        key = serialization.load_pem_private_key(data["private_key"].encode(), None)
        assert key.public_key() == leaf.public_key()
        check = tmp_path / f"issue{i}"
        check.mkdir()
        openssl_verify(check, data["certificate"], data["ca_chain"], ok(roots_made[i])["certificate"])
    # 1.7 sign.
    csr = Csr(key="rsa-2048", cn="s.example.com").pem()
    for reply in both(bao, "PUT", (f"{ints[0]}/sign/web", f"{ints[1]}/sign/web"),
                      {"csr": csr, "common_name": "s.example.com", "format": "pem", "exclude_cn_from_sans": False,
                       "remove_roots_from_chain": False}):
        data = ok(reply)
        assert type(data["expiration"]) is int and isinstance(data["ca_chain"], list)
    # Destroy: revoke by serial, then the root issuer by id.
    for i, reply in enumerate(issued):
        revoked = send(bao, "PUT", f"{ints[i]}/revoke", {"serial_number": ok(reply)["serial_number"]})
        assert revoked.status == 200 and type(revoked.data["revocation_time"]) is int
    # config/issuers with default "" is refused by both.
    for reply in both(bao, "PUT", (f"{ints[0]}/config/issuers", f"{ints[1]}/config/issuers"), {"default": ""}):
        assert reply.status == 400
    for i, reply in enumerate(roots_made):
        assert send(bao, "DELETE", f"{roots[i]}/issuer/{ok(reply)['issuer_id']}").status in (200, 204)



# ---------------------------------------------------------------------------------------------------------------
# pkiCert's request, replayed

def test_pkicert_request_with_remove_roots(bao: BaoServer, mounts) -> None:
    for mount in (mounts.ours, mounts.ref):
        ok(send(bao, "PUT", f"{mount}/root/generate/internal", {"common_name": "Team Root", "key_type": "ec"}))
        send(bao, "PUT", f"{mount}/roles/team-a", {"allowed_domains": "tenant-1.example.com",
                                                   "allow_subdomains": True})
    body = {"common_name": "app.tenant-1.example.com", "ttl": "30s", "remove_roots_from_chain": "true"}
    for reply in both(bao, "PUT", (f"{mounts.ours}/issue/team-a", f"{mounts.ref}/issue/team-a"), body):
        data = ok(reply)
        # The root was the only chain entry: ca_chain is absent, issuing_ca stays (pkiCert's .CA is the root).
        assert "ca_chain" not in data
        assert is_ca(pem_certs(data["issuing_ca"])[0]) and not is_ca(pem_certs(data["certificate"])[0])
        # pkiCert absorbs every PEM in every string field: exactly one leaf, one CA, one key.
        text = "".join(v for v in data.values() if isinstance(v, str))
        assert text.count("BEGIN CERTIFICATE") == 2 and text.count("PRIVATE KEY-----") == 2
        # The `secret` template function's renewal type-asserts expiration as a number.
        assert type(data["expiration"]) is int


def test_terraform_config_and_issuer_resources(bao: BaoServer, mounts) -> None:
    pair = (mounts.ours, mounts.ref)

    def paths(path: str) -> tuple[str, str]:
        return (f"{pair[0]}/{path}", f"{pair[1]}/{path}")

    made = both(bao, "PUT", paths("issuers/generate/root/internal"),
                {"common_name": "TF Root", "key_type": "ec", "key_bits": 256, "issuer_name": "main",
                 "exclude_cn_from_sans": False, "use_pss": False})
    # 1.8 config/urls: JSON arrays, enable_templating always.
    urls = {"issuing_certificates": ["http://127.0.0.1:8200/v1/pki/ca"],
            "crl_distribution_points": ["http://127.0.0.1:8200/v1/pki/crl"], "ocsp_servers": [],
            "enable_templating": False}
    both(bao, "PUT", paths("config/urls"), urls)
    for reply in both(bao, "GET", paths("config/urls")):
        assert ok(reply)["issuing_certificates"] == urls["issuing_certificates"]
    # 1.10 config/crl: durations read back as strings.
    both(bao, "PUT", paths("config/crl"), {"expiry": "72h", "disable": False, "auto_rebuild": True,
                                           "auto_rebuild_grace_period": "12h", "enable_delta": False})
    for reply in both(bao, "GET", paths("config/crl")):
        assert ok(reply)["expiry"] == "72h" and isinstance(ok(reply)["auto_rebuild_grace_period"], str)
    # 1.16 auto-tidy: fields this server may not know are ignored (with a warning), never refused.
    both(bao, "PUT", paths("config/auto-tidy"),
         {"enabled": True, "interval_duration": "12h", "tidy_cert_store": True, "tidy_revoked_certs": True,
          "safety_buffer": "72h", "tidy_cmpv2_nonce_store": True, "tidy_cert_metadata": False})
    for reply in both(bao, "GET", paths("config/auto-tidy")):
        data = ok(reply)
        assert data["interval_duration"] == 43200 and data["safety_buffer"] == 259200
        assert isinstance(data["pause_duration"], str)
    # 1.12 issuer update with PATCH (merge-patch), then a read.
    for i, reply in enumerate(made):
        issuer_id = ok(reply)["issuer_id"]
        patched = bao.http("PATCH", f"{pair[i]}/issuer/{issuer_id}",
                           json={"leaf_not_after_behavior": "truncate", "usage": "read-only,issuing-certificates"},
                           headers={"Content-Type": "application/merge-patch+json"})
        assert patched.status_code == 200, patched.text
    issuers = both(bao, "GET", paths("issuer/main"))
    for reply in issuers:
        data = ok(reply)
        assert data["leaf_not_after_behavior"] == "truncate" and isinstance(data["ca_chain"], list)
    both(bao, "PUT", paths("config/issuers"), {"default": "main", "default_follows_latest_issuer": False})
    # Lists: issuers and keys with key_info (data sources).
    for reply in both(bao, "LIST", paths("issuers")):
        assert isinstance(ok(reply)["keys"], list) and isinstance(ok(reply)["key_info"], dict)
    # 1.13 key resource: keys/generate answers 200 with key_id.
    for reply in both(bao, "PUT", paths("keys/generate/internal"), {"key_type": "ec", "key_bits": 256,
                                                                    "key_name": "spare"}):
        assert isinstance(ok(reply)["key_id"], str)


def test_raw_endpoints_as_consul_and_hvac_read_them(bao: BaoServer, mounts) -> None:
    """Empty mount: 204 with no body; with a CA: the built-in's content types; cert/ca_chain JSON is one string."""
    pair = (mounts.ours, mounts.ref)
    raw_paths = ("ca", "ca/pem", "ca_chain", "cert/ca/raw", "cert/ca/raw/pem")
    for path in raw_paths:
        for reply in both(bao, "GET", (f"{pair[0]}/{path}", f"{pair[1]}/{path}"), token=False):
            assert reply.status == 204 and not reply.body, path
    for mount in pair:
        ok(send(bao, "PUT", f"{mount}/root/generate/internal", {"common_name": "Raw Root", "key_type": "ec"}))
    for path in (*raw_paths, "crl", "crl/pem"):
        for reply in both(bao, "GET", (f"{pair[0]}/{path}", f"{pair[1]}/{path}"), token=False):
            assert reply.status == 200 and reply.body, path
    for reply in both(bao, "GET", (f"{pair[0]}/cert/ca_chain", f"{pair[1]}/cert/ca_chain")):
        assert isinstance(ok(reply)["ca_chain"], str) and isinstance(ok(reply)["certificate"], str)
