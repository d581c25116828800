"""Blocking RFC 8555 operations on top of the `acme` package (run them in a thread, never on the event loop).

Each function does one idempotent step so that the state machine can repeat it after a crash. Failures are
sorted into `RetryLater` (rate limits, server trouble, network) and `AcmeFailed` (the CA said no).
"""
from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import logging
import os
import shutil
import tempfile
import threading
from dataclasses import dataclass, field
from typing import Any

import josepy as jose
import requests
from acme import challenges, client, errors, messages
from acme import jws as acme_jws
from cryptography import x509

from engine.external_ca import transport
from engine.external_ca.keys import PrivateKey, jwk_of, jws_alg
from engine.external_ca.transport import HostNotAllowed, Reach, TransportError, as_reach

BAD_NONCE_RETRIES = 10
USER_AGENT = "python-pki-external-ca"
GARBAGE = "the ACME server sent a reply that is not a valid ACME object"


class _NoDebugBodies(logging.Filter):
    """acme's client logs every JWS payload and response body at debug level; keep them out of our log."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno > logging.DEBUG


logging.getLogger("acme.client").addFilter(_NoDebugBodies())
log = logging.getLogger("python-pki.external-ca")


class RetryLater(Exception):
    """A transient failure: try the same step again after `retry_after` seconds."""

    def __init__(self, message: str, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after


class AcmeFailed(Exception):
    """The CA refused the request for good (the order or call cannot succeed by repeating it)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class _Network(client.ClientNetwork):
    """ClientNetwork that survives runs of rejected nonces and remembers the last response's headers."""

    last_response: requests.Response | None = None

    def __init__(self, *args: Any, policy: transport.HostPolicy, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.session.close()
        self.session = transport.bounded_session(policy)

    def _send_request(self, method: str, url: str, *args: Any, **kwargs: Any) -> requests.Response:
        # Replaces acme's, which logs bodies and reads them unbounded (see transport.py).
        kwargs["verify"] = self.verify_ssl
        kwargs.setdefault("headers", {})
        kwargs["headers"].setdefault("User-Agent", self.user_agent)
        kwargs.pop("timeout", None)
        response = transport.request(self.session, method, url, *args, **kwargs)
        if "Accept" not in kwargs["headers"]:
            response.encoding = "utf-8"
        self.last_response = response
        return response

    def post(self, *args: Any, **kwargs: Any) -> requests.Response:
        for _ in range(BAD_NONCE_RETRIES):
            try:
                return self._post_once(*args, **kwargs)
            except messages.Error as error:
                if error.code != "badNonce":
                    raise
        return self._post_once(*args, **kwargs)


class _NewOrder(messages.NewOrder):
    """newOrder with RFC 9773's `replaces`, which `acme`'s message does not carry."""

    replaces: str | None = jose.field("replaces", omitempty=True)


@dataclass
class Conn:
    """One account's connection: directory, network (holding nonces) and key. Calls are serialised."""

    directory_url: str
    key: PrivateKey
    account_url: str
    verify: bool | str
    client: client.ClientV2
    net: _Network
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def jwk(self) -> jose.JWK:
        return jwk_of(self.key)

    def post(self, url: str, obj: Any) -> requests.Response:
        return self.net.post(url, obj, new_nonce_url=self.client.directory["newNonce"])

    def post_as_get(self, url: str, **kwargs: Any) -> requests.Response:
        return self.net.post(url, None, new_nonce_url=self.client.directory["newNonce"], **kwargs)


class TrustStore:
    """Files holding `trusted_ca` bundles, since `requests` verifies against a path."""

    def __init__(self) -> None:
        self._dir = tempfile.mkdtemp(prefix="python-pki-external-ca-")
        self._lock = threading.Lock()

    def verify_for(self, trusted_ca: str) -> bool | str:
        if not trusted_ca.strip():
            return True
        digest = hashlib.sha256(trusted_ca.encode()).hexdigest()
        path = os.path.join(self._dir, digest + ".pem")
        with self._lock:
            if not os.path.exists(path):
                with open(path, "w", encoding="ascii") as fh:
                    fh.write(trusted_ca)
        return path

    def close(self) -> None:
        shutil.rmtree(self._dir, ignore_errors=True)


def _retry_after(net: _Network) -> int | None:
    resp = net.last_response
    if resp is None:
        return None
    header = resp.headers.get("Retry-After")
    if not header:
        return None
    when = client.ClientV2.retry_after(resp, 1)
    return max(1, int((when - dt.datetime.now()).total_seconds()))


def classify(exc: BaseException, net: _Network | None) -> Exception:
    """Map a failure from the `acme` stack to RetryLater or AcmeFailed."""
    if isinstance(exc, (RetryLater, AcmeFailed)):
        return exc
    if isinstance(exc, HostNotAllowed):
        return AcmeFailed(str(exc))
    if isinstance(exc, TransportError):
        if exc.detail:
            log.info("ACME request failed: %s", exc.detail)
        return RetryLater(transport.UNREACHABLE)
    retry = _retry_after(net) if net is not None else None
    if isinstance(exc, messages.Error):
        status = net.last_response.status_code if net is not None and net.last_response is not None else 0
        text = f"ACME error {exc.typ}: {exc.detail or exc.title or ''}".strip()
        if exc.code in ("rateLimited", "serverInternal", "badNonce") or status == 429 or status >= 500:
            return RetryLater(text, retry)
        return AcmeFailed(text)
    if isinstance(exc, errors.TimeoutError):
        return RetryLater("ACME server is still processing", retry)
    if isinstance(exc, errors.IssuanceError):
        return AcmeFailed(f"ACME order failed: {exc.error.detail or exc.error.typ}")
    if isinstance(exc, (requests.exceptions.RequestException, errors.ClientError, OSError)):
        status = net.last_response.status_code if net is not None and net.last_response is not None else 0
        if status == 429:
            return RetryLater("ACME server rate limit (429)", retry)
        return RetryLater(transport.UNREACHABLE, retry)
    if isinstance(exc, errors.Error):
        return AcmeFailed(f"ACME client error: {exc}")
    if isinstance(exc, (jose.DeserializationError, ValueError, KeyError, TypeError, AttributeError)):
        # A 2xx whose body is not the ACME object asked for (or lacks a header RFC 8555 requires) is no success.
        log.info("unusable ACME reply: %s", type(exc).__name__)
        return RetryLater(GARBAGE, retry)
    return exc if isinstance(exc, Exception) else RuntimeError(str(exc))


def _network(key: PrivateKey, reach: Reach) -> _Network:
    return _Network(key=jwk_of(key), alg=jws_alg(key), verify_ssl=reach.verify,  # type: ignore[arg-type]
                    user_agent=USER_AGENT, policy=reach.policy)


def connect(directory_url: str, key: PrivateKey, account_url: str, verify: Reach | bool | str) -> Conn:
    net = _network(key, as_reach(verify))
    try:
        with transport.deadline():
            directory = client.ClientV2.get_directory(directory_url, net)
            for name in ("newNonce", "newAccount", "newOrder"):
                if not isinstance(directory[name], str):
                    raise TypeError(name)
    except Exception as exc:  # noqa: BLE001 - sorted by classify
        raise classify(exc, net) from None
    acme_client = client.ClientV2(directory, net)
    if account_url:
        net.account = messages.RegistrationResource(uri=account_url, body=messages.Registration())
    return Conn(directory_url, key, account_url, verify, acme_client, net)


def register(directory_url: str, key: PrivateKey, contacts: list[str], eab_kid: str, eab_key: str,
             verify: bool | str) -> str:
    """Create (or find, if this key already has one) the account; returns its URL."""
    with transport.deadline():
        return _register(directory_url, key, contacts, eab_kid, eab_key, verify)


def _register(directory_url: str, key: PrivateKey, contacts: list[str], eab_kid: str, eab_key: str,
              verify: Reach | bool | str) -> str:
    conn = connect(directory_url, key, "", verify)
    try:
        eab = None
        if eab_kid:
            eab = messages.ExternalAccountBinding.from_data(
                account_public_key=conn.jwk.public_key(), kid=eab_kid, hmac_key=eab_key,
                directory=conn.client.directory)
        elif conn.client.external_account_required():
            raise AcmeFailed("the ACME server requires external account binding (eab_kid and eab_key)")
        reg = messages.NewRegistration.from_data(email=",".join(contacts), terms_of_service_agreed=True,
                                                 external_account_binding=eab)
        regr = conn.client.new_account(reg)
        if not regr.uri:
            raise KeyError("Location")
        return regr.uri
    except errors.ConflictError as exc:
        return str(exc.location)
    except Exception as exc:  # noqa: BLE001
        raise classify(exc, conn.net) from None


def find_account(directory_url: str, key: PrivateKey, verify: bool | str) -> str | None:
    """The account URL registered to this key, or None (newAccount with onlyReturnExisting)."""
    with transport.deadline():
        return _find_account(directory_url, key, verify)


def _find_account(directory_url: str, key: PrivateKey, verify: Reach | bool | str) -> str | None:
    conn = connect(directory_url, key, "", verify)
    try:
        resp = conn.post(conn.client.directory["newAccount"],
                         messages.NewRegistration(only_return_existing=True))
        return resp.headers.get("Location")
    except messages.Error as exc:
        if exc.code == "accountDoesNotExist":
            return None
        raise classify(exc, conn.net) from None
    except Exception as exc:  # noqa: BLE001
        raise classify(exc, conn.net) from None


@dataclass
class ExistingAccount:
    url: str
    contacts: list[str]
    status: str


def existing_account(directory_url: str, key: PrivateKey, verify: bool | str) -> ExistingAccount | None:
    """The account this key controls, read back with the key as `kid` (so the CA itself confirms the pairing).

    None when the CA knows no account for the key.
    """
    with transport.deadline():
        return _existing_account(directory_url, key, verify)


def _existing_account(directory_url: str, key: PrivateKey, verify: Reach | bool | str) -> ExistingAccount | None:
    url = find_account(directory_url, key, verify)
    if not url:
        return None
    conn = connect(directory_url, key, url, verify)
    try:
        body = conn.post_as_get(url).json()
        if not isinstance(body, dict):
            raise TypeError("account")
    except Exception as exc:  # noqa: BLE001
        raise classify(exc, conn.net) from None
    contacts = [str(c).removeprefix("mailto:") for c in body.get("contact") or []]
    return ExistingAccount(url=url, contacts=contacts, status=str(body.get("status", "")))


def _guard(conn: Conn, fn: Any, *args: Any) -> Any:
    with conn.lock, transport.deadline():
        try:
            return fn(*args)
        except Exception as exc:  # noqa: BLE001
            raise classify(exc, conn.net) from None


def deactivate(conn: Conn) -> None:
    def run() -> None:
        conn.post(conn.account_url, messages.UpdateRegistration(status=messages.Status("deactivated")))
    _guard(conn, run)


def key_change(conn: Conn, new_key: PrivateKey) -> None:
    """RFC 8555 §7.3.5: inner JWS by the new key (with its jwk), outer by the current key."""
    def run() -> None:
        url = conn.client.directory["keyChange"]
        payload = json.dumps({
            "account": conn.account_url, "oldKey": conn.jwk.public_key().to_partial_json(),
        }).encode()
        # No kid and no nonce: acme's JWS then carries the new key's jwk, as the inner JWS must.
        inner = acme_jws.JWS.sign(payload, key=jwk_of(new_key), alg=jws_alg(new_key), nonce=None, url=url)
        conn.post(url, _RawJWS(inner))
    _guard(conn, run)


class _EmptyObject(jose.JSONDeSerializable):
    def to_partial_json(self) -> Any:
        return {}

    @classmethod
    def from_json(cls, jobj: Any) -> "_EmptyObject":
        return cls()


class _RawJWS(jose.JSONDeSerializable):
    """Wraps a signed JWS so that ClientNetwork can use it as a payload object."""

    def __init__(self, jws: jose.JWS) -> None:
        self.jws = jws

    def to_partial_json(self) -> Any:
        return self.jws.to_partial_json(flat=True)

    @classmethod
    def from_json(cls, jobj: Any) -> "_RawJWS":
        raise NotImplementedError


def create_order(conn: Conn, identifiers: list[tuple[str, str]], replaces: str = "") -> tuple[str, Any]:
    """POST newOrder; returns (order URL, order body)."""
    def run() -> tuple[str, Any]:
        idents = [messages.Identifier(typ=messages.IdentifierType(t), value=v) for t, v in identifiers]
        order = _NewOrder(identifiers=idents, replaces=replaces or None)
        resp = conn.post(conn.client.directory["newOrder"], order)
        location = resp.headers["Location"]
        if not isinstance(location, str) or not location:
            raise KeyError("Location")
        return location, messages.Order.from_json(resp.json())
    return _guard(conn, run)


def fetch_order(conn: Conn, url: str) -> messages.Order:
    return _guard(conn, lambda: messages.Order.from_json(conn.post_as_get(url).json()))


def fetch_authz(conn: Conn, url: str) -> messages.Authorization:
    return _guard(conn, lambda: messages.Authorization.from_json(conn.post_as_get(url).json()))


def answer(conn: Conn, authz_url: str, challenge_url: str) -> None:
    """Tell the CA a challenge is ready, unless it is already being (or was) validated."""
    def run() -> None:
        authz = messages.Authorization.from_json(conn.post_as_get(authz_url).json())
        if authz.status != messages.STATUS_PENDING:
            return
        for challb in authz.challenges:
            if challb.uri == challenge_url:
                if challb.status == messages.STATUS_PENDING:
                    # RFC 8555 §7.5.1: the answer is an empty JSON object, whatever the challenge type.
                    conn.post(challb.uri, _EmptyObject())
                return
        raise AcmeFailed("the challenge is no longer offered by the ACME server")
    _guard(conn, run)


def finalize(conn: Conn, order_url: str, csr_pem: str) -> messages.Order:
    """Send the CSR if the order is ready; a repeat on a processing/valid order does nothing."""
    def run() -> messages.Order:
        body = messages.Order.from_json(conn.post_as_get(order_url).json())
        if body.status == messages.STATUS_READY:
            orderr = messages.OrderResource(body=body, uri=order_url, csr_pem=csr_pem.encode(), authorizations=[])
            return conn.client.begin_finalization(orderr).body
        return body
    return _guard(conn, run)


def download(conn: Conn, order_url: str) -> str | None:
    """The full chain PEM once the order is valid; None while the CA is still processing."""
    def run() -> str | None:
        body = messages.Order.from_json(conn.post_as_get(order_url).json())
        if body.status == messages.STATUS_VALID and body.certificate:
            return conn.post_as_get(body.certificate).text
        if body.status == messages.STATUS_INVALID:
            detail = body.error.detail if body.error else "order became invalid"
            raise AcmeFailed(f"ACME order failed: {detail}")
        return None
    return _guard(conn, run)


def revoke(conn: Conn, cert_pem: str, reason: int) -> None:
    cert = x509.load_pem_x509_certificate(cert_pem.encode())
    _guard(conn, conn.client.revoke, cert, reason)


def ari_cert_id(cert: x509.Certificate) -> str:
    """RFC 9773 certificate identifier: base64url(AKI keyIdentifier) "." base64url(serial DER content)."""
    aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value.key_identifier or b""
    serial = cert.serial_number
    raw = serial.to_bytes((serial.bit_length() + 8) // 8, "big", signed=False)
    enc = lambda b: base64.urlsafe_b64encode(b).decode().rstrip("=")  # noqa: E731
    return f"{enc(aki)}.{enc(raw)}"


@dataclass
class RenewalInfo:
    supported: bool
    start: dt.datetime | None = None
    end: dt.datetime | None = None
    explanation_url: str = ""
    retry_after: int = 6 * 3600


def renewal_info(conn: Conn, cert_pem: str) -> RenewalInfo:
    def run() -> RenewalInfo:
        try:
            base = conn.client.directory["renewalInfo"]
        except KeyError:
            return RenewalInfo(False)
        cert = x509.load_pem_x509_certificate(cert_pem.encode())
        resp = conn.net.get(f"{str(base).rstrip('/')}/{ari_cert_id(cert)}", content_type="application/json")
        info = messages.RenewalInfo.from_json(resp.json())
        retry = resp.headers.get("Retry-After")
        retry_s = 6 * 3600
        if retry:
            when = client.ClientV2.retry_after(resp, 6 * 3600)
            retry_s = max(60, int((when - dt.datetime.now()).total_seconds()))
        explanation = resp.json().get("explanationURL", "")
        return RenewalInfo(True, info.suggested_window.start, info.suggested_window.end, explanation, retry_s)
    return _guard(conn, run)


def key_authorization(token: str, jwk: jose.JWK) -> str:
    """RFC 8555 §8.1 key authorization; the same construction for every challenge type."""
    return challenges.HTTP01(token=jose.b64.b64decode(token)).key_authorization(jwk)


def dns01_txt_value(token: str, jwk: jose.JWK) -> str:
    return challenges.DNS01(token=jose.b64.b64decode(token)).validation(jwk)


def challenge_fields(challb: messages.ChallengeBody) -> tuple[str, str]:
    """(type, token) of a challenge, including types `acme` no longer models (tls-alpn-01)."""
    chall = challb.chall
    if isinstance(chall, challenges.UnrecognizedChallenge):
        return str(chall.jobj.get("type", "")), str(chall.jobj.get("token", ""))
    return chall.typ, chall.encode("token")
