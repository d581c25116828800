"""Periodic work on a real raft cluster: with revocations going on, auto_rebuild, delta CRLs every 15 s and
auto-tidy every minute, no node's log gets a plugin error line (the server's periodic call reaches standbys
too, which must leave CRL rebuilds and tidy to the active), and the work is done on the active.

The server calls each mount's periodic function about once a minute, so the default variant runs 75 s (at least
one call on every node); the slow variant runs the 5 minutes issue 11 names.
"""

from __future__ import annotations

import random
import threading
import time

import pytest
from cryptography import x509

from integration.cluster import Cluster

pytestmark = [pytest.mark.cluster, pytest.mark.xdist_group("cluster")]


def _setup(cluster: Cluster, mount: str) -> None:
    active = cluster.active()
    for path, body in [
        ("root/generate/internal", {"common_name": "Periodic Root", "key_type": "ec", "ttl": "87600h"}),
        ("roles/web", {"allow_any_name": True, "key_type": "ec", "ttl": "1h"}),
        ("config/crl", {"auto_rebuild": True, "auto_rebuild_grace_period": "10s", "enable_delta": True,
                        "delta_rebuild_interval": "15s"}),
        ("config/auto-tidy", {"enabled": True, "interval_duration": "1m", "tidy_cert_store": True,
                              "tidy_revoked_certs": True, "safety_buffer": "1s"}),
    ]:
        resp = active.http("POST", f"{mount}/{path}", json=body)
        assert resp.status_code in (200, 204), f"{mount}/{path}: {resp.text}"
    cluster.wait_readable(f"{mount}/roles/web")


def _error_lines(lines: list[str], needles: tuple[str, ...]) -> list[str]:
    return [ln for ln in lines if ("[ERROR]" in ln or "[WARN]" in ln) and any(n in ln for n in needles)]


def _crl_number(cluster: Cluster, mount: str) -> int:
    """The highest CRL number the active serves (complete or delta; 0 before the first delta CRL)."""
    numbers = [0]
    for path in ("crl", "crl/delta"):
        resp = cluster.active().http("GET", f"{mount}/{path}")
        if resp.status_code == 200 and resp.content:
            crl = x509.load_der_x509_crl(resp.content)
            numbers.append(crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number)
    return max(numbers)


def _crl_serials(cluster: Cluster, mount: str) -> set[int]:
    """Serials on the complete and the delta CRL the active serves."""
    out: set[int] = set()
    for path in ("crl", "crl/delta"):
        resp = cluster.active().http("GET", f"{mount}/{path}")
        if resp.status_code == 200 and resp.content:
            out |= {r.serial_number for r in x509.load_der_x509_crl(resp.content)}
    return out


def _run(cluster: Cluster, seconds: float) -> None:
    pair = cluster.mount_pair()
    for m in (pair.ours, pair.ref):
        _setup(cluster, m)
    start_numbers = {m: _crl_number(cluster, m) for m in (pair.ours, pair.ref)}
    revoked_serials: dict[str, set[int]] = {pair.ours: set(), pair.ref: set()}
    marks = {n.node_id: n.log_size() for n in cluster.nodes}
    stop = threading.Event()
    revoked = {pair.ours: 0, pair.ref: 0}

    def revocations() -> None:   # issue and revoke through any node, as clients behind a load balancer
        while not stop.is_set():
            for m in (pair.ours, pair.ref):
                node = random.choice(cluster.nodes)
                resp = node.http("POST", f"{m}/issue/web", json={"common_name": "p.example.com"})
                if resp.status_code == 200:
                    serial = resp.json()["data"]["serial_number"]
                    if random.choice(cluster.nodes).http("POST", f"{m}/revoke",
                                                         json={"serial_number": serial}).status_code == 200:
                        revoked[m] += 1
                        revoked_serials[m].add(int(serial.replace(":", ""), 16))
            stop.wait(1.0)

    worker = threading.Thread(target=revocations)
    worker.start()
    try:
        time.sleep(seconds)
    finally:
        stop.set()
        worker.join()
    report = []
    for node in cluster.nodes:
        lines = node.log_since(marks[node.node_id])
        ours = _error_lines(lines, ("python-pki", pair.ours))
        ref = _error_lines(lines, (pair.ref,))
        report.append((node, ours, ref))
    print(f"\nafter {seconds:.0f} s ({revoked[pair.ours]} revokes on ours, {revoked[pair.ref]} on the built-in):")
    for node, ours, ref in report:
        role = "active" if node.is_active() else "standby"
        print(f"  {node.node_id} ({role}): {len(ours)} plugin error/warning lines on ours, {len(ref)} on the built-in")
    assert revoked[pair.ours] > 0 and revoked[pair.ref] > 0
    assert all(not ours for _, ours, _ in report), "\n".join(ln for _, ours, _ in report for ln in ours[:20])
    # The work was done where it can write: the active rebuilt (delta) CRLs and ran auto-tidy, for both engines.
    # Every revocation reaches the complete or the delta CRL: with auto_rebuild that is the periodic call's
    # work (delta every 15 s). It runs about once a minute, so wait up to 70 s for the one that covers the last.
    for m in (pair.ours, pair.ref):
        deadline = time.monotonic() + 70
        while revoked_serials[m] - _crl_serials(cluster, m) and time.monotonic() < deadline:
            time.sleep(1)
    numbers = {m: (start_numbers[m], _crl_number(cluster, m)) for m in (pair.ours, pair.ref)}
    # Auto-tidy's first run: the built-in's on the first periodic call an interval after the mount was loaded,
    # ours on the first call an interval after the first call that saw the schedule (up to three calls of the
    # server's one-minute periodic cycle after enabling it).
    statuses: dict[str, str] = {}
    for m in (pair.ours, pair.ref):
        deadline = time.monotonic() + 130
        while True:
            statuses[m] = cluster.active().http("GET", f"{m}/tidy-status").json()["data"]["state"]
            if statuses[m] != "Inactive" or time.monotonic() > deadline:
                break
            time.sleep(1)
    print(f"  CRL numbers (before, after): ours {numbers[pair.ours]}, built-in {numbers[pair.ref]}; "
          f"tidy-status ours {statuses[pair.ours]}, built-in {statuses[pair.ref]}")
    for m in (pair.ref, pair.ours):
        assert not revoked_serials[m] - _crl_serials(cluster, m), f"{m}: revocations missing from the CRLs"
        assert numbers[m][1] > numbers[m][0], m
        assert statuses[m] in ("Running", "Finished"), m


def test_periodic_work_leaves_no_plugin_errors_on_any_node(cluster: Cluster) -> None:
    _run(cluster, 75)


@pytest.mark.slow
def test_periodic_work_leaves_no_plugin_errors_on_any_node_for_5_minutes(cluster: Cluster) -> None:
    _run(cluster, 300)
