"""A real OpenBao raft HA cluster on 127.0.0.1 for the HA tests, and for `scripts/dev --cluster`.

`Cluster` starts N (default 3) `bao server` processes, each with its own directory, config, free API and
cluster ports and plugin directory (the same launcher, so the same sha256, in each). Node 1 is initialised, the
others join it through `retry_join`. A `seal "static"` stanza (one 32-byte key file shared by every node) makes
restarted nodes unseal themselves, as a cloud auto-unseal would; a node sealed with `bao operator seal` is
unsealed again with the recovery key (`Cluster.unseal`). `auto_unseal=False` uses a one-share Shamir seal
instead, where every start needs `unseal`.

Each node is a `RaftNode`, a `BaoServer` started from a config file instead of `-dev`, so tests use the
same client API (`http`, `cli`, `parallel`, `enable_plugin_mount`, `log_tail`, `plugin_pids`).

The `cluster` fixture (marker `cluster`) hands out one cluster per test session, healed before each test (every
node running and unsealed, one active); tests that disrupt it leave healing to the next fixture use.
integration/conftest.py makes both fixtures (`cluster`, `cluster_session`) available to every integration test.

`python -m integration.cluster` (what `scripts/dev --cluster` runs) starts one for a user and waits.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
import requests

from integration.harness import PLUGIN_NAME, BaoServer, HarnessError, kill_pids, unique_name
from plugin.launcher import install_launcher

NO_FORWARD = {"X-Vault-No-Request-Forwarding": "true"}
# sys/health answers by status code; OpenBao standbys that serve reads answer 473 (performance standby).
_ACTIVE, _STANDBYS, _SEALED = 200, (429, 473), 503


def free_ports(n: int) -> list[int]:
    """`n` distinct free loopback ports, all bound at once so that none is handed out twice."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


class RaftNode(BaoServer):
    """One `bao server -config=node.hcl` of a cluster (raft storage), or a lone server on file storage."""

    def __init__(self, workdir: Path, node_id: str, api_port: int, cluster_port: int,
                 join: list[str], seal_key: Path | None, storage: str = "raft",
                 bao_bin: str | None = None) -> None:
        super().__init__(workdir, bao_bin)
        self.node_id = node_id
        self.port, self.cluster_port = api_port, cluster_port
        self.addr = f"http://127.0.0.1:{api_port}"
        self.config_path = self.workdir / "node.hcl"
        self.data_dir = self.workdir / "data"
        self.join, self.seal_key, self.storage = join, seal_key, storage
        self.token = ""  # the root token, set when the cluster is initialised

    def write_config(self) -> None:
        if self.storage == "raft":
            joins = "".join(f'  retry_join {{\n    leader_api_addr = "{a}"\n  }}\n' for a in self.join)
            storage = (f'storage "raft" {{\n  path = "{self.data_dir}"\n  node_id = "{self.node_id}"\n'
                       # 1 instead of the default 5: elections within a second or two after a failure.
                       f'  performance_multiplier = 1\n{joins}}}\n')
        else:
            storage = f'storage "file" {{\n  path = "{self.data_dir}"\n}}\n'
        seal = ""
        if self.seal_key is not None:
            seal = (f'seal "static" {{\n  current_key_id = "test-1"\n'
                    f'  current_key = "file://{self.seal_key}"\n}}\n')
        self.config_path.write_text(
            storage + seal
            + f'listener "tcp" {{\n  address = "127.0.0.1:{self.port}"\n'
            f'  cluster_address = "127.0.0.1:{self.cluster_port}"\n  tls_disable = true\n}}\n'
            f'api_addr = "{self.addr}"\ncluster_addr = "https://127.0.0.1:{self.cluster_port}"\n'
            f'plugin_directory = "{self.plugin_dir}"\ndisable_mlock = true\nraw_storage_endpoint = true\n'
            'log_level = "info"\n'
        )

    def start(self, timeout: float = 60) -> "RaftNode":  # type: ignore[override]
        """Start the server process and wait until its API answers (sealed or not)."""
        if self.running():
            return self
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.plugin_dir.mkdir(parents=True, exist_ok=True)
        self.write_config()
        self.start_offset = self.log_size()
        self._spawn(["server", f"-config={self.config_path}"])
        deadline = time.monotonic() + timeout
        while self.health_code() is None:
            if self.proc.poll() is not None:
                raise HarnessError(f"{self.node_id} exited during start\n{self.log_tail(30)}")
            if time.monotonic() > deadline:
                raise HarnessError(f"{self.node_id} not answering after {timeout}s\n{self.log_tail(30)}")
            time.sleep(0.1)
        return self

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL the server process (its plugin processes notice and exit on their own)."""
        if self.running():
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
        if self._log_file:
            self._log_file.close()
            self._log_file = None

    def health_code(self) -> int | None:
        try:
            return requests.get(f"{self.addr}/v1/sys/health", timeout=2).status_code
        except requests.RequestException:
            return None

    def setup_settled(self) -> bool:
        """Whether the node's last post-unseal setup (at start and after every role change) has completed.
        A standby still in it can miss a mount-table change made meanwhile: OpenBao 2.7.2 then lacks that
        mount there until something restarts its core."""
        text = "\n".join(self.log_since(getattr(self, "start_offset", 0)))
        return text.rfind("post-unseal setup complete") > text.rfind("post-unseal setup starting")

    def is_active(self) -> bool:
        return self.health_code() == _ACTIVE

    def is_standby(self) -> bool:
        return self.health_code() in _STANDBYS

    def is_sealed(self) -> bool:
        return self.health_code() == _SEALED

    def request(self, method: str, path: str, json: Any = None, forward: bool = True,
                **kwargs: Any) -> requests.Response:
        """`method /v1/path` on this node; `forward=False` sends X-Vault-No-Request-Forwarding, so a standby
        answers what it can itself and redirects (307) what it would forward."""
        headers = dict(kwargs.pop("headers", None) or {})
        if not forward:
            headers.update(NO_FORWARD)
            kwargs.setdefault("allow_redirects", False)
        return self.http(method, path, json=json, headers=headers, **kwargs)

    def log_size(self) -> int:
        try:
            return self.log_path.stat().st_size
        except OSError:
            return 0

    def log_since(self, offset: int) -> list[str]:
        """The server log's lines written after byte `offset` (from `log_size()`)."""
        try:
            with open(self.log_path, "rb") as f:
                f.seek(offset)
                return f.read().decode(errors="replace").splitlines()
        except OSError:
            return []

    def describe(self) -> str:
        return f"{self.node_id} {self.addr}, log {self.log_path}"


