"""An in-process stand-in for the ACME calls (engine.external_ca.acme_client), for fast state-machine tests.

It validates a challenge as soon as it is answered and signs with its own throwaway CA; tests queue
failures (`fail_next`) to exercise rate limits and refusals.
"""
from __future__ import annotations

import datetime as dt
import itertools
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import josepy as jose
from acme import challenges, messages
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from engine.external_ca import acme_client


def _ca() -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Fake ACME Root")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256()))
    return key, cert


def _pub(key: Any) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.DER,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)


@dataclass
class FakeCA:
    now: Any
    calls: list[str] = field(default_factory=list)
    failures: dict[str, list[Exception]] = field(default_factory=dict)
    orders: dict[str, dict[str, Any]] = field(default_factory=dict)
    authzs: dict[str, dict[str, Any]] = field(default_factory=dict)
    revoked: list[int] = field(default_factory=list)
    # public key DER -> (account URL, contacts, status), as registered here
    accounts: dict[bytes, tuple[str, list[str], str]] = field(default_factory=dict)
    reuse_valid: bool = False
    processing_polls: int = 0
    _ids: Any = field(default_factory=lambda: itertools.count(1))

    def __post_init__(self) -> None:
        self.ca_key, self.ca_cert = _ca()

    def fail_next(self, op: str, exc: Exception) -> None:
        self.failures.setdefault(op, []).append(exc)

    def _enter(self, op: str) -> None:
        self.calls.append(op)
        queue = self.failures.get(op)
        if queue:
            raise queue.pop(0)

    def install(self, monkeypatch: Any) -> None:
        for name in ("connect", "register", "find_account", "deactivate", "key_change", "create_order",
                     "fetch_order", "fetch_authz", "answer", "finalize", "download", "revoke", "renewal_info",
                     "existing_account"):
            monkeypatch.setattr(acme_client, name, getattr(self, name))

    # --- the acme_client surface --------------------------------------------------------------------

    def connect(self, directory_url: str, key: Any, account_url: str, verify: Any) -> Any:
        self._enter("connect")
        return SimpleNamespace(directory_url=directory_url, key=key, account_url=account_url)

    def register(self, directory_url: str, key: Any, contacts: list[str], kid: str, hmac: str, verify: Any) -> str:
        self._enter("register")
        url = f"https://ca.test/acct/{next(self._ids)}"
        self.accounts[_pub(key)] = (url, list(contacts), "valid")
        return url

    def existing_account(self, directory_url: str, key: Any, verify: Any) -> acme_client.ExistingAccount | None:
        self._enter("existing_account")
        found = self.accounts.get(_pub(key))
        return None if found is None else acme_client.ExistingAccount(*found)

    def find_account(self, directory_url: str, key: Any, verify: Any) -> str | None:
        self._enter("find_account")
        return None

    def deactivate(self, conn: Any) -> None:
        self._enter("deactivate")

    def key_change(self, conn: Any, new_key: Any) -> None:
        self._enter("key_change")

    def create_order(self, conn: Any, identifiers: list[tuple[str, str]], replaces: str = "") -> tuple[str, Any]:
        self._enter("create_order")
        oid = next(self._ids)
        urls = []
        for typ, value in identifiers:
            aurl = f"https://ca.test/authz/{next(self._ids)}"
            wildcard = value.startswith("*.")
            self.authzs[aurl] = {"type": typ, "value": value[2:] if wildcard else value, "wildcard": wildcard,
                                 "status": "valid" if self.reuse_valid else "pending",
                                 "token": jose.b64.b64encode(aurl.encode()).decode()}
            urls.append(aurl)
        url = f"https://ca.test/order/{oid}"
        self.orders[url] = {"status": "ready" if self.reuse_valid else "pending", "authz": urls, "csr": None,
                            "polls": 0, "replaces": replaces}
        return url, self._order_body(url)

    def _order_body(self, url: str) -> messages.Order:
        o = self.orders[url]
        return messages.Order(status=messages.Status.from_json(o["status"]), authorizations=o["authz"],
                              finalize=url + "/finalize", expires=self.now() + dt.timedelta(days=1))

    def fetch_order(self, conn: Any, url: str) -> messages.Order:
        self._enter("fetch_order")
        return self._order_body(url)

    def fetch_authz(self, conn: Any, url: str) -> messages.Authorization:
        self._enter("fetch_authz")
        a = self.authzs[url]
        token = jose.b64.b64decode(a["token"])
        status = messages.Status.from_json(a["status"])
        chall_types = [challenges.HTTP01, challenges.DNS01] if a["type"] == "dns" else [challenges.HTTP01]
        if a["wildcard"]:
            chall_types = [challenges.DNS01]
        challs = tuple(messages.ChallengeBody(chall=ct(token=token), uri=f"{url}/{ct.typ}", status=status)
                       for ct in chall_types)
        return messages.Authorization(
            identifier=messages.Identifier(typ=messages.IdentifierType(a["type"]), value=a["value"]),
            status=status, challenges=challs, expires=self.now() + dt.timedelta(hours=1),
            wildcard=a["wildcard"] or None)

    def answer(self, conn: Any, authz_url: str, challenge_url: str) -> None:
        self._enter("answer")
        self.authzs[authz_url]["status"] = "valid"
        for o in self.orders.values():
            if all(self.authzs[u]["status"] == "valid" for u in o["authz"]) and o["status"] == "pending":
                o["status"] = "ready"

    def finalize(self, conn: Any, order_url: str, csr_pem: str) -> messages.Order:
        self._enter("finalize")
        o = self.orders[order_url]
        if o["status"] == "ready":
            o["csr"] = csr_pem
            o["status"] = "processing"
        return self._order_body(order_url)

    def download(self, conn: Any, order_url: str) -> str | None:
        self._enter("download")
        o = self.orders[order_url]
        if o["status"] == "processing":
            if o["polls"] < self.processing_polls:
                o["polls"] += 1
                return None
            o["status"] = "valid"
        csr = x509.load_pem_x509_csr(o["csr"].encode())
        now = dt.datetime.now(dt.timezone.utc)
        san = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        cert = (x509.CertificateBuilder().subject_name(x509.Name([])).issuer_name(self.ca_cert.subject)
                .public_key(csr.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - dt.timedelta(minutes=1)).not_valid_after(now + dt.timedelta(days=7))
                .add_extension(san, critical=True)
                .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self.ca_key.public_key()),
                               critical=False)
                .sign(self.ca_key, hashes.SHA256()))
        pem = lambda c: c.public_bytes(serialization.Encoding.PEM).decode()  # noqa: E731
        return pem(cert) + pem(self.ca_cert)

    def revoke(self, conn: Any, cert_pem: str, reason: int) -> None:
        self._enter("revoke")
        self.revoked.append(reason)

    def renewal_info(self, conn: Any, cert_pem: str) -> acme_client.RenewalInfo:
        self._enter("renewal_info")
        return acme_client.RenewalInfo(False)
