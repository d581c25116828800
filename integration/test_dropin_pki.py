"""python-pki as a drop-in: registered as versioned plugin `pki` beside the built-in, so the CLI's PKI tools
(`bao pki health-check`, `bao pki list-intermediates`) and the web UI treat its mounts as PKI mounts."""
from __future__ import annotations

import json
import time
from typing import Iterator

import pytest

from integration.harness import PKI_TYPE, PLUGIN_NAME, PLUGIN_VERSION, BaoServer, dropin_server, unique_name
from integration.healthcheck import differences, health_check


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BaoServer]:
    """A server with ours registered as `python-pki` and as `pki` v0.1.0 (with the real CLI)."""
    with dropin_server(tmp_path_factory.mktemp("bao-pki")) as srv:
        yield srv


def _mount_info(srv: BaoServer, path: str) -> dict:
    return srv.http("GET", "sys/mounts").json()["data"][path.strip("/") + "/"]


def _is_ours(srv: BaoServer, path: str) -> bool:
    info = _mount_info(srv, path)
    return info["running_sha256"] == srv.launcher_sha256 and info["running_plugin_version"] == PLUGIN_VERSION


def _catalog(srv: BaoServer) -> list[tuple[str, str, bool]]:
    data = srv.http("GET", "sys/plugins/catalog").json()["data"]["detailed"]
    return sorted((e["name"], e["version"], e["builtin"]) for e in data if e["type"] == "secret"
                  and e["name"] in (PKI_TYPE, PLUGIN_NAME))


def test_versioned_registration_beside_the_builtin(server: BaoServer) -> None:
    builtin = server.builtin_pki_version()
    assert _catalog(server) == sorted([(PKI_TYPE, PLUGIN_VERSION, False), (PKI_TYPE, builtin, True),
                                       (PLUGIN_NAME, PLUGIN_VERSION, False)])
    # The version the plugin reports must be the one registered.
    refused = server.cli("plugin", "register", f"-sha256={server.launcher_sha256}", f"-command={PLUGIN_NAME}",
                         "-version=v9.9.9", "secret", PKI_TYPE, check=False)
    assert refused.returncode != 0 and f"reported version ({PLUGIN_VERSION})" in refused.stderr
    plain, pinned, ref, own = (unique_name(p) for p in ("plain", "pinned", "ref", "own"))
    server.cli("secrets", "enable", f"-path={plain}", PKI_TYPE)
    server.cli("secrets", "enable", f"-path={pinned}", f"-plugin-version={PLUGIN_VERSION}", PKI_TYPE)
    server.cli("secrets", "enable", f"-path={ref}", f"-plugin-version={builtin}", PKI_TYPE)
    server.cli("secrets", "enable", f"-path={own}", PLUGIN_NAME)
    assert _is_ours(server, plain) and _is_ours(server, pinned) and _is_ours(server, own)
    assert _mount_info(server, plain)["type"] == PKI_TYPE and _mount_info(server, own)["type"] == PLUGIN_NAME
    info = _mount_info(server, ref)
    assert info["running_plugin_version"] == builtin and not info.get("running_sha256")
    # Both engines answer in the same server: ours has cert-metadata, the built-in has not.
    for path in (plain, pinned, own, ref):
        server.http("POST", f"{path}/root/generate/internal", json={"common_name": "r.example.com",
                                                                    "key_type": "ec"}).raise_for_status()
    assert server.http("LIST", f"{plain}/cert-metadata").status_code == 404   # empty list, but a known path
    assert server.http("LIST", f"{ref}/cert-metadata").status_code in (404, 405)


