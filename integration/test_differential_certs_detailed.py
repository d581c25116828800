"""Differential: LIST certs/detailed on our mount and the built-in one.

The same certificates (signed outside the server by one CA both mounts import, stored by revoking them by PEM)
must give byte-identical `key_info` on both mounts: the issuer in Go's rendering (fixed attribute order,
multi-valued RDNs, hex for attributes Go has no name for), Go's key sizes, at most five DNS names, null when
there are none. Certificates each mount issues itself are compared up to their serials and times.
"""
from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, mldsa, rsa
from cryptography.x509.oid import NameOID

from integration.conftest import Mounts
from integration.differential import call, must, self_signed_ca
from integration.harness import BaoServer

UID = x509.ObjectIdentifier("0.9.2342.19200300.100.1.1")
PRIVATE_OID = x509.ObjectIdentifier("1.3.6.1.4.1.55555.1")


def _attr(oid: x509.ObjectIdentifier, value: str) -> x509.NameAttribute:
    return x509.NameAttribute(oid, value)


# An issuer name that exercises every rule of Go's rendering.
CA_NAME = x509.Name([
    x509.RelativeDistinguishedName([_attr(NameOID.COMMON_NAME, " #Lead, a+b;c ")]),
    x509.RelativeDistinguishedName([_attr(NameOID.ORGANIZATIONAL_UNIT_NAME, "Unit B")]),
    x509.RelativeDistinguishedName([_attr(NameOID.ORGANIZATIONAL_UNIT_NAME, "Unit\"A\"")]),
    x509.RelativeDistinguishedName([_attr(NameOID.COUNTRY_NAME, "DE")]),
    x509.RelativeDistinguishedName([_attr(NameOID.ORGANIZATION_NAME, "Org <x>"),
                                    _attr(NameOID.LOCALITY_NAME, "Köln")]),
    x509.RelativeDistinguishedName([_attr(NameOID.DOMAIN_COMPONENT, "example")]),
    x509.RelativeDistinguishedName([_attr(NameOID.EMAIL_ADDRESS, "ca@example.com")]),
    x509.RelativeDistinguishedName([_attr(UID, "#ca-1,+x ")]),
    x509.RelativeDistinguishedName([x509.NameAttribute(NameOID.X500_UNIQUE_IDENTIFIER, b"\x01\x02",
                                                       x509.name._ASN1Type.BitString)]),
    x509.RelativeDistinguishedName([_attr(PRIVATE_OID, "ÿ" * 70)]),    # a long-form DER length
    x509.RelativeDistinguishedName([_attr(NameOID.SERIAL_NUMBER, "SN-1")]),
    x509.RelativeDistinguishedName([_attr(NameOID.POSTAL_CODE, "50667"),
                                    _attr(NameOID.STREET_ADDRESS, "Main St 1")]),
    x509.RelativeDistinguishedName([_attr(NameOID.STATE_OR_PROVINCE_NAME, "NRW")]),
    x509.RelativeDistinguishedName([_attr(NameOID.COMMON_NAME, "Second CN wins")]),
])


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(microsecond=0)


def _ca() -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    return key, self_signed_ca(key, CA_NAME)


def _leaf_keys() -> dict[str, Any]:
    return {
        "rsa-2048": rsa.generate_private_key(65537, 2048).public_key(),
        "rsa-2047": rsa.generate_private_key(65537, 2047).public_key(),   # Go rounds to whole bytes
        "ec-p384": ec.generate_private_key(ec.SECP384R1()).public_key(),
        "ec-p521": ec.generate_private_key(ec.SECP521R1()).public_key(),
        "ed25519": ed25519.Ed25519PrivateKey.generate().public_key(),
        "ed448": ed448.Ed448PrivateKey.generate().public_key(),          # a kind the built-in calls unknown
        "mldsa-44": mldsa.MLDSA44PrivateKey.generate().public_key(),
        "mldsa-65": mldsa.MLDSA65PrivateKey.generate().public_key(),
        "mldsa-87": mldsa.MLDSA87PrivateKey.generate().public_key(),
    }


def _leaf(ca_key: Any, ca: x509.Certificate, public_key: Any, subject: x509.Name,
          sans: list[x509.GeneralName] | None) -> x509.Certificate:
    builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(ca.subject).public_key(public_key)
               .serial_number(x509.random_serial_number()).not_valid_before(_now() - dt.timedelta(minutes=1))
               .not_valid_after(_now() + dt.timedelta(days=2))
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                              critical=False))
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return builder.sign(ca_key, hashes.SHA256())


def _byoc_certificates(ca_key: Any, ca: x509.Certificate) -> list[x509.Certificate]:
    many_dns = [x509.DNSName(f"n{i}.example.com") for i in range(7)]
    certs = []
    for label, public_key in _leaf_keys().items():
        subject = x509.Name([_attr(NameOID.COMMON_NAME, f"{label}.example.com")])
        certs.append(_leaf(ca_key, ca, public_key, subject, [x509.DNSName(f"{label}.example.com")]))
    spare = ec.generate_private_key(ec.SECP256R1()).public_key()
    certs += [
        _leaf(ca_key, ca, spare, x509.Name([_attr(NameOID.COMMON_NAME, "seven.example.com")]), many_dns),
        _leaf(ca_key, ca, spare, x509.Name([]), [x509.RFC822Name("only@example.com")]),
        _leaf(ca_key, ca, spare, x509.Name([_attr(NameOID.COMMON_NAME, "no sans")]), None),
        _leaf(ca_key, ca, spare, x509.Name([_attr(NameOID.ORGANIZATION_NAME, "No CN")]),
              [x509.IPAddress(__import__("ipaddress").ip_address("10.1.2.3"))]),
    ]
    return certs


