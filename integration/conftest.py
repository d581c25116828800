"""Fixtures for tests against a real OpenBao server (see integration/harness.py).

- `bao` (session): one `bao server -dev` per test session (per xdist worker) on
  a free loopback port, our plugin registered as secret plugin `python-pki`,
  mounted at `pki/`, and the built-in PKI engine at `ref/`. If mounting our
  plugin fails, `bao.plugin_mount_error` holds why (tests of the built-in
  engine still run; tests using `pki/` fail with that reason).
- `mounts` (function): a fresh, uniquely named pair of mounts
  (`mounts.ours`, `mounts.ref`), disabled after the test.
- `cluster` (function, over `cluster_session`): a real 3-node OpenBao raft cluster, one per session, healed
  before each test (integration/cluster.py).
- `vault_docker` (session): HashiCorp Vault in the `hashicorp/vault` image with
  our plugin registered (not mounted); skipped when no Docker engine is reachable.

On a failed test the server log's path and its last lines are added to the
report; the log stays in pytest's temp directory after the run.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import pytest

from integration.cluster import cluster, cluster_session  # noqa: F401 - fixtures for the cluster tests
from integration.harness import (
    BaoServer,
    DockerUnavailable,
    HarnessError,
    VaultContainer,
    unique_name,
)

_SERVER_KEY = pytest.StashKey[BaoServer]()


@pytest.fixture(scope="session")
def bao(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[BaoServer]:
    server = BaoServer(tmp_path_factory.mktemp("bao"))
    request.session.stash[_SERVER_KEY] = server
    try:
        server.start()
        server.register()
        server.enable_builtin_mount("ref")
        server.plugin_mount_error = None
        try:
            server.enable_plugin_mount("pki")
        except HarnessError as e:
            server.plugin_mount_error = str(e)
        yield server
    finally:
        server.stop()
        if request.session.testsfailed:
            print(f"\nbao server log kept at {server.log_path}")


@dataclass(frozen=True)
class Mounts:
    ours: str
    ref: str


@pytest.fixture
def mounts(bao: BaoServer) -> Iterator[Mounts]:
    """A uniquely named (ours, built-in) pair of mounts, disabled afterwards."""
    ours = unique_name("pki")
    ref = unique_name("ref")
    bao.enable_builtin_mount(ref)
    try:
        bao.enable_plugin_mount(ours)
    except BaseException:
        bao.disable_mount(ref)
        raise
    try:
        yield Mounts(ours=ours, ref=ref)
    finally:
        for path in (ours, ref):
            try:
                bao.disable_mount(path)
            except HarnessError:
                pass


@pytest.fixture(scope="session")
def vault_docker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VaultContainer]:
    vault = VaultContainer(tmp_path_factory.mktemp("vault"))
    try:
        vault.start()
    except DockerUnavailable as e:
        pytest.skip(str(e))
    try:
        vault.register()
        yield vault
    finally:
        vault.stop()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    outcome = yield
    report = outcome.get_result()
    if not report.failed:
        return
    cluster = getattr(item, "funcargs", {}).get("cluster")
    if cluster is not None and hasattr(cluster, "logs"):
        report.sections.append(("cluster logs", cluster.describe() + "\n" + cluster.logs(40)))
    server = item.session.stash.get(_SERVER_KEY, None)
    if server is None:
        return
    report.sections.append(
        (
            "bao server log",
            f"log: {server.log_path}\nlauncher: {server.launcher_path}\n"
            f"--- last lines ---\n{server.log_tail(60)}",
        )
    )