@dataclass(frozen=True)
class MountPair:
    ours: str
    ref: str


class Cluster:
    """N raft nodes on 127.0.0.1, initialised, unsealed, our plugin registered (see the module docstring)."""

    def __init__(self, workdir: Path, size: int = 3, auto_unseal: bool = True, storage: str = "raft") -> None:
        if storage != "raft" and size != 1:
            raise ValueError("only raft storage has HA; file storage runs one node")
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.seal_key: Path | None = None
        if auto_unseal:
            self.seal_key = self.workdir / "seal.key"
            self.seal_key.write_bytes(os.urandom(32))
            self.seal_key.chmod(0o600)
        ports = free_ports(2 * size)
        apis = [f"http://127.0.0.1:{p}" for p in ports[:size]]
        self.nodes = [
            RaftNode(self.workdir / f"node{i + 1}", f"n{i + 1}", ports[i], ports[size + i],
                     [a for j, a in enumerate(apis) if j != i], self.seal_key, storage)
            for i in range(size)
        ]
        self.unseal_key = ""    # the recovery key with auto-unseal, else the Shamir unseal key
        self.root_token = ""
        self.launcher_sha256 = ""

    # -- lifecycle --------------------------------------------------------
    def start(self, timeout: float = 90) -> "Cluster":
        try:
            for node in self.nodes:
                node.start()
            first = self.nodes[0]
            body = ({"recovery_shares": 1, "recovery_threshold": 1} if self.seal_key
                    else {"secret_shares": 1, "secret_threshold": 1})
            resp = requests.put(f"{first.addr}/v1/sys/init", json=body, timeout=60)
            if resp.status_code != 200:
                raise HarnessError(f"init: HTTP {resp.status_code} {resp.text}")
            init = resp.json()
            self.unseal_key = (init.get("recovery_keys_base64") or init["keys_base64"])[0]
            self.root_token = init["root_token"]
            for node in self.nodes:
                node.token = self.root_token
            self._unseal_if_shamir(first)
            self.wait_active(timeout)
            # Joined nodes are non-voters until autopilot has seen them healthy for the stabilization time
            # (10 s by default); until then losing the active leaves no quorum.
            if first.storage == "raft":
                self._ok(first.http("POST", "sys/storage/raft/autopilot/configuration",
                                    json={"server_stabilization_time": "2s"}), "autopilot configuration")
            for node in self.nodes[1:]:
                self._unseal_if_shamir(node)
            self.wait_healthy(timeout)
            # Same launcher in every node's plugin directory; the catalog entry itself is replicated.
            for node in self.nodes:
                node.launcher_path, node.launcher_sha256 = install_launcher(node.plugin_dir, PLUGIN_NAME)
            self.launcher_sha256 = self.nodes[0].launcher_sha256
            self.active().register()
            return self
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()

    def _unseal_if_shamir(self, node: RaftNode, timeout: float = 60) -> None:
        if self.seal_key is None:
            self.unseal(node, timeout)

    def unseal(self, node: RaftNode, timeout: float = 60) -> None:
        """Give `node` the unseal (or, with auto-unseal, recovery) key until it is unsealed. A joining node
        may need several tries: it accepts the key only once it has reached the leader."""
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            try:
                resp = requests.put(f"{node.addr}/v1/sys/unseal", json={"key": self.unseal_key}, timeout=10)
                if resp.status_code == 200 and not resp.json().get("sealed", True):
                    return
                last = f"HTTP {resp.status_code} {resp.text[:200]}"
            except requests.RequestException as e:
                last = str(e)
            time.sleep(0.3)
        raise HarnessError(f"{node.node_id} still sealed after {timeout}s ({last})\n{node.log_tail(30)}")

    def wait_active(self, timeout: float = 60, exclude: RaftNode | None = None) -> RaftNode:
        """The active node once there is one (not `exclude`)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for node in self.nodes:
                if node is not exclude and node.running() and node.is_active():
                    return node
            time.sleep(0.1)
        raise HarnessError(f"no active node after {timeout}s\n" + self.describe())

    def wait_healthy(self, timeout: float = 90) -> RaftNode:
        """Every node running and unsealed, one active and the others standbys; returns the active."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            codes = [n.health_code() if n.running() else None for n in self.nodes]
            if codes.count(_ACTIVE) == 1 and all(c == _ACTIVE or c in _STANDBYS for c in codes):
                active = self.nodes[codes.index(_ACTIVE)]
                if ((active.storage != "raft" or self.voters(active) == {n.node_id for n in self.nodes})
                        and all(n.setup_settled() for n in self.nodes)):
                    return active
            time.sleep(0.2)
        raise HarnessError(f"cluster not healthy after {timeout}s\n" + self.describe())

    def heal(self, timeout: float = 90) -> RaftNode:
        """Start what is stopped and unseal what is sealed; then `wait_healthy`."""
        for node in self.nodes:
            if not node.running():
                node.start()
        for node in self.nodes:
            if node.is_sealed():
                self.unseal(node, timeout)
        return self.wait_healthy(timeout)

    def voters(self, active: RaftNode) -> set[str]:
        """Node ids that are raft voters, as the active node reports them."""
        try:
            resp = active.http("GET", "sys/storage/raft/configuration", timeout=10)
            servers = resp.json()["data"]["config"]["servers"] if resp.status_code == 200 else []
        except (requests.RequestException, ValueError, KeyError, TypeError):
            return set()
        return {s["node_id"] for s in servers if s.get("voter")}

    def catalog(self, name: str = PLUGIN_NAME) -> list[dict[str, Any]]:
        """The plugin catalog's secret-plugin entries named `name` (one per registered version)."""
        resp = self._ok(self.active().http("GET", "sys/plugins/catalog"), "read the plugin catalog")
        return [e for e in resp.json()["data"].get("detailed") or []
                if e.get("name") == name and e.get("type") == "secret" and not e.get("builtin")]

    @staticmethod
    def _ok(resp: requests.Response, what: str) -> requests.Response:
        if resp.status_code >= 400:
            raise HarnessError(f"{what}: HTTP {resp.status_code}: {resp.text.strip()}")
        return resp

    def describe(self) -> str:
        return "\n".join(f"{n.describe()}: {'health ' + str(n.health_code()) if n.running() else 'stopped'}"
                         for n in self.nodes)

    # -- roles ------------------------------------------------------------
    def active(self) -> RaftNode:
        return self.wait_active(30)

    def standbys(self) -> list[RaftNode]:
        return [n for n in self.nodes if n.running() and n.is_standby()]

    # -- disruptions ------------------------------------------------------
    def step_down(self, timeout: float = 60) -> RaftNode:
        """`bao operator step-down` on the active; returns the next active (possibly the same node: raft may
        elect it again)."""
        old = self.active()
        old.cli("operator", "step-down")
        deadline = time.monotonic() + timeout
        while old.is_active() and time.monotonic() < deadline:  # the step-down itself takes a moment
            time.sleep(0.05)
        return self.wait_active(max(1.0, deadline - time.monotonic()))

    def kill_active(self, timeout: float = 60) -> tuple[RaftNode, RaftNode]:
        """SIGKILL the active's server; (the killed node, the new active)."""
        old = self.active()
        old.kill()
        return old, self.wait_active(timeout, exclude=old)

    def seal_active(self, timeout: float = 60) -> tuple[RaftNode, RaftNode]:
        """`bao operator seal` on the active; (the sealed node, the new active)."""
        old = self.active()
        self.seal(old)
        return old, self.wait_active(timeout, exclude=old)

    def seal(self, node: RaftNode) -> None:
        node.cli("operator", "seal")

    def restart(self, node: RaftNode, timeout: float = 90, graceful: bool = True) -> None:
        """Stop `node` (SIGTERM, or SIGKILL with `graceful=False`), start it again and unseal it (auto-unseal
        does that itself); waits until the cluster is healthy."""
        if graceful:
            node._stop_server()
        else:
            node.kill()
        kill_pids(node.plugin_pids())
        node.start()
        self._unseal_if_shamir(node, timeout)
        self.wait_healthy(timeout)

    # -- mounts -----------------------------------------------------------
    def mount_pair(self, prefix: str = "pki", **options: Any) -> MountPair:
        """Our plugin and the built-in `pki` on fresh paths, readable on every node."""
        pair = MountPair(ours=unique_name(prefix), ref=unique_name("ref"))
        active = self.active()
        active.enable_builtin_mount(pair.ref, **options)
        active.enable_plugin_mount(pair.ours, **options)
        for m in (pair.ours, pair.ref):
            active.tune_max_ttl(m, "87600h")
            self.wait_readable(f"{m}/config/crl")
        return pair

    def wait_readable(self, path: str, nodes: list[RaftNode] | None = None, timeout: float = 30,
                      ok: Callable[[requests.Response], bool] = lambda r: r.status_code == 200) -> None:
        """Until GET `path` answers `ok` on each of `nodes` (default: every running node), served by that node
        itself (no forwarding)."""
        for node in nodes if nodes is not None else [n for n in self.nodes if n.running()]:
            deadline = time.monotonic() + timeout
            while True:
                try:
                    resp = node.request("GET", path, forward=False, timeout=10)
                    if ok(resp):
                        break
                    last = f"HTTP {resp.status_code} {resp.text[:200]}"
                except requests.RequestException as e:
                    last = str(e)
                if time.monotonic() > deadline:
                    raise HarnessError(f"{path} not readable on {node.node_id} after {timeout}s: {last}")
                time.sleep(0.05)

    def logs(self, lines: int = 40) -> str:
        return "\n".join(f"--- {n.node_id} ({n.log_path}) ---\n{n.log_tail(lines)}" for n in self.nodes)


