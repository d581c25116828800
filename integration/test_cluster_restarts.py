"""Restarts and upgrades on real servers: a whole raft cluster restarted, a single Shamir-sealed server sealed,
unsealed and restarted (OpenBao 2.7.2 has no file storage), `bao plugin reload` (with and without `-scope=global`) under load, and an upgrade to a new
launcher registered as a new `-version` and back. Records, CRL numbers and OCSP answers stay as they were;
nothing acknowledged is lost.
"""

from __future__ import annotations

import base64
import subprocess
import sys
import sysconfig
import threading
import time
import urllib.parse
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp

from integration.cluster import Cluster, MountPair, RaftNode
from integration.harness import PLUGIN_NAME, kill_pids
from plugin.launcher import install_launcher

pytestmark = [pytest.mark.cluster, pytest.mark.xdist_group("cluster")]


def _populate(node: RaftNode, mount: str, n: int = 10) -> None:
    for path, body in [("root/generate/internal", {"common_name": "Restart Root", "key_type": "ec",
                                                   "ttl": "87600h", "issuer_name": "root"}),
                       ("roles/web", {"allow_any_name": True, "key_type": "ec", "ttl": "1h"})]:
        resp = node.http("POST", f"{mount}/{path}", json=body)
        assert resp.status_code in (200, 204), resp.text
    for i in range(n):
        resp = node.http("POST", f"{mount}/issue/web", json={"common_name": f"r{i}.example.com"})
        assert resp.status_code == 200, resp.text
        if i % 2:
            serial = resp.json()["data"]["serial_number"]
            assert node.http("POST", f"{mount}/revoke", json={"serial_number": serial}).status_code == 200


def _ocsp_status(node: RaftNode, mount: str, cert: x509.Certificate, issuer: x509.Certificate) -> str:
    der = ocsp.OCSPRequestBuilder().add_certificate(cert, issuer, hashes.SHA1()).build().public_bytes(
        serialization.Encoding.DER)
    resp = node.http("GET", f"{mount}/ocsp/{urllib.parse.quote(base64.b64encode(der).decode(), safe='')}")
    answer = ocsp.load_der_ocsp_response(resp.content)
    return answer.certificate_status.name if answer.response_status.name == "SUCCESSFUL" else answer.response_status.name


def _snapshot(nodes: list[RaftNode], mount: str) -> dict[str, Any]:
    """What a user can read: every record, the CRL (number and entries) from each node, OCSP answers."""
    active = next(n for n in nodes if n.is_active())
    serials = sorted(active.http("LIST", f"{mount}/certs").json()["data"]["keys"])
    certs = {s: active.http("GET", f"{mount}/cert/{s}").json()["data"]["certificate"] for s in serials}
    issuer = x509.load_pem_x509_certificate(active.http("GET", f"{mount}/issuer/root/pem").content)
    revoked = sorted(active.http("LIST", f"{mount}/certs/revoked").json()["data"]["keys"])
    crls = {}
    for node in nodes:
        crl = x509.load_der_x509_crl(node.request("GET", f"{mount}/crl", forward=False).content)
        crls[node.node_id] = (crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number,
                              sorted(r.serial_number for r in crl))
    ocsp_answers = {s: _ocsp_status(active, mount, x509.load_pem_x509_certificate(pem.encode()), issuer)
                    for s, pem in certs.items()}
    roles = active.http("LIST", f"{mount}/roles").json()["data"]["keys"]
    issuers = sorted(active.http("LIST", f"{mount}/issuers").json()["data"]["keys"])
    return {"certs": certs, "revoked": revoked, "crls": crls, "ocsp": ocsp_answers, "roles": roles,
            "issuers": issuers}


def _prepared_pair(cluster: Cluster) -> MountPair:
    pair = cluster.mount_pair()
    for m in (pair.ours, pair.ref):
        _populate(cluster.active(), m)
    time.sleep(1)   # replication to the standbys before their CRLs are read
    return pair


def _assert_same(before: dict, after: dict, what: str) -> None:
    for key in before:
        assert after[key] == before[key], f"{what}: {key} changed"