def _list_detailed(bao: BaoServer, mount: str, query: str = "") -> tuple[int, dict[str, Any]]:
    resp = bao.http("LIST", f"{mount}/certs/detailed{query}")
    return resp.status_code, (resp.json() if resp.content else {})


def test_same_certificates_give_identical_details(bao: BaoServer, mounts: Mounts) -> None:
    ca_key, ca = _ca()
    bundle = ca.public_bytes(serialization.Encoding.PEM).decode() + ca_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()
    certs = _byoc_certificates(ca_key, ca)
    for mount in (mounts.ours, mounts.ref):
        status, body = _list_detailed(bao, mount)
        assert status == 404, f"{mount}: an empty store lists nothing: {status} {body}"
        must(call(bao, "POST", f"{mount}/config/ca", {"pem_bundle": bundle}), f"{mount} import CA")
        for cert in certs:
            pem = cert.public_bytes(serialization.Encoding.PEM).decode()
            must(call(bao, "POST", f"{mount}/revoke", {"certificate": pem}), f"{mount} revoke by PEM")

    ours_status, ours = _list_detailed(bao, mounts.ours)
    ref_status, ref = _list_detailed(bao, mounts.ref)
    assert (ours_status, ref_status) == (200, 200), (ours, ref)
    assert len(ref["data"]["keys"]) == len(certs)
    assert ours["data"] == ref["data"]
    # Spot checks that the built-in really exercised the rules the comparison relies on.
    info = ref["data"]["key_info"]
    issuer = next(iter(info.values()))["issuer"]
    assert issuer.startswith("SERIALNUMBER=SN-1,CN=Second CN wins,OU=Unit B+OU=Unit\\\"A\\\",O=Org \\<x\\>")
    assert r"0.9.2342.19200300.100.1.1=\#ca-1\,\+x\ ," in issuer and "2.5.4.45=#03020102" in issuer
    assert {(e["key_type"], e["key_bits"]) for e in info.values()} >= {("rsa", 2048), ("mldsa", 65), ("unknown", 0)}
    assert any(e["dns_names"] is None for e in info.values())
    assert max(len(e["dns_names"] or []) for e in info.values()) == 5

    # Paging: after/limit select the same keys on both mounts.
    keys = ref["data"]["keys"]
    for query in ("?limit=3", f"?after={keys[2]}&limit=2", f"?after={keys[-1]}"):
        ours_page = _list_detailed(bao, mounts.ours, query)
        ref_page = _list_detailed(bao, mounts.ref, query)
        assert ours_page[0] == ref_page[0], query
        assert ours_page[1].get("data") == ref_page[1].get("data"), query


def _normalized(entries: dict[str, Any]) -> list[dict[str, Any]]:
    """key_info entries without the per-mount values (times, and issuer names carry no serials here)."""
    out = [{k: v for k, v in e.items() if k not in ("not_after", "not_before")} for e in entries.values()]
    return sorted(out, key=lambda e: (e["common_name"], e["key_type"], e["key_bits"]))


@pytest.mark.parametrize("root_type", [{"key_type": "ec", "key_bits": 384}, {"key_type": "rsa", "key_bits": 3072},
                                       {"key_type": "ed25519"}], ids=lambda p: p["key_type"])
def test_issued_certificates_give_the_same_details(bao: BaoServer, mounts: Mounts, root_type: dict[str, Any]) -> None:
    role = {"allow_any_name": True, "key_type": "any", "ou": "Ops,Dev", "organization": "Example",
            "country": "FR", "ttl": "1h"}
    requests = [
        {"common_name": "a.example.com", "alt_names": ",".join(f"s{i}.example.com" for i in range(6)),
         "key_type": "ec", "key_bits": 521},
        {"common_name": "b.example.com", "ip_sans": "10.0.0.1", "key_type": "rsa", "key_bits": 2048},
        {"common_name": "c.example.com", "key_type": "ed25519", "exclude_cn_from_sans": True},
    ]
    details = {}
    for mount in (mounts.ours, mounts.ref):
        must(call(bao, "POST", f"{mount}/root/generate/internal",
                  {"common_name": "Details Root", "organization": "Example", "ou": "PKI", **root_type}), "root")
        must(call(bao, "POST", f"{mount}/roles/r", role), "role")
        for body in requests:
            must(call(bao, "POST", f"{mount}/issue/r", body), f"{mount} issue {body['common_name']}")
        status, listed = _list_detailed(bao, mount)
        assert status == 200, listed
        details[mount] = listed["data"]["key_info"]
        for serial, entry in details[mount].items():
            pem = must(call(bao, "GET", f"{mount}/cert/{serial}"), "read cert")["certificate"]
            cert = x509.load_pem_x509_certificate(pem.encode())
            assert entry["not_after"] == cert.not_valid_after_utc.strftime("%Y-%m-%dT%H:%M:%SZ")
            assert entry["not_before"] == cert.not_valid_before_utc.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert _normalized(details[mounts.ours]) == _normalized(details[mounts.ref])
