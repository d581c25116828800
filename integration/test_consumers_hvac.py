"""hvac's PKI methods (consumers.md section 5) with `mount_point=` our mount and the built-in one.

One flow calls every method users reach for, in the order a user would, on each mount; each step's outcome is
reduced to what a caller can see (a dict's data keys and value types, or a raw `requests.Response`'s status and
content type, or the hvac exception class) and the two flows must agree step by step. The values callers act on
are checked too: PEM bodies parse, `expiration` is NotAfter, revocation shows up in `read_certificate`.
"""
from __future__ import annotations

from typing import Any, Callable

import hvac
import hvac.exceptions
import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from integration.differential import Csr, pem_bundle, self_signed_ca, shape
from integration.harness import BaoServer

# Keys whose values are keyed by generated ids: compare the value types only.
ID_KEYED = {"mapping", "key_info"}


def _outcome(result: Any) -> Any:
    if isinstance(result, BaseException):
        return ("error", type(result).__name__)
    if isinstance(result, requests.Response):
        ctype = result.headers.get("Content-Type", "").split(";")[0]
        return ("response", result.status_code, ctype, bool(result.content))
    if isinstance(result, str):
        # read_ca_certificate, read_ca_certificate_chain, read_crl hand back the raw body's text.
        return ("text", [m for m in ("CERTIFICATE", "X509 CRL") if f"-----BEGIN {m}-----" in result])
    if isinstance(result, dict):
        data = result.get("data")
        if isinstance(data, dict):
            data = {k: (sorted({type(x).__name__ for x in v.values()}) if k in ID_KEYED and isinstance(v, dict)
                        else shape(v)) for k, v in data.items()}
        return ("dict", data, bool(result.get("warnings")), bool(result.get("lease_id")))
    return ("other", type(result).__name__)


def _self_signed_ca(cn: str) -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    return pem_bundle(self_signed_ca(key, x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])), key)


