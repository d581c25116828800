"""The order state machine. Each step reads the order, does (repeatable) ACME calls, and ends in ONE write.

new -> submitted -> awaiting-challenge-fulfillment -> (client: fulfilled-challenge)
    -> notify-acme-server-challenges-completed -> processing-challenge -> fetching-certificate -> completed
submitted -> processing-challenge when the CA already holds valid authorizations (no challenge needed);
any non-terminal -> expired (ACME order expiry) | error (the CA refused; last_error says why).
"""
from __future__ import annotations

import datetime as dt
import logging

from acme import messages
from cryptography import x509
from cryptography.x509.oid import ExtensionOID

from engine.external_ca import acme_client
from engine.external_ca.acme_client import AcmeFailed, RetryLater
from engine.external_ca.common import ZERO_TIME, colon_serial, parse_rfc3339, rfc3339
from engine.external_ca.records import (
    AuthzState, ChallengeState, OrderRecord, OrderStatus, load_account, load_order, save_order, serial_path,
)
from engine.external_ca.runtime import Runtime
from engine.storage import Storage, put_json

log = logging.getLogger("python-pki.external-ca")

MAX_STEPS_PER_CALL = 8
POLL_SECONDS = 1
MAX_BACKOFF_SECONDS = 300


def is_due(rec: OrderRecord, now: dt.datetime) -> bool:
    when = parse_rfc3339(rec.next_work_date)
    return when is not None and when <= now


def is_expired(rec: OrderRecord, now: dt.datetime) -> bool:
    when = parse_rfc3339(rec.expires)
    return when is not None and when <= now and not rec.status.terminal


def client_identifier(authz: messages.Authorization) -> str:
    value = authz.identifier.value
    return f"*.{value}" if authz.wildcard else value


def authz_state(url: str, authz: messages.Authorization, previous: AuthzState | None) -> AuthzState:
    fulfilled = {c.url for c in previous.challenges if c.fulfilled} if previous else set()
    chals = []
    for c in authz.challenges:
        ctype, token = acme_client.challenge_fields(c)
        if ctype in ("http-01", "dns-01", "tls-alpn-01"):
            chals.append(ChallengeState(type=ctype, url=c.uri, token=token, status=c.status.name,
                                        fulfilled=c.uri in fulfilled))
    return AuthzState(url=url, identifier=client_identifier(authz), identifier_type=authz.identifier.typ.name,
                      status=authz.status.name, expires=rfc3339(authz.expires) if authz.expires else "",
                      challenges=chals)


def _authz_error(authz: messages.Authorization) -> str:
    for c in authz.challenges:
        if c.error is not None:
            return f"{acme_client.challenge_fields(c)[0]} validation of {client_identifier(authz)} failed: {c.error.detail or c.error.typ}"
    return f"authorization for {client_identifier(authz)} is {authz.status.name}"


