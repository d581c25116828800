"""ACME benchmarks (area `acme`): our mount's ACME server next to the built-in's in one `bao`.

- new-account -> certificate: one client, one http-01 identifier, the seconds from the new-account request to the
  downloaded chain (median of a few runs).
- orders per second: 8 clients, each with its own account, ordering one-name certificates back to back for
  `--duration` seconds.

The client is certbot's `acme` package; http-01 is answered by a responder on 127.0.0.1:80 (where both validators
look; names resolve there through pebble-challtestsrv as `dns_resolver`). The client polls every 50 ms instead of
the package's 1 s, so the figures show the servers' validation and issuance, not the client's sleeps.
"""
from __future__ import annotations

import http.server
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable

import josepy
from acme import challenges, client as acme_client, messages
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from integration.acme_clients import AcmeMount, ChallDns, challenge_ports, fresh_name, make_acme_mount
from integration.harness import BaoServer, HarnessError
from scripts.benchmarks import report

POLL = 0.05
ORDER_TIMEOUT = 120.0


class Http01Responder:
    """Answers /.well-known/acme-challenge/<token> on 127.0.0.1:80 from a shared table."""

    def __init__(self) -> None:
        self.answers: dict[str, str] = {}
        table = self.answers

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802
                token = self.path.rsplit("/", 1)[-1]
                body = table.get(token, "").encode() if self.path.startswith("/.well-known/acme-challenge/") else b""
                self.send_response(200 if body else 404)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 80), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _csr(name: str) -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (x509.CertificateSigningRequestBuilder().subject_name(x509.Name([]))
           .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False).sign(key, hashes.SHA256()))
    return csr.public_bytes(serialization.Encoding.PEM)


class Client:
    """One ACME account on a directory; `order()` runs one http-01 order to its certificate."""

    def __init__(self, directory: str, responder: Http01Responder) -> None:
        self.responder = responder
        self.key = josepy.JWKEC(key=ec.generate_private_key(ec.SECP256R1()))
        self.net = acme_client.ClientNetwork(self.key, alg=josepy.ES256, user_agent="python-pki-bench")
        self.acme = acme_client.ClientV2(messages.Directory.from_json(self.net.get(directory).json()), net=self.net)

    def register(self) -> None:
        self.acme.new_account(messages.NewRegistration.from_data(terms_of_service_agreed=True))

    def _get(self, url: str) -> dict:
        return self.net.post(url, None, new_nonce_url=self.acme.directory["newNonce"]).json()

    def _until(self, url: str, done: Callable[[dict], bool]) -> dict:
        deadline = time.monotonic() + ORDER_TIMEOUT
        while True:
            body = self._get(url)
            if body.get("status") == "invalid":
                raise HarnessError(f"{url} is invalid: {body}")
            if done(body):
                return body
            if time.monotonic() > deadline:
                raise HarnessError(f"{url} still {body.get('status')} after {ORDER_TIMEOUT:.0f}s")
            time.sleep(POLL)

    def order(self) -> None:
        orderr = self.acme.new_order(_csr(fresh_name("bench")))
        for authzr in orderr.authorizations:
            challb = next(c for c in authzr.body.challenges if isinstance(c.chall, challenges.HTTP01))
            response, validation = challb.response_and_validation(self.key)
            self.responder.answers[challb.chall.encode("token")] = validation
            self.acme.answer_challenge(challb, response)
            self._until(authzr.uri, lambda b: b.get("status") == "valid")
        self._until(orderr.uri, lambda b: b.get("status") == "ready")
        self.acme.begin_finalization(orderr)
        body = self._until(orderr.uri, lambda b: b.get("status") == "valid" and b.get("certificate"))
        chain = self.net.post(body["certificate"], None, new_nonce_url=self.acme.directory["newNonce"]).text
        if "BEGIN CERTIFICATE" not in chain:
            raise HarnessError(f"no chain from {body['certificate']}")


def account_to_certificate(mount: AcmeMount, responder: Http01Responder, runs: int = 3) -> float:
    times = []
    for _ in range(runs):
        client = Client(mount.directory, responder)
        t0 = time.perf_counter()
        client.register()
        client.order()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def orders_per_second(mount: AcmeMount, responder: Http01Responder, duration: float, clients: int = 8
                      ) -> tuple[float, int]:
    accounts = [Client(mount.directory, responder) for _ in range(clients)]
    for a in accounts:
        a.register()
    done, errors = [0], [0]
    lock = threading.Lock()
    stop_at = time.monotonic() + duration

    def work(a: Client) -> None:
        while time.monotonic() < stop_at:
            try:
                a.order()
                with lock:
                    done[0] += 1
            except Exception:  # noqa: BLE001 - counted, the run goes on
                with lock:
                    errors[0] += 1

    t0 = time.monotonic()
    threads = [threading.Thread(target=work, args=(a,)) for a in accounts]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return done[0] / (time.monotonic() - t0), errors[0]


def bench_acme(bao: BaoServer, args) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-acme-") as tmp, challenge_ports():
        dns = ChallDns(Path(tmp))
        responder = Http01Responder()
        try:
            mounts = {kind: make_acme_mount(bao, kind, dns) for kind in ("ours", "builtin")}
            latency = {k: account_to_certificate(m, responder) for k, m in mounts.items()}
            report(f"| ACME new-account -> certificate (http-01, 1 client, median of 3) | ours {latency['ours']:.2f} s, "
                   f"built-in {latency['builtin']:.2f} s | ratio {latency['ours'] / latency['builtin']:.2f}x | |")
            rates = {k: orders_per_second(m, responder, args.duration) for k, m in mounts.items()}
            (a, a_err), (b, b_err) = rates["ours"], rates["builtin"]
            report(f"| ACME orders, 8 clients (http-01, {args.duration}s) | ours {a:.2f} orders/s ({a_err} errors), "
                   f"built-in {b:.2f} orders/s ({b_err} errors) | throughput ratio {a / b if b else float('nan'):.2f}x"
                   f" | |")
        finally:
            responder.stop()
            dns.stop()


BENCHES = {"acme": bench_acme}
