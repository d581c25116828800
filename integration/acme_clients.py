"""Real ACME clients we did not write (certbot, lego, Caddy) against a mount's ACME server in a real `bao`.

- `make_acme_mount()`: an `AcmeMount` (acme_server_support) whose ACME DNS resolver is the `ChallDns` below.
- `ChallDns`: Debian's pebble-challtestsrv serving DNS only. Every A query answers 127.0.0.1 (its -defaultIPv4), so
  any `*.acme.test` name the validator looks up lands on this machine; TXT records are written through its
  management API (the dns-01 hooks below do that from inside the clients).
- `challenge_ports()`: the ACME validators connect to port 80 (http-01) and 443 (tls-alpn-01) of the identifier's
  address, so the clients must bind those on 127.0.0.1. The ports are machine-wide, so one exclusive lock file
  serializes every test that binds them, across xdist workers and across test sessions on the same machine.
- `verify_issued()`: the chain a client saved, checked with `openssl verify` against the mount's own CA (not the
  chain the server sent) and linted with pkilint.
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import ipaddress
import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Iterator

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from integration.acme_server_support import AcmeMount, make_mount
from integration.harness import BaoServer, HarnessError
from integration.lint import WILDCARD_DNS, lint_findings, openssl_verify
from tests.external_ca.pebble import CHALLTESTSRV, free_port, free_udp_tcp_port

# Machine-wide: every test (of any session) that binds 127.0.0.1:80/443 takes this lock first.
PORT_LOCK = Path(tempfile.gettempdir()) / "python-pki-acme-ports.lock"
HTTP01_PORT, TLSALPN01_PORT = 80, 443
DNS_HOOK = Path(__file__).with_name("acme_dns_hook.py")


def fresh_name(label: str) -> str:
    """A fresh DNS name under acme.test (never reused, so no authorization is reused across tests)."""
    return f"{label}-{uuid.uuid4().hex[:8]}.acme.test"


def _end(proc: subprocess.Popen) -> None:
    """SIGTERM, then SIGKILL after 10 s, for a helper process still running."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


# -- ports 80/443 -------------------------------------------------------------------------------------------------

def _bindable(port: int) -> str:
    """'' when 127.0.0.1:port can be bound now, else why not."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except PermissionError:
            return f"binding 127.0.0.1:{port} needs root (or net.ipv4.ip_unprivileged_port_start <= {port})"
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                return f"127.0.0.1:{port} is in use by another process"
            return f"cannot bind 127.0.0.1:{port}: {e}"
    return ""


@contextlib.contextmanager
def challenge_ports(wait: float = 900) -> Iterator[None]:
    """Hold ports 80 and 443 of 127.0.0.1 for the block; skip the test when they cannot be had."""
    with open(PORT_LOCK, "a") as fh:
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    pytest.skip(f"ports 80/443 stayed locked by another test ({PORT_LOCK}) for {wait:.0f}s")
                time.sleep(0.2)
        try:
            # A client of the previous test may take a moment to let go of its socket.
            why = ""
            for _ in range(50):
                why = _bindable(HTTP01_PORT) or _bindable(TLSALPN01_PORT)
                if not why or "in use" not in why:
                    break
                time.sleep(0.2)
            if why:
                pytest.skip(f"ACME challenge ports unavailable: {why}")
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


# -- DNS ----------------------------------------------------------------------------------------------------------

class ChallDns:
    """pebble-challtestsrv as a DNS server only (its HTTP-01/TLS-ALPN-01 responders off: the clients serve those)."""

    def __init__(self, workdir: Path) -> None:
        if not Path(CHALLTESTSRV).exists():
            pytest.skip("pebble-challtestsrv not installed (apt-get install pebble)")
        self.dns_port = free_udp_tcp_port()
        self.mgmt_port = free_port()
        self.management_url = f"http://127.0.0.1:{self.mgmt_port}"
        self.log_path = workdir / "challtestsrv.log"
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [CHALLTESTSRV, "-defaultIPv4", "127.0.0.1", "-defaultIPv6", "", "-dns01", f"127.0.0.1:{self.dns_port}",
             "-http01", "", "-https01", "", "-tlsalpn01", "", "-management", f"127.0.0.1:{self.mgmt_port}"],
            stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.mgmt_port), timeout=0.5):
                    break
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise HarnessError(f"pebble-challtestsrv did not start (log {self.log_path})")
                time.sleep(0.1)

    @property
    def resolver(self) -> str:
        return f"127.0.0.1:{self.dns_port}"

    def add_txt(self, host: str, value: str) -> None:
        body = json.dumps({"host": host if host.endswith(".") else host + ".", "value": value}).encode()
        urllib.request.urlopen(urllib.request.Request(f"{self.management_url}/set-txt", data=body, method="POST"),
                               timeout=10).read()

    def hook_env(self) -> dict[str, str]:
        """What the dns-01 hook (acme_dns_hook.py) needs to find this server."""
        return {"CHALLTESTSRV_URL": self.management_url}

    def stop(self) -> None:
        _end(self.proc)
        self._log.close()


# -- the mount ----------------------------------------------------------------------------------------------------

def make_acme_mount(bao: BaoServer, kind: str, dns: ChallDns, **acme_config: object) -> AcmeMount:
    """`make_mount` with `dns` as the mount's ACME DNS resolver."""
    return make_mount(bao, kind, dns.resolver, **acme_config)


