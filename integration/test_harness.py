"""Tests of the integration harness itself (and a first look at our mount)."""

from __future__ import annotations

import os
import stat

from integration.harness import MOUNT_AS, PLUGIN_NAME, PLUGIN_VERSION, BaoServer


def test_server_is_up_and_unsealed(bao: BaoServer) -> None:
    r = bao.http("GET", "sys/health", token=False)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["initialized"] is True
    assert body["sealed"] is False
    assert bao.addr.startswith("http://127.0.0.1:")


def test_cli_reaches_the_server(bao: BaoServer) -> None:
    out = bao.cli("status", "-format=json").stdout
    assert '"sealed": false' in out
    # The token the CLI uses is the root token.
    assert "root" in bao.cli("token", "lookup", "-format=json").stdout


def test_plugin_is_registered_by_sha256(bao: BaoServer) -> None:
    # The plugin reports its version at registration, so even the unversioned command records v0.1.0.
    r = bao.http("GET", f"sys/plugins/catalog/secret/{PLUGIN_NAME}", params={"version": PLUGIN_VERSION})
    assert r.status_code == 200, r.text
    data = r.json()["data"]
    assert data["version"] == PLUGIN_VERSION
    assert data["command"] == PLUGIN_NAME
    assert data["sha256"] == bao.launcher_sha256
    mode = os.stat(bao.launcher_path).st_mode
    assert mode & stat.S_IXUSR
    first = bao.launcher_path.read_text().splitlines()[0]
    assert first.startswith("#!/") and not first.startswith("#!/usr/bin/env")


def test_builtin_mount_issues_a_root(bao: BaoServer) -> None:
    mounts = bao.http("GET", "sys/mounts").json()["data"]
    assert mounts["ref/"]["type"] == "pki"
    bao.tune_max_ttl("ref", "87600h")
    r = bao.cli("write", "-format=json", "ref/root/generate/internal",
                "common_name=harness.example.com", "ttl=8760h")
    assert "BEGIN CERTIFICATE" in r.stdout
    pem = bao.http("GET", "ref/ca/pem", token=False)
    assert pem.status_code == 200
    assert pem.text.startswith("-----BEGIN CERTIFICATE-----")


def test_cli_check_false_reports_failure(bao: BaoServer) -> None:
    r = bao.cli("read", "ref/roles/does-not-exist", check=False)
    assert r.returncode != 0


def test_builtin_mounts_come_and_go(bao: BaoServer) -> None:
    from integration.harness import unique_name

    path = bao.enable_builtin_mount(unique_name("tmp"))
    assert f"{path}/" in bao.http("GET", "sys/mounts").json()["data"]
    bao.disable_mount(path)
    assert f"{path}/" not in bao.http("GET", "sys/mounts").json()["data"]


def test_our_mount_answers_role_reads(bao: BaoServer) -> None:
    assert bao.plugin_mount_error is None, bao.plugin_mount_error
    # Unknown role: the built-in engine answers 404 with no data.
    r = bao.http("GET", "pki/roles/x")
    assert r.status_code == 404, r.text
    assert r.json() == bao.http("GET", "ref/roles/x").json()
    # A role written and read back through the CLI.
    bao.cli("write", "pki/roles/x", "allowed_domains=example.com", "allow_subdomains=true")
    out = bao.cli("read", "-format=json", "pki/roles/x").stdout
    assert "example.com" in out
    assert bao.plugin_pids(), "no plugin process found for our mount"


def test_mounts_fixture_gives_fresh_pairs(bao: BaoServer, mounts) -> None:
    assert mounts.ours != mounts.ref
    data = bao.http("GET", "sys/mounts").json()["data"]
    assert data[f"{mounts.ref}/"]["type"] == "pki"
    assert data[f"{mounts.ours}/"]["type"] == MOUNT_AS


def test_vault_docker_fixture(vault_docker) -> None:
    r = vault_docker.http("GET", "sys/health")
    assert r.status_code == 200
    path = vault_docker.enable_plugin_mount("pki")
    r = vault_docker.http("GET", f"{path}/roles/x")
    assert r.status_code == 404, r.text
