"""Failover with nothing lost: issue + revoke load from 8 clients on a real raft cluster while the active node is
stepped down, SIGKILLed or sealed; our mount and the built-in `pki` get the same load at the same time.

Each client alternates between the two mounts (issue ours, issue built-in, revoke ours, revoke built-in, ...),
so both engines meet the same disruption at the same moment. Clients never retry. Afterwards, for each engine:
acknowledged (200) issues missing from `certs/`, acknowledged revokes missing from `certs/revoked`, from the CRL
served by every node and from OCSP on the new active; the other answers by cause. A killed node is restarted and
a sealed one unsealed a few seconds after the disruption, as a supervisor or an operator would, and the load goes
on. The rows go to `failover.md` in the session's base tmp dir and are printed.
"""

from __future__ import annotations

import base64
import math
import threading
import time
import urllib.parse
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp

from integration.cluster import Cluster, MountPair, RaftNode

pytestmark = [pytest.mark.cluster, pytest.mark.xdist_group("cluster")]

CLIENTS = 8
CYCLES = 12           # per client at least: issue + issue + revoke + revoke, one pair per engine ...
MAX_CYCLES = 60       # ... and on until the disruption is over and 2 s more, up to this many
PACE = 0.1            # seconds between a client's requests: a bounded load that spans the disruption
DISRUPT_AFTER = 3.0   # seconds into the load
RECOVER_AFTER = 5.0   # seconds after the disruption: restart the killed node / unseal the sealed one


@dataclass
class EngineTally:
    issued: dict[int, x509.Certificate] = field(default_factory=dict)   # acknowledged, by serial
    revoked: set[int] = field(default_factory=set)                      # acknowledged revokes
    attempts: Counter = field(default_factory=Counter)                  # op -> count
    ok: Counter = field(default_factory=Counter)
    failures: Counter = field(default_factory=Counter)                  # (op, cause) -> count
    lock: threading.Lock = field(default_factory=threading.Lock)


def _cause(resp: requests.Response | None, exc: Exception | None) -> str:
    if exc is not None:
        return f"no answer ({type(exc).__name__})"
    try:
        errors = resp.json().get("errors") or []
        text = " ".join(" ".join(str(e) for e in errors).split())[:90]
    except ValueError:
        text = resp.text[:90]
    return f"{resp.status_code} {text}"


# What a failed answer says, by the situation that caused it (both engines word some of them differently).
_KINDS = [
    ("503", "Vault is sealed", "node sealed"),
    ("500", "active cluster node not found", "no active node known yet"),
    ("500", "context canceled", "in flight when the node sealed or stepped down"),
    ("400", "not found", "revoke reached a node before the certificate had replicated"),
]


def _kind(cause: str) -> str:
    if cause.startswith("no answer"):
        return "no answer"
    for status, text, kind in _KINDS:
        if cause.startswith(status) and text in cause:
            return kind
    return cause


def _serial_int(serial: str) -> int:
    return int(serial.replace(":", "").replace("-", ""), 16)