# -- checking what a client got -----------------------------------------------------------------------------------

def load_chain(pem: bytes | str) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates(pem.encode() if isinstance(pem, str) else pem)


def verify_issued(mount: AcmeMount, chain_pem: bytes | str, names: list[str], workdir: Path,
                  ips: list[str] = ()) -> x509.Certificate:
    """Assert the saved chain's leaf names exactly `names` (and `ips`), verifies against the mount's root and lints
    clean."""
    chain = load_chain(chain_pem)
    assert chain, "the client saved no certificate"
    leaf, served = chain[0], chain[1:]
    root = x509.load_pem_x509_certificate(mount.root_pem.encode())
    sans = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sorted(sans.get_values_for_type(x509.DNSName)) == sorted(names)
    assert sorted(str(ip) for ip in sans.get_values_for_type(x509.IPAddress)) == sorted(ips)
    # Trust only the mount's own CA; intermediates the server sent are untrusted helpers.
    problem = openssl_verify(leaf, [root, *(c for c in served if c.subject != c.issuer)], workdir)
    assert problem == "", f"openssl verify against the {mount.kind} mount's CA: {problem}"
    findings = lint_findings(leaf, exempt=[WILDCARD_DNS])
    known = [f for f in findings if mount.kind == "builtin" and BUILTIN_EC_KEY_ENCIPHERMENT in f
             and isinstance(leaf.public_key(), ec.EllipticCurvePublicKey)]
    record_verdict(mount.kind, "clean" if not findings else "; ".join(f.split(": ", 1)[1] for f in findings))
    assert [f for f in findings if f not in known] == [], f"pkilint on the {mount.kind} mount's certificate"
    return leaf


# The built-in's default key_usage (DigitalSignature, KeyAgreement, KeyEncipherment) reaches EC leaves unfiltered;
# RFC 8813 forbids keyEncipherment with an EC key and pkilint reports it. Ours filters usages by key type (README).
# That one finding is tolerated, on the built-in only, so the matrix can show both verdicts.
BUILTIN_EC_KEY_ENCIPHERMENT = "pkix.key_usage_value_prohibited_for_ec"
MATRIX_ENV = "PYTHON_PKI_ACME_MATRIX"


def record_verdict(kind: str, verdict: str) -> None:
    """Append this test's pkilint verdict to the file $PYTHON_PKI_ACME_MATRIX names (for the client matrix)."""
    target = os.environ.get(MATRIX_ENV)
    if target:
        test = os.environ.get("PYTEST_CURRENT_TEST", "?").split(" ")[0]
        with open(target, "a") as fh:
            fh.write(json.dumps({"test": test, "mount": kind, "pkilint": verdict}) + "\n")