class Flow:
    """Runs hvac calls against one mount, recording each step's outcome and keeping the results."""

    def __init__(self, client: hvac.Client, mount: str) -> None:
        self.pki = client.secrets.pki
        self.mount = mount
        self.steps: list[tuple[str, Any]] = []
        self.results: dict[str, Any] = {}

    def __call__(self, step: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        try:
            result = fn(*args, mount_point=self.mount, **kwargs)
        except hvac.exceptions.VaultError as e:
            result = e
        self.steps.append((step, _outcome(result)))
        self.results[step] = result
        return result


def _run(bao: BaoServer, mount: str, imported_ca: str, other_root: str) -> Flow:
    client = hvac.Client(url=bao.addr, token=bao.token)
    f = Flow(client, mount)
    pki = f.pki
    f("read_ca_certificate (empty)", pki.read_ca_certificate)
    f("read_role (missing)", pki.read_role, "nope")
    f("list_roles (empty)", pki.list_roles)
    f("generate_root", pki.generate_root, "internal", "hvac Root CA",
             extra_params={"key_type": "ec", "ttl": "87600h", "issuer_name": "root"})
    f("read_ca_certificate", pki.read_ca_certificate)
    f("read_ca_certificate_chain", pki.read_ca_certificate_chain)
    f("set_urls", pki.set_urls, {"issuing_certificates": [f"{bao.addr}/v1/{mount}/ca"],
                                 "crl_distribution_points": [f"{bao.addr}/v1/{mount}/crl"]})
    f("read_urls", pki.read_urls)
    f("create_or_update_role", pki.create_or_update_role, "web",
      extra_params={"allowed_domains": ["example.com"], "allow_subdomains": True, "max_ttl": "72h"})
    f("read_role", pki.read_role, "web")
    f("list_roles", pki.list_roles)
    f("generate_certificate", pki.generate_certificate, "web", "a.example.com", extra_params={"ttl": "1h"})
    csr = Csr(key="ec-256", cn="b.example.com", dns=("b.example.com",)).pem()
    f("sign_certificate", pki.sign_certificate, "web", csr, "b.example.com")
    f("sign_verbatim", pki.sign_verbatim, csr)
    f("generate_certificate (bad name)", pki.generate_certificate, "web", "evil.example.net")
    serial = f.results["generate_certificate"]["data"]["serial_number"]
    f("read_certificate", pki.read_certificate, serial)
    f("list_certificates", pki.list_certificates)
    f("revoke_certificate", pki.revoke_certificate, serial)
    f("read_certificate (revoked)", pki.read_certificate, serial)
    f("read_crl_configuration", pki.read_crl_configuration)
    f("set_crl_configuration", pki.set_crl_configuration, expiry="48h", disable=False)
    f("read_crl_configuration (after set)", pki.read_crl_configuration)
    f("rotate_crl", pki.rotate_crl)
    f("read_crl", pki.read_crl)
    inter = f("generate_intermediate", pki.generate_intermediate, "internal", "hvac Intermediate CA",
              extra_params={"key_type": "ec"})
    signed = f("sign_intermediate", pki.sign_intermediate, inter["data"]["csr"], "hvac Intermediate CA",
               extra_params={"format": "pem_bundle", "ttl": "8760h"})
    f("set_signed_intermediate", pki.set_signed_intermediate, signed["data"]["certificate"])
    f("sign_self_issued", pki.sign_self_issued, other_root[other_root.index("-----BEGIN CERTIFICATE-----"):])
    f("submit_ca_information", pki.submit_ca_information, imported_ca)
    f("list_issuers", pki.list_issuers)
    f("read_issuer", pki.read_issuer, "root")
    f("update_issuer", pki.update_issuer, "root", extra_params={"leaf_not_after_behavior": "truncate"})
    int_id = f.results["set_signed_intermediate"]["data"]["imported_issuers"][0]
    f("revoke_issuer", pki.revoke_issuer, int_id)
    f("delete_issuer", pki.delete_issuer, int_id)
    f("read_issuer (deleted)", pki.read_issuer, int_id)
    f("tidy", pki.tidy, extra_params={"tidy_cert_store": True, "tidy_revoked_certs": True, "safety_buffer": "1s"})
    f("delete_role", pki.delete_role, "web")
    f("read_role (deleted)", pki.read_role, "web")
    f("delete_root", pki.delete_root)
    f("read_ca_certificate (after delete_root)", pki.read_ca_certificate)
    return f


def _check_values(f: Flow) -> None:
    r = f.results
    assert r["read_ca_certificate (empty)"] == ""
    root_pem = r["generate_root"]["data"]["certificate"]
    assert r["read_ca_certificate"].strip() == root_pem.strip()
    chain = x509.load_pem_x509_certificates(r["read_ca_certificate_chain"].encode())
    assert chain == [x509.load_pem_x509_certificate(root_pem.encode())]
    issued = r["generate_certificate"]["data"]
    leaf = x509.load_pem_x509_certificate(issued["certificate"].encode())
    assert issued["expiration"] == int(leaf.not_valid_after_utc.timestamp())
    assert issued["ca_chain"][0] == issued["issuing_ca"]
    assert isinstance(r["generate_certificate (bad name)"], hvac.exceptions.InvalidRequest)
    assert isinstance(r["read_role (missing)"], hvac.exceptions.InvalidPath)
    assert r["list_roles"]["data"]["keys"] == ["web"]
    assert r["read_role"]["data"]["allowed_domains"] == ["example.com"]
    assert issued["serial_number"] in r["list_certificates"]["data"]["keys"]
    before = r["read_certificate"]["data"]
    assert before["revocation_time"] == 0 and before["certificate"].strip() == issued["certificate"].strip()
    assert r["revoke_certificate"]["data"]["state"] == "revoked"
    after = r["read_certificate (revoked)"]["data"]
    assert after["revocation_time"] == r["revoke_certificate"]["data"]["revocation_time"] > 0
    crl = x509.load_pem_x509_crl(r["read_crl"].encode())
    assert crl.get_revoked_certificate_by_serial_number(leaf.serial_number) is not None
    assert r["read_crl_configuration (after set)"]["data"]["expiry"] == "48h"
    assert r["rotate_crl"]["data"]["success"] is True
    assert r["tidy"].status_code == 202
    assert isinstance(r["read_issuer (deleted)"], hvac.exceptions.InternalServerError)
    assert isinstance(r["read_role (deleted)"], hvac.exceptions.InvalidPath)
    assert r["read_ca_certificate (after delete_root)"] == ""


def test_hvac_pki_methods_match_builtin(bao: BaoServer, mounts) -> None:
    imported_ca = _self_signed_ca("hvac Imported CA")
    other_root = _self_signed_ca("hvac Other Root")
    ours = _run(bao, mounts.ours, imported_ca, other_root)
    ref = _run(bao, mounts.ref, imported_ca, other_root)
    for (step, mine), (_, theirs) in zip(ours.steps, ref.steps, strict=True):
        assert mine == theirs, f"hvac {step}: ours {mine} != built-in {theirs}"
    _check_values(ref)
    _check_values(ours)


@pytest.mark.parametrize("strict", [False, True])
def test_hvac_list_verbs(bao: BaoServer, mounts, strict: bool) -> None:
    """hvac lists with the LIST verb, or `GET ?list=true` when `strict_http` is set."""
    for mount in (mounts.ours, mounts.ref):
        client = hvac.Client(url=bao.addr, token=bao.token, strict_http=strict)
        client.secrets.pki.create_or_update_role("r1", extra_params={"allow_any_name": True}, mount_point=mount)
        assert client.secrets.pki.list_roles(mount_point=mount)["data"]["keys"] == ["r1"]
