"""config/acme, eab/ and new-eab through the backend, in-process."""
from __future__ import annotations

import base64

from tests.engine.ca_helpers import Mount

DEFAULTS = {"enabled": False, "allowed_issuers": ["*"], "allowed_roles": ["*"], "allow_role_ext_key_usage": False,
            "default_directory_policy": "sign-verbatim", "dns_resolver": "", "eab_policy": "not-required"}


def test_defaults_match_the_builtin_read():
    data = Mount().ok("read", "config/acme")
    assert {k: data[k] for k in DEFAULTS} == DEFAULTS
    assert data["max_ttl"] == 90 * 86400


def test_enabling_needs_the_cluster_path_and_changes_nothing_without_it():
    m = Mount()
    reply = m.write("config/acme", enabled=True)
    assert reply.status == 500
    assert "requires local cluster 'path'" in reply.error
    assert m.ok("read", "config/acme")["enabled"] is False
    m.ok("write", "config/cluster", path="https://bao.example:8200/v1/pki")
    assert m.ok("write", "config/acme", enabled=True)["enabled"] is True


def test_bad_values_are_refused_with_the_builtin_texts():
    m = Mount()
    assert "invalid eab policy name" in m.write("config/acme", eab_policy="sometimes").error
    assert "not a valid Default Directory Policy" in m.write("config/acme", default_directory_policy="x").error
    assert "no role specified" in m.write("config/acme", default_directory_policy="role:").error
    assert "role does not exist" in m.write("config/acme", default_directory_policy="role:nope").error
    assert "likely got hostname" in m.write("config/acme", dns_resolver="dns.example:53").error
    assert "missing port" in m.write("config/acme", dns_resolver="10.0.0.1").error
    assert "allowed_role nope is not a valid acme role" in m.write("config/acme", allowed_roles="nope").error
    m.ok("write", "roles/nostore", allow_any_name=True, no_store=True)
    assert "NoStore" in m.write("config/acme", allowed_roles="nostore").error
    m.ok("write", "roles/web", allow_any_name=True)
    m.ok("write", "roles/other", allow_any_name=True)
    assert "was not specified in allowed_roles" in m.write(
        "config/acme", allowed_roles="web", default_directory_policy="role:other").error
    assert {k: m.ok("read", "config/acme")[k] for k in DEFAULTS} == DEFAULTS
    data = m.ok("write", "config/acme", allowed_roles="web", default_directory_policy="role:web",
                dns_resolver="[::1]:5353")
    assert data["allowed_roles"] == ["web"] and data["dns_resolver"] == "[::1]:5353"


def test_public_acme_env_needs_always_required_eab(monkeypatch):
    m = Mount()
    m.ok("write", "config/cluster", path="https://bao.example:8200/v1/pki")
    monkeypatch.setenv("BAO_DISABLE_PUBLIC_ACME", "true")
    reply = m.write("config/acme", enabled=True)
    assert reply.status == 400 and "always-required" in reply.error
    assert m.ok("write", "config/acme", enabled=True, eab_policy="always-required")["enabled"] is True


def test_new_eab_list_and_delete():
    m = Mount()
    created = m.ok("write", "roles/web/acme/new-eab")
    assert created["key_type"] == "hs" and created["acme_directory"] == "roles/web/acme/directory"
    assert created["key"].startswith("vault-eab-0-")
    assert len(base64.urlsafe_b64decode(created["key"] + "==")) == 9 + 32
    other = m.ok("write", "acme/new-eab")
    listed = m.list("eab/")
    assert set(listed.data["keys"]) == {created["id"], other["id"]}
    info = listed.data["key_info"][created["id"]]
    assert info == {"key_type": "hs", "acme_directory": "roles/web/acme/directory",
                    "created_on": created["created_on"]}
    assert "key" not in info
    assert m.delete(f"eab/{created['id']}").warnings == []
    assert m.delete(f"eab/{created['id']}").warnings == [f"No key id found with id: {created['id']}"]
    assert m.list("eab/").data["keys"] == [other["id"]]
