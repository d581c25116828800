"""`scripts/bench raft` and `scripts/bench cluster`: issuance on raft storage, ours vs the built-in in the same run.

- `raft`: stored EC P-256 issuance on a single-node raft server (real storage: every certificate is a raft write
  and an fsync), the figure users meet; dev mode keeps storage in memory and hides that cost.
- `cluster`: no_store EC P-256 issuance sent round-robin to the three nodes of a raft cluster (one `hey` per node,
  8 clients in all). Standbys answer no_store issuance themselves, so this is the scale-out path; on a 2-core
  machine the three servers and their plugins share two cores, so it shows that standbys serve correctly more
  than it shows speed.

Each area starts its own servers (integration/cluster.py); the dev server `scripts/bench` hands in is unused.
"""
from __future__ import annotations

import tempfile
import threading
from pathlib import Path
from typing import Callable

from integration.cluster import Cluster, MountPair


def _pair(cluster: Cluster, role: dict) -> MountPair:
    pair = cluster.mount_pair("bench")
    active = cluster.active()
    for m in (pair.ours, pair.ref):
        active.http("POST", f"{m}/root/generate/internal",
                    json={"common_name": "Bench Root", "key_type": "ec", "ttl": "87600h"}).raise_for_status()
        active.http("POST", f"{m}/roles/leaf", json={"allow_any_name": True, "key_type": "ec", "key_bits": 256,
                                                     "ttl": "1h", **role}).raise_for_status()
        cluster.wait_readable(f"{m}/roles/leaf")
    return pair


def _fmt(load) -> str:
    return f"{load.rps:.1f} req/s p50 {load.p50_ms:.1f} p99 {load.p99_ms:.1f} ms ({load.errors} errors)"


def bench_raft(_bao, args) -> None:
    from scripts.benchmarks import hey, report

    with tempfile.TemporaryDirectory(prefix="python-pki-bench-raft-") as tmp:
        cluster = Cluster(Path(tmp), size=1).start()
        try:
            pair = _pair(cluster, {"no_store": False})
            node = cluster.active()
            results = {m: hey(f"{node.addr}/v1/{m}/issue/leaf", node.token, {"common_name": "a.example.com"},
                              args.duration) for m in (pair.ours, pair.ref)}
        finally:
            cluster.stop()
    a, b = results[pair.ours], results[pair.ref]
    report(f"| issue EC P-256, stored, single-node raft, 8 clients | ours {_fmt(a)} | built-in {_fmt(b)} | "
           f"ratio {a.rps / b.rps if b.rps else float('nan'):.2f}x |")


def bench_cluster(_bao, args) -> None:
    from scripts.benchmarks import Load, hey, report

    with tempfile.TemporaryDirectory(prefix="python-pki-bench-cluster-") as tmp:
        cluster = Cluster(Path(tmp), size=3).start()
        try:
            pair = _pair(cluster, {"no_store": True})
            results: dict[str, list[tuple[str, Load]]] = {}
            for m in (pair.ours, pair.ref):
                per_node: list[tuple[str, Load]] = []
                lock = threading.Lock()

                def one(node, clients: int, mount: str = m) -> None:
                    load = hey(f"{node.addr}/v1/{mount}/issue/leaf", node.token, {"common_name": "a.example.com"},
                               args.duration, concurrency=clients)
                    role = "active" if node.is_active() else "standby"
                    with lock:
                        per_node.append((f"{node.node_id} ({role})", load))

                threads = [threading.Thread(target=one, args=(n, c)) for n, c in zip(cluster.nodes, (3, 3, 2))]
                for t in threads:
                    t.start()
                for t in threads:
                    t.join()
                results[m] = sorted(per_node)
        finally:
            cluster.stop()

    def total(rows: list[tuple[str, Load]]) -> tuple[float, int]:
        return sum(r.rps for _, r in rows), sum(r.errors for _, r in rows)

    (ra, ea), (rb, eb) = total(results[pair.ours]), total(results[pair.ref])
    split = "; ".join(f"{name} {r.rps:.0f}" for name, r in results[pair.ours])
    report(f"| issue EC P-256, no_store, round-robin over 3 raft nodes, 8 clients | ours {ra:.1f} req/s ({ea} errors;"
           f" {split}) | built-in {rb:.1f} req/s ({eb} errors) | ratio {ra / rb if rb else float('nan'):.2f}x; "
           "3 servers + plugins on this machine's cores: shows that standbys serve it, more than speed |")


BENCHES: dict[str, Callable] = {"raft": bench_raft, "cluster": bench_cluster}
