"""The plugin link as a user sees it: help, OpenAPI, crashes, several mounts, running the binary by hand."""
from __future__ import annotations

import os
import signal
import subprocess
import time

from integration.harness import BaoServer, unique_name


def _wait_for(predicate, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


def test_path_help_prints_our_help(bao: BaoServer, mounts) -> None:
    out = bao.cli("path-help", f"{mounts.ours}/issue/x").stdout
    assert "Matching Route" in out and "common_name" in out


def test_openapi_lists_our_paths(bao: BaoServer, mounts) -> None:
    doc = bao.http("GET", "sys/internal/specs/openapi").json()
    ours = [p for p in doc["paths"] if p.startswith(f"/{mounts.ours}/")]
    for expected in ("issue/{role}", "roles/{name}", "ca/pem", "root/generate/{exported}"):
        assert f"/{mounts.ours}/{expected}" in ours, expected
    assert doc["paths"][f"/{mounts.ours}/ca/pem"].get("x-vault-unauthenticated") is True


def test_kill_9_then_next_request_succeeds_and_data_survives(bao: BaoServer, mounts) -> None:
    m = mounts.ours
    bao.cli("write", f"{m}/root/generate/internal", "common_name=crash.example.com", "key_type=ec")
    bao.cli("write", f"{m}/roles/r", "allow_any_name=true", "key_type=ec", "ttl=1h")
    serial = bao.http("POST", f"{m}/issue/r", json={"common_name": "a.example.com"}).json()["data"]["serial_number"]
    # An RSA key starts the key-generation pool: its processes must not keep the server from seeing the exit.
    bao.cli("write", f"{m}/roles/rsa", "allow_any_name=true", "key_type=rsa", "ttl=1h")
    assert bao.http("POST", f"{m}/issue/rsa", json={"common_name": "b.example.com"}).status_code == 200
    pids = bao.plugin_pids()
    assert pids
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    assert _wait_for(lambda: not set(pids) & set(bao.plugin_pids()))
    # The server relaunches a plugin once its process monitor has seen the exit; a request racing that
    # (measured: under 50 ms after the process is reaped on an idle machine, longer under load) gets one
    # 500 from the server itself, whatever the plugin.
    time.sleep(1.0)
    again = bao.http("GET", f"{m}/cert/{serial}", timeout=30)
    assert again.status_code == 200, again.text
    assert "BEGIN CERTIFICATE" in again.json()["data"]["certificate"]


def test_two_mounts_share_one_process(bao: BaoServer) -> None:
    a, b = bao.enable_plugin_mount(unique_name("pki")), bao.enable_plugin_mount(unique_name("pki_int"))
    try:
        for m in (a, b):
            assert bao.http("LIST", f"{m}/roles").status_code == 404   # reached the plugin, no roles yet
        launcher = str(bao.launcher_path)
        procs = subprocess.run(["ps", "-ww", "-eo", "pid,args"], capture_output=True, text=True).stdout
        assert len([line for line in procs.splitlines() if launcher in line]) == 1, procs
    finally:
        bao.disable_mount(a)
        bao.disable_mount(b)


def test_running_the_binary_by_hand_explains_itself(bao: BaoServer) -> None:
    env = {k: v for k, v in os.environ.items() if k != "VAULT_BACKEND_PLUGIN"}
    proc = subprocess.run([str(bao.launcher_path)], capture_output=True, text=True, env=env, timeout=30)
    assert proc.returncode != 0
    assert "plugin register" in proc.stderr


def test_a_tune_binds_the_very_next_issue(bao: BaoServer, mounts) -> None:
    """The mount's max lease TTL is a security limit: no caching may let a request slip past a fresh tune."""
    m = mounts.ours
    bao.tune_max_ttl(m, "87600h")
    bao.cli("write", f"{m}/root/generate/internal", "common_name=tune.example.com", "key_type=ec", "ttl=87600h")
    # No role max_ttl: a role's max_ttl replaces the mount's limit (in the built-in engine too).
    bao.cli("write", f"{m}/roles/r", "allow_any_name=true", "key_type=ec")
    for limit_hours in (5, 2, 7):
        bao.tune_max_ttl(m, f"{limit_hours}h")
        before = time.time()
        resp = bao.http("POST", f"{m}/issue/r", json={"common_name": "a.example.com", "ttl": "100h"})
        assert resp.status_code == 200, resp.text
        lifetime = resp.json()["data"]["expiration"] - before
        assert abs(lifetime - limit_hours * 3600) < 5, (limit_hours, lifetime)