class Load:
    """8 clients, each doing at least CYCLES cycles and going on until 2 s after the disruption is over;
    `target(client, k)` picks the node for a client's k-th request to one engine."""

    def __init__(self, pair: MountPair, target: Callable[[int, int], RaftNode]) -> None:
        self.pair, self.target = pair, target
        self.settled = threading.Event()   # set 2 s after the disruption (and recovery) is over
        self.tally = {pair.ours: EngineTally(), pair.ref: EngineTally()}

    def _send(self, sessions: dict, node: RaftNode, mount: str, op: str, path: str, body: dict
              ) -> requests.Response | None:
        tally = self.tally[mount]
        session = sessions.setdefault(node.node_id, requests.Session())
        resp, exc = None, None
        try:
            resp = session.post(f"{node.addr}/v1/{mount}/{path}", json=body, timeout=30,
                                headers={"X-Vault-Token": node.token})
        except requests.RequestException as e:
            exc = e
            sessions.pop(node.node_id, None)
        with tally.lock:
            tally.attempts[op] += 1
            if resp is not None and resp.status_code == 200:
                tally.ok[op] += 1
            else:
                tally.failures[(op, _cause(resp, exc))] += 1
        return resp if resp is not None and resp.status_code == 200 else None

    def _client(self, n: int) -> None:
        sessions: dict = {}
        # One request counter per engine, so that request k of either engine goes to the same node.
        steps = {self.pair.ours: 0, self.pair.ref: 0}
        last: dict[str, str] = {}

        def send(mount: str, op: str, path: str, body: dict) -> requests.Response | None:
            node = self.target(n, steps[mount])
            steps[mount] += 1
            return self._send(sessions, node, mount, op, path, body)

        for cycle in range(MAX_CYCLES):
            if cycle >= CYCLES and self.settled.is_set():
                break
            for mount in (self.pair.ours, self.pair.ref):
                resp = send(mount, "issue", "issue/web", {"common_name": f"c{n}.example.com"})
                if resp is not None:
                    data = resp.json()["data"]
                    cert = x509.load_pem_x509_certificate(data["certificate"].encode())
                    with self.tally[mount].lock:
                        self.tally[mount].issued[cert.serial_number] = cert
                    last[mount] = data["serial_number"]
                time.sleep(PACE)
            for mount in (self.pair.ours, self.pair.ref):
                serial = last.pop(mount, None)
                if serial is None:
                    steps[mount] += 1   # keep both engines' node sequences in step
                    continue
                if send(mount, "revoke", "revoke", {"serial_number": serial}) is not None:
                    with self.tally[mount].lock:
                        self.tally[mount].revoked.add(_serial_int(serial))
                time.sleep(PACE)

    def run(self) -> None:
        threads = [threading.Thread(target=self._client, args=(n,)) for n in range(CLIENTS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()


def _disrupt(cluster: Cluster, kind: str, log: list[str], settled: threading.Event) -> None:
    try:
        _disrupt_once(cluster, kind, log)
    finally:
        time.sleep(2)
        settled.set()


def _disrupt_once(cluster: Cluster, kind: str, log: list[str]) -> None:
    time.sleep(DISRUPT_AFTER)
    t0 = time.monotonic()
    if kind == "step-down":
        old = cluster.active()
        new = cluster.step_down()
        log.append(f"step-down {old.node_id} -> {new.node_id} in {time.monotonic() - t0:.1f} s")
        return
    if kind == "sigkill":
        old, new = cluster.kill_active()
    else:
        old, new = cluster.seal_active()
    log.append(f"{kind} {old.node_id} -> {new.node_id} active in {time.monotonic() - t0:.1f} s")
    time.sleep(RECOVER_AFTER)
    if kind == "sigkill":
        old.start()
    else:
        cluster.unseal(old)
    log.append(f"{old.node_id} back after {time.monotonic() - t0:.1f} s")


def _crl_serials(node: RaftNode, mount: str) -> set[int] | None:
    resp = node.request("GET", f"{mount}/crl", forward=False)
    if resp.status_code != 200:
        return None
    return {r.serial_number for r in x509.load_der_x509_crl(resp.content)}


def _ocsp_revoked(node: RaftNode, mount: str, cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    der = ocsp.OCSPRequestBuilder().add_certificate(cert, issuer, hashes.SHA1()).build().public_bytes(
        serialization.Encoding.DER)
    resp = node.http("GET", f"{mount}/ocsp/{urllib.parse.quote(base64.b64encode(der).decode(), safe='')}")
    if resp.status_code != 200:
        return False
    answer = ocsp.load_der_ocsp_response(resp.content)
    return (answer.response_status == ocsp.OCSPResponseStatus.SUCCESSFUL
            and answer.certificate_status == ocsp.OCSPCertStatus.REVOKED)


@dataclass
class Lost:
    issues: int
    revoked_list: int
    crl: dict[str, int]
    ocsp: int


def _count_lost(cluster: Cluster, mount: str, tally: EngineTally, issuer: x509.Certificate) -> Lost:
    active = cluster.active()
    listed = active.http("LIST", f"{mount}/certs").json()["data"]["keys"]
    issues = len(set(tally.issued) - {_serial_int(k) for k in listed})
    resp = active.http("LIST", f"{mount}/certs/revoked")
    revoked_keys = resp.json()["data"]["keys"] if resp.status_code == 200 else []
    revoked_list = len(tally.revoked - {_serial_int(k) for k in revoked_keys})
    crl: dict[str, int] = {}
    for node in cluster.nodes:
        # The CRL follows the last revoke within raft lag: give each node a few seconds.
        deadline = time.monotonic() + 15
        while True:
            serials = _crl_serials(node, mount)
            missing = len(tally.revoked - serials) if serials is not None else len(tally.revoked)
            if missing == 0 or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        crl[node.node_id] = missing
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda s: _ocsp_revoked(active, mount, tally.issued[s], issuer), tally.revoked))
    ocsp_missing = answers.count(False)
    return Lost(issues, revoked_list, crl, ocsp_missing)


def _prepare(cluster: Cluster, pair: MountPair) -> dict[str, x509.Certificate]:
    active = cluster.active()
    issuers = {}
    for m in (pair.ours, pair.ref):
        resp = active.http("POST", f"{m}/root/generate/internal",
                           json={"common_name": "Failover Root", "key_type": "ec", "ttl": "87600h"})
        assert resp.status_code == 200, resp.text
        issuers[m] = x509.load_pem_x509_certificate(resp.json()["data"]["certificate"].encode())
        assert active.http("POST", f"{m}/roles/web", json={"allow_any_name": True, "key_type": "ec",
                                                            "ttl": "1h"}).status_code in (200, 204)
        cluster.wait_readable(f"{m}/roles/web")
    return issuers


def _row(kind: str, mode: str, engine: str, t: EngineTally, lost: Lost) -> str:
    fails = "; ".join(f"{op} {cause}: {n}" for (op, cause), n in sorted(t.failures.items())) or "none"
    crl = "/".join(str(lost.crl[k]) for k in sorted(lost.crl))
    return (f"| {kind} | {mode} | {engine} | {t.ok['issue']}/{t.attempts['issue']} | "
            f"{t.ok['revoke']}/{t.attempts['revoke']} | {lost.issues} | {lost.revoked_list} | {crl} | "
            f"{lost.ocsp} | {fails} |")


HEADER = ("| disruption | clients | engine | issues ok | revokes ok | lost issues (certs/) | lost revokes "
          "(certs/revoked) | lost revokes (CRL n1/n2/n3) | lost revokes (OCSP, new active) | failed answers |\n"
          "|---|---|---|---|---|---|---|---|---|---|")


@pytest.mark.parametrize("mode", ["round-robin", "pinned"])
@pytest.mark.parametrize("kind", ["step-down", "sigkill", "seal"])
def test_failover_loses_nothing_and_serves_pinned_clients_as_the_builtin(
        cluster: Cluster, kind: str, mode: str, tmp_path_factory: pytest.TempPathFactory) -> None:
    pair = cluster.mount_pair()
    issuers = _prepare(cluster, pair)
    first_active = cluster.active()
    nodes = list(cluster.nodes)
    if mode == "pinned":
        target = lambda n, step: first_active  # noqa: E731
    else:
        target = lambda n, step: nodes[(n + step) % len(nodes)]  # noqa: E731
    load = Load(pair, target)
    events: list[str] = []
    # The load runs in a thread and the disruption in this one: a server restarted from a thread that then
    # ends would get SIGTERM (the harness's parent-death signal follows the thread that started it).
    loader = threading.Thread(target=load.run)
    t0 = time.monotonic()
    loader.start()
    _disrupt(cluster, kind, events, load.settled)
    loader.join()
    events.append(f"load done after {time.monotonic() - t0:.1f} s")
    cluster.heal()
    t1 = time.monotonic()
    rows, lost = [], {}
    for m, engine in ((pair.ref, "built-in"), (pair.ours, "ours")):
        lost[m] = _count_lost(cluster, m, load.tally[m], issuers[m])
        rows.append(_row(kind, mode, engine, load.tally[m], lost[m]))
    events.append(f"counted in {time.monotonic() - t1:.1f} s")
    out = Path(tmp_path_factory.getbasetemp()) / "failover.md"
    if not out.exists():
        out.write_text(HEADER + "\n")
    with out.open("a") as f:
        f.write("\n".join(rows) + "\n")
    print(f"\n{'; '.join(events)}\n{HEADER}\n" + "\n".join(rows) + f"\n(all runs: {out})")

    ours, ref = load.tally[pair.ours], load.tally[pair.ref]
    mine = lost[pair.ours]
    assert (mine.issues, mine.revoked_list, sum(mine.crl.values()), mine.ocsp) == (0, 0, 0, 0), rows[-1]
    assert ours.ok["issue"] > 0 and ours.ok["revoke"] > 0
    if mode == "pinned":
        # Ours may fail only for reasons the built-in meets too (the server's own failover window: no active
        # known yet, a node down or sealed), never for one of its own.
        kinds = lambda t: {_kind(cause) for _, cause in t.failures}  # noqa: E731
        assert kinds(ours) <= kinds(ref) | {"no answer"}, (kinds(ours), kinds(ref), rows)
        # Requests alternate between the engines, so each engine's count of requests that fall into that window
        # is a small random sample (Poisson-like): the two differ by about sqrt(a + b) by chance alone. Ours
        # must not trail by more than twice that.
        got = ours.ok["issue"] + ours.ok["revoke"]
        want = ref.ok["issue"] + ref.ok["revoke"]
        failed = sum(ours.failures.values()) + sum(ref.failures.values())
        assert got >= want - 2 * math.sqrt(failed), rows
