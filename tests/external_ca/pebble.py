"""Test support: run Debian's pebble + pebble-challtestsrv on free loopback ports, and an ARI proxy.

pebble 2.4 has no renewalInfo endpoint, so `AriProxy` serves a copy of pebble's directory with a
`renewalInfo` URL added and answers RFC 9773 requests itself; every other URL in the directory still
points at pebble, so JWS `url` headers stay valid.
"""
from __future__ import annotations

import datetime as dt
import http.server
import ipaddress
import json
import os
import shutil
import socket
import ssl
import subprocess
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

PEBBLE = shutil.which("pebble") or "/usr/bin/pebble"
CHALLTESTSRV = shutil.which("pebble-challtestsrv") or "/usr/bin/pebble-challtestsrv"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def free_udp_tcp_port() -> int:
    while True:
        port = free_port()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            try:
                u.bind(("127.0.0.1", port))
                return port
            except OSError:
                continue


def _self_signed_tls(directory: str) -> tuple[str, str, str]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "pebble test TLS")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=2))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_pem = cert.public_bytes(serialization.Encoding.PEM).decode()
    cert_path, key_path = os.path.join(directory, "tls.pem"), os.path.join(directory, "tls.key")
    with open(cert_path, "w") as fh:
        fh.write(cert_pem)
    with open(key_path, "wb") as fh:
        fh.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                   serialization.NoEncryption()))
    return cert_path, key_path, cert_pem


def _wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args[0]} exited early with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"port {port} did not open")


@dataclass
class Pebble:
    directory_url: str
    management_url: str
    challtest_url: str
    tls_ca_pem: str
    tmp: str
    dns_port: int = 0
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)  # challtestsrv, pebble

    def _mgmt(self, path: str, body: dict[str, Any]) -> None:
        req = urllib.request.Request(self.challtest_url + path, data=json.dumps(body).encode(), method="POST")
        urllib.request.urlopen(req, timeout=10).read()

    def add_http01(self, token: str, content: str) -> None:
        self._mgmt("/add-http01", {"token": token, "content": content})

    def add_txt(self, host: str, value: str) -> None:
        self._mgmt("/set-txt", {"host": host if host.endswith(".") else host + ".", "value": value})

    def clear_txt(self, host: str) -> None:
        self._mgmt("/clear-txt", {"host": host if host.endswith(".") else host + "."})

    def _ctx(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cadata=self.tls_ca_pem)
        return ctx

    def root_pem(self) -> str:
        with urllib.request.urlopen(self.management_url + "/roots/0", context=self._ctx(), timeout=10) as r:
            return r.read().decode()

    def stop(self) -> None:
        for p in self.procs:
            p.terminate()
        for p in self.procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(self.tmp, ignore_errors=True)


def start_pebble(env_extra: dict[str, str] | None = None) -> Pebble:
    tmp = tempfile.mkdtemp(prefix="pebble-")
    cert_path, key_path, tls_pem = _self_signed_tls(tmp)
    acme_port, mgmt_port, http_port, tls_port = free_port(), free_port(), free_port(), free_port()
    dns_port, cts_mgmt = free_udp_tcp_port(), free_port()
    logs = open(os.path.join(tmp, "challtestsrv.log"), "wb")
    cts = subprocess.Popen(
        [CHALLTESTSRV, "-defaultIPv4", "127.0.0.1", "-defaultIPv6", "", "-dns01", f"127.0.0.1:{dns_port}",
         "-http01", f"127.0.0.1:{http_port}", "-tlsalpn01", f"127.0.0.1:{tls_port}", "-https01", "",
         "-management", f"127.0.0.1:{cts_mgmt}"], stdout=logs, stderr=subprocess.STDOUT)
    procs = [cts]
    try:
        _wait_port(cts_mgmt, cts)
        cfg = {"pebble": {"listenAddress": f"127.0.0.1:{acme_port}", "managementListenAddress":
                          f"127.0.0.1:{mgmt_port}", "certificate": cert_path, "privateKey": key_path,
                          "httpPort": http_port, "tlsPort": tls_port, "ocspResponderURL": "",
                          "externalAccountBindingRequired": False}}
        cfg_path = os.path.join(tmp, "pebble.json")
        with open(cfg_path, "w") as fh:
            json.dump(cfg, fh)
        env = dict(os.environ, PEBBLE_VA_NOSLEEP="1", **(env_extra or {}))
        plog = open(os.path.join(tmp, "pebble.log"), "wb")
        peb = subprocess.Popen([PEBBLE, "-config", cfg_path, "-dnsserver", f"127.0.0.1:{dns_port}"],
                               stdout=plog, stderr=subprocess.STDOUT, env=env)
        procs.append(peb)
        _wait_port(acme_port, peb)
        _wait_port(mgmt_port, peb)
    except Exception:
        for p in procs:
            p.kill()
        raise
    return Pebble(f"https://127.0.0.1:{acme_port}/dir", f"https://127.0.0.1:{mgmt_port}",
                  f"http://127.0.0.1:{cts_mgmt}", tls_pem, tmp, dns_port, procs)


class AriProxy:
    """Serves pebble's directory plus `renewalInfo`, and RFC 9773 answers with a window the test sets."""

    def __init__(self, pebble: Pebble) -> None:
        self.pebble = pebble
        self.window: tuple[dt.datetime, dt.datetime] | None = None
        self.requests: list[str] = []
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802
                proxy.requests.append(self.path)
                if self.path == "/dir":
                    with urllib.request.urlopen(pebble.directory_url, context=pebble._ctx(), timeout=10) as r:
                        directory = json.loads(r.read())
                    directory["renewalInfo"] = f"http://127.0.0.1:{proxy.port}/renewal-info"
                    self._send(200, directory)
                elif self.path.startswith("/renewal-info/"):
                    now = dt.datetime.now(dt.timezone.utc)
                    start, end = proxy.window or (now + dt.timedelta(days=20), now + dt.timedelta(days=25))
                    body = {"suggestedWindow": {"start": start.strftime("%Y-%m-%dT%H:%M:%SZ"),
                                                "end": end.strftime("%Y-%m-%dT%H:%M:%SZ")},
                            "explanationURL": "https://example.test/why"}
                    self._send(200, body, {"Retry-After": "3600"})
                else:
                    self._send(404, {"type": "urn:ietf:params:acme:error:malformed", "detail": "not here"})

            def _send(self, code: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
                raw = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(raw)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def directory_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/dir"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