def test_pinning_and_unpinning(server: BaoServer) -> None:
    """OpenBao 2.7.2 has no version pins (`sys/plugins/pins`, Vault's `plugin pin`): which `pki` a plain enable
    picks is set by what is registered. Deregistering our version falls back to the built-in for new mounts
    and leaves mounts that name our version running; registering it again restores the default."""
    if server.http("GET", "sys/plugins/pins").status_code != 404:
        pytest.fail("this server has plugin pins: test `bao plugin pin` here")
    kept = unique_name("kept")
    server.cli("secrets", "enable", f"-path={kept}", f"-plugin-version={PLUGIN_VERSION}", PKI_TYPE)
    server.cli("plugin", "deregister", f"-version={PLUGIN_VERSION}", "secret", PKI_TYPE)
    try:
        fallback = unique_name("fallback")
        server.cli("secrets", "enable", f"-path={fallback}", PKI_TYPE)
        assert _mount_info(server, fallback)["running_plugin_version"] == server.builtin_pki_version()
        assert server.http("POST", f"{kept}/root/generate/internal",
                           json={"common_name": "k.example.com", "key_type": "ec"}).status_code == 200
    finally:
        server.register_pki_with_cli()
    again = unique_name("again")
    server.cli("secrets", "enable", f"-path={again}", PKI_TYPE)
    assert _is_ours(server, again)


def _root_and_intermediate(srv: BaoServer, mount: str) -> tuple[str, str]:
    root = srv.http("POST", f"{mount}/root/generate/internal",
                    json={"common_name": "root.example.com", "key_type": "ec", "issuer_name": "root"}).json()
    csr = srv.http("POST", f"{mount}/intermediate/generate/internal",
                   json={"common_name": "int.example.com", "key_type": "ec"}).json()["data"]["csr"]
    signed = srv.http("POST", f"{mount}/root/sign-intermediate",
                      json={"csr": csr, "common_name": "int.example.com"}).json()["data"]["certificate"]
    done = srv.http("POST", f"{mount}/intermediate/set-signed", json={"certificate": signed}).json()
    return root["data"]["issuer_id"], done["data"]["imported_issuers"][0]


def test_pki_cli_tools_accept_our_mount(server: BaoServer) -> None:
    ours, ref = unique_name("ours"), unique_name("ref")
    server.enable_plugin_mount(ours, plugin=PKI_TYPE)
    server.enable_builtin_mount(ref)
    assert _is_ours(server, ours) and not _is_ours(server, ref)
    seen = {}
    for mount in (ours, ref):
        root, child = _root_and_intermediate(server, mount)
        # Without explicit children the tool walks every mount of type pki: ours is among them now.
        listed = server.cli("pki", "list-intermediates", "-format=json", f"{mount}/issuer/root", check=False)
        assert listed.returncode == 0, listed.stderr
        verdicts = json.loads(listed.stdout)
        seen[mount] = (verdicts[f"{mount}/issuer/{root}"], verdicts[f"{mount}/issuer/{child}"],
                       any(v for k, v in verdicts.items() if not k.startswith(f"{mount}/")))
    assert seen[ours][1] is True and seen[ours] == seen[ref]
    rc, findings = health_check(server, ours)
    assert rc in (0, 2, 3, 4) and "ca_validity_period" in findings   # a report, not "not a PKI mount"


# -- health-check: the built-in's findings and exit code -------------------------------------------------

def _root(srv: BaoServer, mount: str) -> None:
    srv.http("POST", f"{mount}/root/generate/internal",
             json={"common_name": "root.example.com", "key_type": "ec", "ttl": "87600h"}).raise_for_status()


def _roles_and_certs(srv: BaoServer, mount: str) -> None:
    _root(srv, mount)
    srv.http("POST", f"{mount}/roles/web", json={"allowed_domains": "example.com", "allow_subdomains": True,
                                                 "key_type": "ec", "ttl": "1h"}).raise_for_status()
    srv.http("POST", f"{mount}/roles/glob", json={"allowed_domains": "*.example.com", "allow_glob_domains": True,
                                                  "allow_wildcard_certificates": True, "allow_localhost": False,
                                                  "no_store": True, "key_type": "ec"}).raise_for_status()
    serials = [srv.http("POST", f"{mount}/issue/web", json={"common_name": f"h{i}.example.com"}).json()
               ["data"]["serial_number"] for i in range(3)]
    srv.http("POST", f"{mount}/revoke", json={"serial_number": serials[0]}).raise_for_status()