def test_raft_cluster_restart_keeps_every_record_crl_number_and_ocsp_answer(cluster: Cluster) -> None:
    pair = _prepared_pair(cluster)
    before = {m: _snapshot(cluster.nodes, m) for m in (pair.ours, pair.ref)}
    for node in cluster.nodes:   # the whole cluster down, then up (auto-unseal)
        node._stop_server()
        kill_pids(node.plugin_pids())
    cluster.heal()
    for m in (pair.ours, pair.ref):
        cluster.wait_readable(f"{m}/crl")
        _assert_same(before[m], _snapshot(cluster.nodes, m), f"{m} after a raft cluster restart")


@pytest.fixture(scope="module")
def shamir_server(tmp_path_factory: pytest.TempPathFactory):
    # OpenBao 2.7.2 has no file storage backend ("unknown storage type file"): a lone raft node with a Shamir
    # seal is the persistent single server that comes up sealed and needs its unseal key.
    server = Cluster(tmp_path_factory.mktemp("shamir"), size=1, auto_unseal=False).start()
    try:
        yield server
    finally:
        server.stop()


def test_single_server_seal_unseal_and_restart_keep_everything(shamir_server: Cluster) -> None:
    node = shamir_server.nodes[0]
    pair = shamir_server.mount_pair()
    for m in (pair.ours, pair.ref):
        _populate(node, m)
    before = {m: _snapshot([node], m) for m in (pair.ours, pair.ref)}
    shamir_server.seal(node)
    assert node.is_sealed()
    shamir_server.unseal(node)
    shamir_server.wait_healthy()
    for m in (pair.ours, pair.ref):
        shamir_server.wait_readable(f"{m}/crl")
        _assert_same(before[m], _snapshot([node], m), f"{m} after seal + unseal")
    node._stop_server()
    kill_pids(node.plugin_pids())
    node.start()
    assert node.is_sealed()              # Shamir seal: comes up sealed
    shamir_server.unseal(node)
    shamir_server.wait_healthy()
    for m in (pair.ours, pair.ref):
        shamir_server.wait_readable(f"{m}/crl")
        _assert_same(before[m], _snapshot([node], m), f"{m} after a restart")


class IssueLoad:
    """4 clients issuing on our mount through every node in turn until stopped; answers counted by cause."""

    def __init__(self, cluster: Cluster, mount: str) -> None:
        self.cluster, self.mount = cluster, mount
        self.stop = threading.Event()
        self.acked: set[str] = set()
        self.answers: Counter = Counter()
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._client, args=(i,)) for i in range(4)]

    def _client(self, i: int) -> None:
        step = i
        while not self.stop.is_set():
            node = self.cluster.nodes[step % len(self.cluster.nodes)]
            step += 1
            try:
                resp = node.http("POST", f"{self.mount}/issue/web", json={"common_name": "l.example.com"},
                                 timeout=30)
                cause = str(resp.status_code)
                if resp.status_code != 200:
                    cause += " " + " ".join(" ".join(resp.json().get("errors") or [resp.text]).split())[:80]
            except (requests.RequestException, ValueError) as e:
                resp, cause = None, f"no answer ({type(e).__name__})"
            with self.lock:
                self.answers[cause] += 1
                if resp is not None and resp.status_code == 200:
                    self.acked.add(resp.json()["data"]["serial_number"])
            time.sleep(0.05)

    def __enter__(self) -> "IssueLoad":
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join()

    def lost(self) -> set[str]:
        listed = self.cluster.active().http("LIST", f"{self.mount}/certs").json()["data"]["keys"]
        as_int = lambda s: int(s.replace(":", "").replace("-", ""), 16)  # noqa: E731
        return {s for s in self.acked if as_int(s) not in {as_int(k) for k in listed}}

    def failures(self) -> dict[str, int]:
        return {k: v for k, v in self.answers.items() if k != "200"}


def _plugin_pids(cluster: Cluster) -> dict[str, set[int]]:
    return {n.node_id: set(n.plugin_pids()) for n in cluster.nodes}


