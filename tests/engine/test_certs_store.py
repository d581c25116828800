"""certs/ listing, cert/:serial in its forms, raw reads, and certificate metadata."""
from __future__ import annotations

import base64
import json

import pytest
from cryptography import x509

from test_issue_fixtures import load_cert, make_csr, new_env
from plugin.framework import Operation


@pytest.fixture
def env():
    e = new_env()
    e.add_issuer("ec")
    e.ok("roles/r", {"allow_any_name": True, "key_type": "ec"})
    e.ok("roles/nostore", {"allow_any_name": True, "key_type": "ec", "no_store": True})
    e.ok("roles/nometa", {"allow_any_name": True, "key_type": "ec", "no_store_metadata": True})
    return e


def test_read_by_colon_and_hyphen_forms_any_case(env):
    data = env.ok("issue/r", {"common_name": "a.example.com"}).data
    serial = data["serial_number"]
    for form in (serial, serial.replace(":", "-"), serial.upper()):
        got = env.ok(f"cert/{form}", op=Operation.READ).data
        assert got == {"certificate": data["certificate"], "revocation_time": 0, "revocation_time_rfc3339": ""}
    assert env.call(Operation.READ, "cert/" + serial.replace(":", "")).response is None   # bare hex: not found
    assert env.call(Operation.READ, "cert/01:02").response is None


def test_storage_key_and_value(env):
    data = env.ok("issue/r", {"common_name": "a.example.com"}).data
    der = env.storage.entries["certs/" + data["serial_number"].replace(":", "-")].value
    assert x509.load_der_x509_certificate(der) == load_cert(data["certificate"])


def test_raw_paths(env):
    data = env.ok("issue/r", {"common_name": "a.example.com"}).data
    serial = data["serial_number"]
    raw = env.ok(f"cert/{serial}/raw", op=Operation.READ).data
    assert raw["http_content_type"] == "application/pkix-cert" and raw["http_status_code"] == 200
    assert x509.load_der_x509_certificate(raw["http_raw_body"]) == load_cert(data["certificate"])
    pem = env.ok(f"cert/{serial}/raw/pem", op=Operation.READ).data
    assert pem["http_content_type"] == "application/pem-certificate-chain"
    assert pem["http_raw_body"].decode() == data["certificate"]
    missing = env.ok("cert/01:02/raw", op=Operation.READ).data
    assert missing["http_status_code"] == 204 and missing["http_raw_body"] == b""


def test_list_in_colon_form_and_no_store(env):
    assert env.call(Operation.LIST, "certs/").response is None
    stored = {env.ok("issue/r", {"common_name": "a.example.com"}).data["serial_number"] for _ in range(3)}
    env.ok("issue/nostore", {"common_name": "a.example.com"})
    env.ok("sign/nostore", {"csr": make_csr()})
    listed = env.ok("certs/", op=Operation.LIST).data["keys"]
    assert set(listed) == stored and listed == sorted(listed)
    page = env.ok("certs/", {"after": listed[0], "limit": 1}, op=Operation.LIST).data["keys"]
    assert page == [listed[1]]


def test_signed_and_verbatim_certs_are_stored(env):
    s1 = env.ok("sign/r", {"csr": make_csr()}).data["serial_number"]
    s2 = env.ok("sign-verbatim", {"csr": make_csr()}).data["serial_number"]
    assert set(env.ok("certs/", op=Operation.LIST).data["keys"]) == {s1, s2}


def test_revocation_fields_from_revoked_record(env):
    serial = env.ok("issue/r", {"common_name": "a.example.com"}).data["serial_number"]
    import asyncio
    asyncio.run(env.storage.put("revoked/" + serial.replace(":", "-"), json.dumps(
        {"revocation_time": 1700000000, "revocation_time_utc": "2023-11-14T22:13:20Z", "issuer_id": "iss-1"}).encode()))
    got = env.ok(f"cert/{serial}", op=Operation.READ).data
    assert (got["revocation_time"], got["revocation_time_rfc3339"], got["issuer_id"]) == (
        1700000000, "2023-11-14T22:13:20Z", "iss-1")


META = base64.b64encode(json.dumps({"application": "my-app", "contact": {"email": "team-a@example.com"}}).encode()
                        ).decode()


@pytest.mark.parametrize("role,path", [("r", "issue"), ("nostore", "issue"), ("r", "sign"), ("nostore", "sign")])
def test_metadata_stored_even_with_no_store(env, role, path):
    body = {"common_name": "a.example.com", "cert_metadata": META}
    if path == "sign":
        body["csr"] = make_csr(cn="a.example.com")
    data = env.ok(f"{path}/{role}", body).data
    serial = data["serial_number"]
    meta = env.ok(f"cert-metadata/{serial.replace(':', '-')}", op=Operation.READ).data
    assert meta["cert_metadata"] == META and meta["serial_number"] == serial and meta["role"] == role
    assert meta["issuer_id"] and isinstance(meta["expiration"], str)
    assert env.ok("cert-metadata/", op=Operation.LIST).data["keys"] == [serial]


def test_no_store_metadata_and_absent_metadata(env):
    serial = env.ok("issue/nometa", {"common_name": "a.example.com", "cert_metadata": META}).data["serial_number"]
    assert env.call(Operation.READ, f"cert-metadata/{serial}").response is None
    env.ok("issue/r", {"common_name": "a.example.com"})
    assert env.call(Operation.LIST, "cert-metadata/").response is None


def test_issue_with_metadata_writes_cert_and_metadata_only(env):
    before = set(env.storage.entries)
    env.ok("issue/r", {"common_name": "a.example.com", "cert_metadata": META})
    added = sorted(k.split("/")[0] for k in set(env.storage.entries) - before)
    assert added == ["cert-metadata", "certs"]