def served_certificate(host: str, port: int, root_pem: str, timeout: float = 90) -> x509.Certificate:
    """The certificate a TLS server on 127.0.0.1:port presents for SNI `host`, verified against `root_pem`;
    retried until it verifies (a server obtaining its certificate serves a placeholder or nothing first)."""
    ctx = ssl.create_default_context(cadata=root_pem)
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
                with ctx.wrap_socket(raw, server_hostname=host) as tls:
                    return x509.load_der_x509_certificate(tls.getpeercert(binary_form=True))
        except (OSError, ssl.SSLError) as e:
            last = e
            time.sleep(1)
    raise AssertionError(f"no certificate for {host} verifying against the mount's CA on :{port}: {last}")


# -- the clients --------------------------------------------------------------------------------------------------

def _run(cmd: list[str], env: dict[str, str] | None = None, timeout: float = 240, cwd: Path | None = None
         ) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, env={**os.environ, **(env or {})}, capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL, cwd=cwd)


def _tail(proc: subprocess.CompletedProcess, lines: int = 40) -> str:
    return "\n".join((proc.stdout + proc.stderr).splitlines()[-lines:])


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
        return True
    except ValueError:
        return False


class Certbot:
    """certbot from the test extra (PyPI, 4+), with its state in `workdir`."""

    def __init__(self, workdir: Path, directory: str, dns: ChallDns) -> None:
        self.binary = str(Path(sys.executable).parent / "certbot")
        if not os.access(self.binary, os.X_OK):
            pytest.skip("certbot not installed in the venv (the test extra has certbot>=4)")
        self.workdir = workdir
        self.directory = directory
        self.dns = dns
        self.config_dir = workdir / "config"
        self.log_path = workdir / "logs" / "letsencrypt.log"

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        cmd = [self.binary, *args, "--non-interactive", "--server", self.directory,
               "--config-dir", str(self.config_dir), "--work-dir", str(self.workdir / "work"),
               "--logs-dir", str(self.workdir / "logs")]
        proc = _run(cmd, env=self.dns.hook_env())
        if check and proc.returncode != 0:
            raise AssertionError(f"certbot {' '.join(args)} exited {proc.returncode}:\n{_tail(proc)}\n"
                                 f"--- log ---\n{self.log_tail()}")
        return proc

    def log_tail(self, lines: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no certbot log)"

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    REGISTER = ("--agree-tos", "--register-unsafely-without-email")

    def standalone(self, names: list[str], *extra: str, check: bool = True) -> subprocess.CompletedProcess:
        """http-01 through certbot's own responder on :80; names that are IP addresses go as --ip-address."""
        domains = [a for n in names for a in (("--ip-address" if _is_ip(n) else "-d"), n)]
        return self.run("certonly", "--standalone", "--http-01-address", "127.0.0.1",
                        "--http-01-port", str(HTTP01_PORT), *self.REGISTER, *domains, *extra, check=check)

    def manual_dns(self, names: list[str], *extra: str) -> subprocess.CompletedProcess:
        hook = f"{sys.executable} {DNS_HOOK}"
        domains = [a for n in names for a in ("-d", n)]
        return self.run("certonly", "--manual", "--preferred-challenges", "dns",
                        "--manual-auth-hook", f"{hook} certbot-auth",
                        "--manual-cleanup-hook", f"{hook} certbot-cleanup", *self.REGISTER, *domains, *extra)

    def live(self, name: str, what: str = "fullchain.pem") -> bytes:
        return (self.config_dir / "live" / name / what).read_bytes()