def _wait_pids_changed(cluster: Cluster, before: dict[str, set[int]], nodes: list[str], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        now = _plugin_pids(cluster)
        if all(now[n] and not (now[n] & before[n]) for n in nodes):
            return
        assert time.monotonic() < deadline, f"plugin processes not replaced on {nodes}: {before} -> {now}"
        time.sleep(0.2)


def test_plugin_reload_restarts_the_active_only_and_scope_global_every_node_under_load(cluster: Cluster) -> None:
    pair = _prepared_pair(cluster)
    active = cluster.active()
    standbys = [n.node_id for n in cluster.standbys()]
    with IssueLoad(cluster, pair.ours) as load:
        time.sleep(2)
        before = _plugin_pids(cluster)
        active.cli("plugin", "reload", f"-plugin={PLUGIN_NAME}")
        _wait_pids_changed(cluster, before, [active.node_id])
        time.sleep(2)
        assert {n: _plugin_pids(cluster)[n] for n in standbys} == {n: before[n] for n in standbys}
        before = _plugin_pids(cluster)
        active.cli("plugin", "reload", f"-plugin={PLUGIN_NAME}", "-scope=global")
        _wait_pids_changed(cluster, before, [n.node_id for n in cluster.nodes])
        time.sleep(3)
    print(f"\nplugin reload under load: answers {dict(load.answers)}")
    assert not load.lost(), f"acknowledged issues missing: {sorted(load.lost())[:5]}"
    assert load.answers["200"] > 0
    for m in (pair.ours,):
        cluster.wait_readable(f"{m}/roles/web")


def _running(node: RaftNode, mount: str) -> tuple[str, str]:
    data = node.http("GET", f"sys/mounts/{mount}").json()["data"]
    return data.get("running_plugin_version", ""), data.get("running_sha256", "")


def second_installation(root: Path, version: str) -> str:
    """A Python environment that runs this checkout but reports itself as python-pki `version`, as a new
    release installed into its own venv would; returns its interpreter. It sees the test venv's packages
    through a .pth file, and a dist-info of its own, first on its path, carries the version."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root)], check=True)
    site = Path(subprocess.run([str(root / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               check=True, capture_output=True, text=True).stdout.strip())
    (site / "zz-python-pki-test.pth").write_text(
        f"import site; site.addsitedir({sysconfig.get_paths()['purelib']!r})\n")
    dist = site / f"python_pki-{version.lstrip('v')}.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: python-pki\nVersion: {version.lstrip('v')}\n")
    return str(root / "bin" / "python")


def test_upgrade_to_a_new_launcher_version_and_back_loses_nothing(cluster: Cluster, tmp_path: Path) -> None:
    pair = _prepared_pair(cluster)
    before = _snapshot(cluster.nodes, pair.ours)
    active = cluster.active()
    old_sha = cluster.launcher_sha256
    old_version = next(e["version"] for e in cluster.catalog() if e["sha256"] == old_sha)
    # The new release's launcher (its own interpreter, so another sha256) in every node's plugin directory.
    python = second_installation(tmp_path / "venv-v0.2.0", "v0.2.0")
    new_sha = ""
    for node in cluster.nodes:
        _, new_sha = install_launcher(node.plugin_dir, "python-pki-v0.2.0", python=python)
    assert new_sha != old_sha
    active.cli("plugin", "register", f"-sha256={new_sha}", "-command=python-pki-v0.2.0", "-version=v0.2.0",
               "secret", PLUGIN_NAME)
    steps = []
    with IssueLoad(cluster, pair.ours) as load:
        for version, sha in (("v0.2.0", new_sha), (old_version, old_sha)):
            time.sleep(2)
            active.cli("secrets", "tune", f"-plugin-version={version}", pair.ours)
            active.cli("plugin", "reload", f"-plugin={PLUGIN_NAME}", "-scope=global")
            deadline = time.monotonic() + 60
            while any(_running(n, pair.ours) != (version, sha) for n in cluster.nodes):
                assert time.monotonic() < deadline, [_running(n, pair.ours) for n in cluster.nodes]
                time.sleep(0.2)
            cluster.wait_readable(f"{pair.ours}/roles/web")
            steps.append(f"{version} running on every node")
        time.sleep(2)
    print(f"\nupgrade and back under load: {steps}; answers {dict(load.answers)}")
    assert not load.lost(), f"acknowledged issues missing: {sorted(load.lost())[:5]}"
    after = _snapshot(cluster.nodes, pair.ours)
    assert set(before["certs"]) <= set(after["certs"])
    assert {s: after["certs"][s] for s in before["certs"]} == before["certs"]
    for key in ("revoked", "roles", "issuers"):
        assert after[key] == before[key], key
    assert {s: after["ocsp"][s] for s in before["ocsp"]} == before["ocsp"]
