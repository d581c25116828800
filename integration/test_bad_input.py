"""Bad input gets a Vault-style 4xx and leaves the mount's storage exactly as it was."""
from __future__ import annotations

import pytest

from integration.harness import BaoServer, mount_storage_keys

CASES = [
    ("POST", "roles/web", {"ttl": "abc"}, 400),
    ("POST", "root/generate/internal", {"common_name": "x.example.com", "key_bits": "x"}, 400),
    ("POST", "issue/no-such-role", {"common_name": "a.example.com"}, 400),
    ("GET", "no/such/path", None, 404),
    ("DELETE", "issue/web", None, 405),
    ("POST", "issue/web", {"common_name": "evil.example.org"}, 400),
]


@pytest.mark.parametrize("method,path,body,status", CASES, ids=[f"{c[0]} {c[1]}" for c in CASES])
def test_bad_input_is_4xx_and_changes_nothing(bao: BaoServer, mounts, method, path, body, status) -> None:
    m = mounts.ours
    bao.cli("write", f"{m}/root/generate/internal", "common_name=bad.example.com", "key_type=ec")
    bao.cli("write", f"{m}/roles/web", "allowed_domains=example.com", "allow_subdomains=true")
    before = mount_storage_keys(bao, m)
    resp = bao.http(method, f"{m}/{path}", json=body)
    assert resp.status_code == status, resp.text
    errors = resp.json()["errors"]
    assert errors and all(isinstance(e, str) for e in errors)
    assert mount_storage_keys(bao, m) == before