@pytest.fixture(scope="session")
def cluster_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    c = Cluster(tmp_path_factory.mktemp("cluster")).start()
    try:
        yield c
    finally:
        c.stop()


@pytest.fixture
def cluster(cluster_session: Cluster) -> Cluster:
    """The session's 3-node raft cluster, healed (all nodes up and unsealed, one active). A failed test's
    report gets each node's log tail (integration/conftest.py)."""
    cluster_session.heal()
    return cluster_session


# -- scripts/dev --cluster ------------------------------------------------------------------------------
def main() -> int:
    parser = argparse.ArgumentParser(prog="scripts/dev --cluster")
    parser.add_argument("--nodes", type=int, default=3, help="raft nodes (default 3)")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    with tempfile.TemporaryDirectory(prefix="python-pki-cluster-") as tmp:
        c = Cluster(Path(tmp), size=args.nodes)
        try:
            c.start()
            active = c.active()
            active.enable_plugin_mount("pki")
            active.enable_builtin_mount("builtin")
            c.wait_readable("pki/config/crl")
            c.wait_readable("builtin/config/crl")
            print(f"OpenBao raft cluster of {len(c.nodes)} nodes on 127.0.0.1: python-pki mounted at pki/, the "
                  "built-in pki engine at builtin/.\n")
            for n in c.nodes:
                role = "active" if n.is_active() else "standby"
                print(f"  {n.node_id}  {n.addr}  {role:8}  server pid {n.proc.pid}, log {n.log_path}")
            print(f"\nRoot token {c.root_token}; recovery key {c.unseal_key}. The nodes share a static seal key, "
                  "so a restarted node unseals itself; after `bao operator seal`, `bao operator unseal` takes the "
                  "recovery key. Standbys answer reads themselves and forward writes to the active node.\n")
            for n in c.nodes:
                print(f"export BAO_ADDR={n.addr} VAULT_ADDR={n.addr} BAO_TOKEN={c.root_token} "
                      f"VAULT_TOKEN={c.root_token}   # {n.node_id}")
            print("\nPress Ctrl-C to stop the cluster.", flush=True)
            while any(n.running() for n in c.nodes):
                time.sleep(0.5)
            print("every server exited", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            print("stopping the cluster", file=sys.stderr)
            return 0
        except HarnessError as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
        finally:
            c.stop()


if __name__ == "__main__":
    sys.exit(main())