class Lego:
    """Debian's lego, with its state in `workdir`."""

    def __init__(self, workdir: Path, directory: str, dns: ChallDns) -> None:
        self.binary = shutil.which("lego")
        if not self.binary:
            pytest.skip("lego not installed (apt-get install lego)")
        self.workdir = workdir
        self.directory = directory
        self.dns = dns

    def run(self, names: list[str], challenge: str) -> subprocess.CompletedProcess:
        env: dict[str, str] = {}
        if challenge == "http-01":
            solver = ["--http", "--http.port", f"127.0.0.1:{HTTP01_PORT}"]
        elif challenge == "tls-alpn-01":
            solver = ["--tls", "--tls.port", f"127.0.0.1:{TLSALPN01_PORT}"]
        else:
            # The exec provider runs EXEC_PATH with `present|cleanup <fqdn> <value>`. challtestsrv answers no SOA,
            # so lego's own propagation check (which looks for the zone's authoritative servers) is off.
            wrapper = self.workdir / "dns-hook"
            wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{DNS_HOOK}" lego "$@"\n')
            wrapper.chmod(0o755)
            solver = ["--dns", "exec", "--dns.disable-cp", "--dns.resolvers", self.dns.resolver]
            env = {**self.dns.hook_env(), "EXEC_PATH": str(wrapper), "EXEC_POLLING_INTERVAL": "1",
                   "EXEC_PROPAGATION_TIMEOUT": "30"}
        domains = [a for n in names for a in ("--domains", n)]
        cmd = [self.binary, "--server", self.directory, "--accept-tos", "--email", "ops@example.com",
               "--path", str(self.workdir / "lego"), *domains, *solver, "run"]
        proc = _run(cmd, env=env)
        if proc.returncode != 0:
            raise AssertionError(f"lego {challenge} exited {proc.returncode}:\n{_tail(proc)}")
        return proc

    def certificate(self, name: str) -> bytes:
        return (self.workdir / "lego" / "certificates" / f"{name.replace('*', '_')}.crt").read_bytes()


class Caddy:
    """Debian's caddy with automatic HTTPS for one site, its ACME CA our directory, everything kept in `workdir`."""

    def __init__(self, workdir: Path, directory: str, root_pem: str) -> None:
        self.binary = shutil.which("caddy")
        if not self.binary:
            pytest.skip("caddy not installed (apt-get install caddy)")
        self.workdir = workdir
        self.directory = directory
        (workdir / "acme-root.pem").write_text(root_pem)
        self.log_path = workdir / "caddy.log"
        self.proc: subprocess.Popen | None = None

    def caddyfile(self, site: str, challenge: str, eab: tuple[str, str] | None = None) -> str:
        disable = "disable_tlsalpn_challenge" if challenge == "http-01" else "disable_http_challenge"
        binding = f"\tacme_eab {{\n\t\tkey_id {eab[0]}\n\t\tmac_key {eab[1]}\n\t}}\n" if eab else ""
        return f"""{{
{binding}
\tadmin off
\tskip_install_trust
\tocsp_stapling off
\tdefault_bind 127.0.0.1
\thttp_port {HTTP01_PORT}
\thttps_port {TLSALPN01_PORT}
\tstorage file_system {self.workdir / "data"}
\tacme_ca {self.directory}
\tacme_ca_root {self.workdir / "acme-root.pem"}
}}

{site} {{
\ttls {{
\t\tissuer acme {{
\t\t\t{disable}
\t\t}}
\t}}
\trespond "served by caddy for {site}"
}}
"""

    def start(self, site: str, challenge: str, eab: tuple[str, str] | None = None) -> None:
        path = self.workdir / "Caddyfile"
        path.write_text(self.caddyfile(site, challenge, eab))
        home = self.workdir / "home"
        home.mkdir(exist_ok=True)
        env = {**os.environ, "HOME": str(home), "XDG_DATA_HOME": str(home / "data"),
               "XDG_CONFIG_HOME": str(home / "config")}
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen([self.binary, "run", "--config", str(path), "--adapter", "caddyfile"],
                                     env=env, stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    def log_lines(self) -> list[dict]:
        out = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            with contextlib.suppress(ValueError):
                out.append(json.loads(line))
        return out

    def stored_certificate(self, site: str) -> bytes:
        found = list((self.workdir / "data" / "certificates").glob(f"*/{site}/{site}.crt"))
        assert found, f"caddy stored no certificate for {site}:\n{self.log_tail()}"
        return found[0].read_bytes()

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        if self.proc:
            _end(self.proc)
            self._log.close()