class Worker:
    def __init__(self, runtime: Runtime) -> None:
        self.rt = runtime

    async def advance(self, storage: Storage, order_id: str) -> OrderRecord | None:
        """Run due steps of one order until it waits (for the client, the CA, or the clock)."""
        async with self.rt.order_locks[order_id]:
            rec = await load_order(storage, order_id)
            for _ in range(MAX_STEPS_PER_CALL):
                if rec is None or rec.status.terminal:
                    break
                now = self.rt.now()
                if is_expired(rec, now):
                    self._finish(rec, OrderStatus.EXPIRED, "the ACME order expired before completion")
                    await save_order(storage, rec)
                    break
                if not is_due(rec, now):
                    break
                before = rec.status
                try:
                    await self._step(storage, rec)
                    rec.attempts = 0
                except RetryLater as exc:
                    rec.attempts += 1
                    rec.last_error = exc.message
                    delay = exc.retry_after or min(MAX_BACKOFF_SECONDS, 2 ** min(rec.attempts, 8))
                    rec.next_work_date = rfc3339(now + dt.timedelta(seconds=delay))
                except AcmeFailed as exc:
                    self._finish(rec, OrderStatus.ERROR, exc.message)
                rec.last_update = rfc3339(self.rt.now())
                await save_order(storage, rec)
                if rec.status == before and not is_due(rec, self.rt.now()):
                    break
            return rec

    def _finish(self, rec: OrderRecord, status: OrderStatus, error: str = "") -> None:
        rec.status = status
        rec.last_error = error
        rec.next_work_date = ZERO_TIME
        rec.last_update = rfc3339(self.rt.now())

    def _schedule(self, rec: OrderRecord, seconds: int) -> None:
        rec.next_work_date = rfc3339(self.rt.now() + dt.timedelta(seconds=seconds))

    async def _step(self, storage: Storage, rec: OrderRecord) -> None:
        acct = await load_account(storage, rec.account_name)
        if acct is None:
            raise AcmeFailed(f"ACME account {rec.account_name!r} no longer exists")
        if acct.pending_key_version is not None:
            raise RetryLater("an account key change is being resolved", 5)
        conn = await self.rt.conn(storage, acct)
        blocking = self.rt.blocking
        if rec.status is OrderStatus.NEW:
            idents = list(zip(rec.identifier_types, rec.identifiers))
            url, body = await blocking(acme_client.create_order, conn, idents, rec.replaces)
            rec.order_url, rec.finalize_url = url, body.finalize
            rec.expires = rfc3339(body.expires) if body.expires else rec.expires
            rec.authorizations = []
            for authz_url in body.authorizations:
                authz = await blocking(acme_client.fetch_authz, conn, authz_url)
                rec.authorizations.append(authz_state(authz_url, authz, None))
            if body.status == messages.STATUS_INVALID:
                raise AcmeFailed("the ACME server created the order as invalid")
            rec.status = OrderStatus.SUBMITTED
            rec.last_error = ""
            self._schedule(rec, 0)
        elif rec.status is OrderStatus.SUBMITTED:
            await self._refresh_authz(conn, rec)
            if all(a.status == "valid" for a in rec.authorizations):
                rec.status = OrderStatus.PROCESSING
                self._schedule(rec, 0)
            else:
                rec.status = OrderStatus.AWAITING
                rec.next_work_date = ZERO_TIME
                if all_fulfilled(rec):
                    rec.status = OrderStatus.NOTIFY
                    self._schedule(rec, 0)
        elif rec.status is OrderStatus.AWAITING:
            rec.next_work_date = ZERO_TIME
        elif rec.status is OrderStatus.NOTIFY:
            for a in rec.authorizations:
                if a.status != "pending":
                    continue
                chosen = next((c for c in a.challenges if c.fulfilled), None)
                if chosen is not None:
                    await blocking(acme_client.answer, conn, a.url, chosen.url)
            rec.status = OrderStatus.PROCESSING
            self._schedule(rec, POLL_SECONDS)
        elif rec.status is OrderStatus.PROCESSING:
            await self._refresh_authz(conn, rec)
            if all(a.status == "valid" for a in rec.authorizations):
                csr = rec.csr or rec.generated_csr
                body = await blocking(acme_client.finalize, conn, rec.order_url, csr)
                if body.status == messages.STATUS_INVALID:
                    raise AcmeFailed(f"ACME order failed: {body.error.detail if body.error else 'invalid'}")
                if body.status in (messages.STATUS_PROCESSING, messages.STATUS_VALID):
                    rec.status = OrderStatus.FETCHING
                    self._schedule(rec, 0)
                else:
                    self._schedule(rec, POLL_SECONDS)
            else:
                self._schedule(rec, POLL_SECONDS)
        elif rec.status is OrderStatus.FETCHING:
            chain = await blocking(acme_client.download, conn, rec.order_url)
            if chain is None:
                self._schedule(rec, POLL_SECONDS)
                return
            self._store_certificate(rec, chain)
            # The serial index goes first: repeating it after a crash is harmless, and the order record
            # (written last by the caller) is what makes the order complete.
            await put_json(storage, serial_path(rec.serial_number), {"order_id": rec.order_id})
            rec.status = OrderStatus.COMPLETED
            rec.last_error = ""
            rec.next_work_date = ZERO_TIME

    async def _refresh_authz(self, conn: acme_client.Conn, rec: OrderRecord) -> None:
        fresh: list[AuthzState] = []
        for a in rec.authorizations:
            authz = await self.rt.blocking(acme_client.fetch_authz, conn, a.url)
            if authz.status in (messages.STATUS_INVALID, messages.STATUS_DEACTIVATED, messages.STATUS_REVOKED) \
                    or authz.status.name == "expired":
                raise AcmeFailed(_authz_error(authz))
            fresh.append(authz_state(a.url, authz, a))
        rec.authorizations = fresh

    def _store_certificate(self, rec: OrderRecord, fullchain: str) -> None:
        pems = split_pem_chain(fullchain)
        if not pems:
            raise AcmeFailed("the ACME server returned no certificate")
        cert = x509.load_pem_x509_certificate(pems[0].encode())
        rec.certificate = pems[0]
        rec.ca_chain = pems[1:]
        rec.serial_number = colon_serial(cert.serial_number)
        rec.not_before = rfc3339(cert.not_valid_before_utc)
        rec.not_after = rfc3339(cert.not_valid_after_utc)


def all_fulfilled(rec: OrderRecord) -> bool:
    pending = [a for a in rec.authorizations if a.status == "pending"]
    return bool(pending) and all(any(c.fulfilled for c in a.challenges) for a in pending)


def split_pem_chain(text: str) -> list[str]:
    end = "-----END CERTIFICATE-----"
    out: list[str] = []
    for part in text.split(end):
        start = part.find("-----BEGIN CERTIFICATE-----")
        if start >= 0:
            out.append(part[start:].strip() + "\n" + end + "\n")
    return out


def authority_key_id(cert_pem: str) -> bytes:
    cert = x509.load_pem_x509_certificate(cert_pem.encode())
    try:
        ext = cert.extensions.get_extension_for_oid(ExtensionOID.AUTHORITY_KEY_IDENTIFIER)
    except x509.ExtensionNotFound:
        return b""
    return ext.value.key_identifier or b""
