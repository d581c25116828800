"""The cluster harness itself (integration/cluster.py): a real 3-node raft cluster and its helpers."""

from __future__ import annotations

import hashlib

import pytest

from integration.cluster import Cluster
from integration.harness import PLUGIN_VERSION

pytestmark = [pytest.mark.cluster, pytest.mark.xdist_group("cluster")]


def test_three_voters_one_active_and_our_plugin_on_every_node(cluster: Cluster) -> None:
    active = cluster.wait_healthy()
    assert cluster.voters(active) == {"n1", "n2", "n3"}
    assert len(cluster.standbys()) == 2
    peers = active.cli("operator", "raft", "list-peers").stdout
    assert peers.count("true") == 3, peers
    shas = {hashlib.sha256(n.launcher_path.read_bytes()).hexdigest() for n in cluster.nodes}
    assert shas == {cluster.launcher_sha256}
    for node in cluster.nodes:  # the catalog is replicated: every node sees the registration
        # The plugin reports its version, so the registration is a versioned one.
        entry = node.http("GET", "sys/plugins/catalog/secret/python-pki", params={"version": PLUGIN_VERSION})
        assert entry.status_code == 200 and entry.json()["data"]["sha256"] == cluster.launcher_sha256
    pair = cluster.mount_pair()
    for node in cluster.nodes:
        assert node.plugin_pids(), f"no python-pki process for {node.node_id}"
        for mount in (pair.ours, pair.ref):
            assert node.request("GET", f"{mount}/config/crl", forward=False).status_code == 200


def test_requests_go_to_the_chosen_node(cluster: Cluster) -> None:
    pair = cluster.mount_pair()
    active, standby = cluster.active(), cluster.standbys()[0]
    # Without forwarding a standby redirects a write to the active; with it, the write is replayed there.
    resp = standby.request("POST", f"{pair.ref}/roles/r", json={"allow_any_name": True}, forward=False)
    assert resp.status_code == 307 and resp.headers["Location"].startswith(active.addr)
    resp = standby.request("POST", f"{pair.ref}/roles/r", json={"allow_any_name": True})
    assert resp.status_code in (200, 204), resp.text
    cluster.wait_readable(f"{pair.ref}/roles/r")
    # A read is answered by the standby itself.
    assert standby.request("GET", f"{pair.ref}/roles/r", forward=False).json()["data"]["allow_any_name"] is True


def test_disruptions_and_healing(cluster: Cluster) -> None:
    first = cluster.active()
    new = cluster.step_down()
    assert new.is_active()

    killed, new = cluster.kill_active()
    assert not killed.running() and new is not killed and new.is_active()
    cluster.heal()
    assert killed.running() and killed.is_standby()   # restarted, unsealed by the static seal, rejoined

    sealed, new = cluster.seal_active()
    assert sealed.is_sealed() and new is not sealed
    cluster.unseal(sealed)                              # the recovery key unseals a manually sealed node
    assert cluster.wait_healthy() is new and sealed.is_standby()

    cluster.restart(first)
    assert first.running() and not first.is_sealed()
    assert cluster.voters(cluster.active()) == {"n1", "n2", "n3"}