def _auto_tidy(srv: BaoServer, mount: str) -> None:
    _roles_and_certs(srv, mount)
    srv.http("POST", f"{mount}/config/auto-tidy", json={"enabled": True, "tidy_cert_store": True,
                                                       "tidy_revoked_certs": True,
                                                       "interval_duration": "1h"}).raise_for_status()
    srv.http("POST", f"{mount}/tidy", json={"tidy_cert_store": True, "tidy_revoked_certs": True,
                                           "safety_buffer": "1h"}).raise_for_status()
    deadline = time.monotonic() + 60
    while srv.http("GET", f"{mount}/tidy-status").json()["data"]["state"] == "Running":
        assert time.monotonic() < deadline
        time.sleep(0.2)


def _intermediate_with_imported_parent(srv: BaoServer, mount: str) -> None:
    parent = unique_name("parent")
    srv.enable_builtin_mount(parent)
    root = srv.http("POST", f"{parent}/root/generate/internal",
                    json={"common_name": "parent.example.com", "key_type": "ec"}).json()["data"]["certificate"]
    # The parent's certificate alone (no key), as a pem_bundle: an issuer this mount cannot sign CRLs for.
    srv.http("POST", f"{mount}/issuers/import/bundle", json={"pem_bundle": root}).raise_for_status()
    csr = srv.http("POST", f"{mount}/intermediate/generate/internal",
                   json={"common_name": "int.example.com", "key_type": "ec"}).json()["data"]["csr"]
    signed = srv.http("POST", f"{parent}/root/sign-intermediate",
                      json={"csr": csr, "common_name": "int.example.com", "ttl": "8760h"}).json()
    done = srv.http("POST", f"{mount}/intermediate/set-signed", json={"certificate": signed["data"]["certificate"]})
    srv.http("POST", f"{mount}/config/issuers",
             json={"default": done.json()["data"]["imported_issuers"][0]}).raise_for_status()
    srv.http("POST", f"{mount}/roles/web", json={"allow_any_name": True, "key_type": "ec"}).raise_for_status()
    leaf = srv.http("POST", f"{mount}/issue/web", json={"common_name": "leaf.example.com", "ttl": "1h"})
    assert leaf.status_code == 200, leaf.text


def _acme_on(srv: BaoServer, mount: str) -> None:
    _roles_and_certs(srv, mount)
    srv.http("POST", f"{mount}/config/cluster", json={"path": f"{srv.addr}/v1/{mount}",
                                                     "aia_path": f"{srv.addr}/v1/{mount}"}).raise_for_status()
    srv.http("POST", f"{mount}/config/acme", json={"enabled": True}).raise_for_status()


def _acme_on_tuned(srv: BaoServer, mount: str) -> None:
    _acme_on(srv, mount)
    srv.http("POST", f"sys/mounts/{mount}/tune", json={
        "allowed_response_headers": ["Last-Modified", "Replay-Nonce", "Link", "Location"],
        "passthrough_request_headers": ["If-Modified-Since"]}).raise_for_status()


SCENARIOS = {
    "root": _root,
    "roles-issued-revoked": _roles_and_certs,
    "auto-tidy": _auto_tidy,
    "intermediate-imported-parent": _intermediate_with_imported_parent,
    "acme-on": _acme_on,
    "acme-on-tuned": _acme_on_tuned,
}


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_health_check_matches_the_builtin(server: BaoServer, scenario: str) -> None:
    ours, ref = unique_name("ours"), unique_name("ref")
    server.enable_plugin_mount(ours, plugin=PKI_TYPE)
    server.enable_builtin_mount(ref)
    assert _is_ours(server, ours) and not _is_ours(server, ref)
    if scenario.startswith("acme") and server.http("GET", f"{ours}/config/acme").status_code == 404:
        pytest.skip("config/acme is not on this branch yet")
    for mount in (ref, ours):
        SCENARIOS[scenario](server, mount)
    want, got = health_check(server, ref), health_check(server, ours)
    assert want[1], "the built-in's report is empty"
    assert differences(want, got) == []
