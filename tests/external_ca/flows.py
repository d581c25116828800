"""Shared steps of the end-to-end tests: create account/role, run an order to completion via challtestsrv."""
from __future__ import annotations

import asyncio
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from .harness import Client
from .pebble import Pebble

TERMINAL = ("completed", "error", "expired", "revoked")


def csr_pem(names: list[str]) -> str:
    """A PEM CSR on a fresh P-256 key: the first name as CN, all of them as DNS SANs."""
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
           .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False)
           .sign(key, hashes.SHA256()))
    return csr.public_bytes(serialization.Encoding.PEM).decode()


async def account(c: Client, pebble: Pebble, name: str = "pb", directory_url: str | None = None,
                  **extra: Any) -> dict[str, Any]:
    st, body = await c.write(f"config/acme-account/{name}", {
        "directory_url": directory_url or pebble.directory_url, "email_contacts": "ops@example.com",
        "trusted_ca": pebble.tls_ca_pem, **extra})
    assert st == 200, body
    return body["data"]


async def role(c: Client, name: str, **fields: Any) -> dict[str, Any]:
    st, body = await c.write(f"role/{name}", {"acme_account_name": "pb", **fields})
    assert st == 200, body
    return body["data"]


async def new_order(c: Client, role_name: str, **fields: Any) -> str:
    st, body = await c.write(f"role/{role_name}/new-order", fields)
    assert st == 200, body
    return body["data"]["order_id"]


async def status(c: Client, role_name: str, oid: str) -> dict[str, Any]:
    st, body = await c.read(f"role/{role_name}/order/{oid}/status")
    assert st == 200, body
    return body["data"]


async def wait_for(c: Client, role_name: str, oid: str, wanted: tuple[str, ...], polls: int = 60) -> dict[str, Any]:
    for _ in range(polls):
        data = await status(c, role_name, oid)
        if data["order_status"] in wanted or data["order_status"] in TERMINAL:
            return data
        await asyncio.sleep(0.25)
    return data


async def fulfil(c: Client, pebble: Pebble, role_name: str, oid: str, ctype: str) -> None:
    data = await wait_for(c, role_name, oid, ("awaiting-challenge-fulfillment",))
    if data["order_status"] != "awaiting-challenge-fulfillment":
        return   # the CA reused valid authorizations: nothing to prove
    for ident, challs in data["challenges"].items():
        if all(ch["challenge_status"] == "valid" for ch in challs):
            continue
        st, body = await c.read(f"role/{role_name}/order/{oid}/challenge",
                                {"identifier": ident, "challenge_type": ctype})
        assert st == 200, body
        ch = body["data"]
        if ctype == "http-01":
            pebble.add_http01(ch["challenge_token"], ch["challenge_auth"])
        else:
            pebble.add_txt(ch["dns_record_name"], ch["dns_record_value"])
        st, body = await c.write(f"role/{role_name}/order/{oid}/fulfilled-challenge",
                                 {"identifier": ident, "challenge_type": ctype})
        assert st == 204, body


async def complete(c: Client, pebble: Pebble, role_name: str, oid: str, ctype: str = "http-01") -> dict[str, Any]:
    await fulfil(c, pebble, role_name, oid, ctype)
    data = await wait_for(c, role_name, oid, ("completed",))
    assert data["order_status"] == "completed", data
    st, body = await c.read(f"role/{role_name}/order/{oid}/fetch-cert")
    assert st == 200, body
    return body["data"]


def assert_chains_to_root(cert_data: dict[str, Any], root_pem: str) -> x509.Certificate:
    leaf = x509.load_pem_x509_certificate(cert_data["certificate"].encode())
    chain = [x509.load_pem_x509_certificate(p.encode()) for p in cert_data["ca_chain"]]
    root = x509.load_pem_x509_certificate(root_pem.encode())
    issued = leaf
    for parent in chain + [root]:
        if issued.issuer == issued.subject:
            break
        issued.verify_directly_issued_by(parent)
        issued = parent
    assert issued.subject == root.subject
    return leaf


def san_values(cert: x509.Certificate) -> set[str]:
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return {str(v) for v in san.get_values_for_type(x509.DNSName)} | \
        {str(v) for v in san.get_values_for_type(x509.IPAddress)}
