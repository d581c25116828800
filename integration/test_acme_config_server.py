"""config/acme, eab/ and new-eab on our mount next to the built-in's, through a real server."""
from __future__ import annotations

import pytest

BUILTIN_KEYS = ("enabled", "allowed_issuers", "allowed_roles", "allow_role_ext_key_usage",
                "default_directory_policy", "dns_resolver", "eab_policy")


def _data(bao, method, path, **kw):
    resp = bao.http(method, path, **kw)
    assert resp.status_code == 200, (path, resp.status_code, resp.text)
    return resp.json()["data"]


def test_config_acme_reads_help_and_writes_like_the_builtin(bao, mounts):
    ours, ref = mounts.ours, mounts.ref
    a, b = _data(bao, "GET", f"{ours}/config/acme"), _data(bao, "GET", f"{ref}/config/acme")
    assert {k: a[k] for k in BUILTIN_KEYS} == {k: b[k] for k in BUILTIN_KEYS}
    # The web UI loads this before every PKI page.
    for mount in (ours, ref):
        help_resp = bao.http("GET", f"{mount}/config/acme", params={"help": "1"})
        assert help_resp.status_code == 200, help_resp.text
        props = next(iter(help_resp.json()["openapi"]["paths"].values()))
        assert "post" in props and "get" in props
    for mount in (ours, ref):
        refused = bao.http("POST", f"{mount}/config/acme", json={"enabled": True})
        assert refused.status_code == 500, refused.text
        assert "requires local cluster 'path'" in refused.text
    for mount in (ours, ref):
        base = f"{bao.addr}/v1/{mount}"
        assert bao.http("POST", f"{mount}/config/cluster", json={"path": base, "aia_path": base}).status_code \
            in (200, 204)
        bad = bao.http("POST", f"{mount}/config/acme", json={"eab_policy": "sometimes"})
        assert bad.status_code == 500 and "invalid eab policy name" in bad.text
    a = _data(bao, "POST", f"{ours}/config/acme", json={"enabled": True, "eab_policy": "new-account-required"})
    b = _data(bao, "POST", f"{ref}/config/acme", json={"enabled": True, "eab_policy": "new-account-required"})
    assert {k: a[k] for k in BUILTIN_KEYS} == {k: b[k] for k in BUILTIN_KEYS}


def test_eab_keys_like_the_builtin(bao, mounts):
    shapes = {}
    for mount in (mounts.ours, mounts.ref):
        created = _data(bao, "POST", f"{mount}/roles/web/acme/new-eab")
        listed = bao.http("LIST", f"{mount}/eab")
        assert listed.status_code == 200, listed.text
        info = listed.json()["data"]["key_info"][created["id"]]
        gone = bao.http("DELETE", f"{mount}/eab/{created['id']}")
        again = bao.http("DELETE", f"{mount}/eab/{created['id']}")
        shapes[mount] = (sorted(created), created["key"][:12], created["acme_directory"], sorted(info),
                         info["acme_directory"], gone.status_code, again.status_code,
                         [w.replace(created["id"], "<id>") for w in again.json().get("warnings") or []])
    assert shapes[mounts.ours] == shapes[mounts.ref]


@pytest.mark.parametrize("which", ["ours", "ref"])
def test_unauthenticated_new_eab_is_refused(bao, mounts, which):
    import requests
    mount = getattr(mounts, which)
    resp = requests.post(f"{bao.addr}/v1/{mount}/acme/new-eab", json={}, timeout=10)
    assert resp.status_code == 403, resp.text
