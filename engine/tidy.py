"""Tidy: prune expired certificates, revocation records and issuers, as a background task, one at a time.

The stores are walked in pages of keys (paged by the server when it offers ListPage); values are fetched a page
at a time, with a bounded number of storage calls in flight, and dropped, so memory stays flat however many
certificates the mount holds. Cancellation is checked between items; `pause_duration` sleeps between items.
Auto-tidy's schedule lives in storage so a restarted plugin keeps the interval.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import time
import uuid
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Awaitable, Callable

from cryptography import x509

from engine.acme import tidy as acme_tidy
from engine import crl as crlmod
from engine.revocation import (
    CERTS_PREFIX,
    REVOKED_PREFIX,
    WAL_PREFIX,
    WAL_RESERVED,
    RevocationRecord,
    find_signing_issuer,
)
from engine.revocation_index import gather_limited, hyphen_to_int
from engine.storage import Storage, get_json, list_pages, put_json
from engine.x509util import rfc3339_nano
from plugin.framework.fields import parse_duration

if TYPE_CHECKING:
    from engine.context import PkiContext

log = logging.getLogger("python-pki.tidy")

AUTO_TIDY_KEY = "config/auto-tidy"
SCHEDULE_KEY = "config/auto-tidy-schedule"
UUID_KEY = "config/tidy-backend-uuid"
# The last run's tidy-status, written by the node running it (at start, every PROGRESS_SECONDS, at the end), so a
# standby, or the next active after a failover, shows that run rather than nothing.
STATUS_KEY = "config/tidy-status"
PROGRESS_SECONDS = 5.0
LEGACY_BUNDLE = "config/ca_bundle"
LEGACY_BUNDLE_BACKUP = "config/ca_bundle.bak"
PAGE = 256
FORGET_BATCH = 8192     # serials dropped from the CRL index per index save, so the list of them stays small

FLAGS = ("tidy_cert_store", "tidy_revoked_certs", "tidy_invalid_certs", "tidy_revoked_cert_issuer_associations",
         "tidy_expired_issuers", "tidy_move_legacy_ca_bundle", "tidy_acme")


@dataclass
class TidyParams:
    tidy_cert_store: bool = False
    tidy_revoked_certs: bool = False
    tidy_invalid_certs: bool = False
    tidy_revoked_cert_issuer_associations: bool = False
    tidy_expired_issuers: bool = False
    tidy_move_legacy_ca_bundle: bool = False
    tidy_acme: bool = False
    safety_buffer: int = 259200
    revoked_safety_buffer: int = 259200
    issuer_safety_buffer: int = 31536000
    acme_account_safety_buffer: int = 2592000
    pause_duration: str = "0s"
    page_size: int = 1000

    def any_selected(self) -> bool:
        return any(getattr(self, f) for f in FLAGS)

    @classmethod
    def from_json(cls, raw: dict[str, Any] | None) -> "TidyParams":
        p = cls()
        for name, value in (raw or {}).items():
            if hasattr(p, name):
                setattr(p, name, value)
        return p


@dataclass
class AutoTidyConfig(TidyParams):
    enabled: bool = False
    interval_duration: int = 43200
    maintain_stored_certificate_counts: bool = False
    publish_stored_certificate_count_metrics: bool = False

    def params(self) -> TidyParams:
        return TidyParams.from_json({k: v for k, v in asdict(self).items() if k in TidyParams.__dataclass_fields__})


async def load_auto_tidy(storage: Storage) -> AutoTidyConfig:
    return AutoTidyConfig.from_json(await get_json(storage, AUTO_TIDY_KEY))  # type: ignore[return-value]


@dataclass
class TidyStatus:
    state: str = "Inactive"
    params: TidyParams | None = None
    error: str | None = None
    message: str | None = None
    time_started: str | None = None
    time_finished: str | None = None
    cert_store_deleted_count: int = 0
    revoked_cert_deleted_count: int = 0
    missing_issuer_cert_count: int = 0
    total_acme_account_count: int = 0
    acme_account_deleted_count: int = 0
    acme_account_revoked_count: int = 0
    acme_orders_deleted_count: int = 0

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["params"] = asdict(self.params) if self.params is not None else None
        return data

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> "TidyStatus":
        st = cls()
        for name, value in raw.items():
            if name == "params":
                st.params = TidyParams.from_json(value) if value is not None else None
            elif hasattr(st, name):
                setattr(st, name, value)
        return st

    def response(self, backend_uuid: str, last_auto_finished: str | None) -> dict[str, Any]:
        counters = ("cert_store_deleted_count", "revoked_cert_deleted_count", "missing_issuer_cert_count",
                    "total_acme_account_count", "acme_account_deleted_count", "acme_account_revoked_count",
                    "acme_orders_deleted_count")
        data: dict[str, Any] = {
            "state": self.state, "error": self.error, "message": self.message,
            "time_started": self.time_started, "time_finished": self.time_finished,
            "current_cert_store_count": None, "current_revoked_cert_count": None,
            "internal_backend_uuid": backend_uuid,
        }
        if self.params is None:
            for name in list(asdict(TidyParams())) + list(counters):
                data[name] = None
            return data
        data.update(asdict(self.params))
        for name in counters:
            data[name] = getattr(self, name, 0)
        data["last_auto_tidy_finished"] = last_auto_finished
        return data


def _now_text() -> str:
    return rfc3339_nano(dt.datetime.now(dt.timezone.utc))


@dataclass
class TidyRunner:
    status: TidyStatus = field(default_factory=TidyStatus)
    task: asyncio.Task[None] | None = None
    cancel_requested: bool = False
    backend_uuid: str = ""
    last_auto_finished: str | None = None
    _saved_at: float = 0.0

    def running(self) -> bool:
        return self.task is not None and not self.task.done()

    async def save_status(self, storage: Storage, *, progress: bool = False) -> None:
        """Persist the status; `progress` saves are skipped within PROGRESS_SECONDS of the last save."""
        now = time.monotonic()
        if progress and now - self._saved_at < PROGRESS_SECONDS:
            return
        self._saved_at = now
        await put_json(storage, STATUS_KEY, {"status": self.status.to_json(),
                                             "last_auto_finished": self.last_auto_finished})

    async def stored_status(self, storage: Storage) -> tuple[TidyStatus, str | None]:
        """The status the node that ran the last tidy stored, and its last auto-tidy finish time."""
        raw = await get_json(storage, STATUS_KEY)
        if raw is None:
            return TidyStatus(), None
        st = TidyStatus.from_json(raw.get("status") or {})
        return st, raw.get("last_auto_finished")

    def start(self, storage: Storage, ctx: "PkiContext", params: TidyParams, auto: bool = False) -> None:
        self.cancel_requested = False
        self.status = TidyStatus(state="Running", params=params, time_started=_now_text())
        self.task = asyncio.get_running_loop().create_task(self._run(storage, ctx, params, auto))

    async def uuid_for(self, storage: Storage) -> str:
        if not self.backend_uuid:
            raw = await get_json(storage, UUID_KEY)
            if raw is None:
                raw = {"uuid": str(uuid.uuid4())}
                await put_json(storage, UUID_KEY, raw)
            self.backend_uuid = raw["uuid"]
        return self.backend_uuid

    async def _run(self, storage: Storage, ctx: "PkiContext", params: TidyParams, auto: bool) -> None:
        st = self.status
        try:
            await _mark_schedule(storage)
            await self.uuid_for(storage)   # so standbys can answer tidy-status without a write of their own
            await self.save_status(storage)
            await Tidy(storage, ctx, params, st, lambda: self.cancel_requested,
                       lambda: self.save_status(storage, progress=True)).run()
            st.state = "Cancelled" if self.cancel_requested else "Finished"
            st.time_finished = _now_text()
            if self.cancel_requested:
                st.message = "Tidy operation cancelled"
            self.last_auto_finished = st.time_finished
            await _mark_schedule(storage, finished=st.time_finished)
        except _Cancelled:
            st.state, st.time_finished, st.message = "Cancelled", _now_text(), "Tidy operation cancelled"
        except Exception as exc:  # noqa: BLE001 - reported through tidy-status, as the built-in does
            log.exception("tidy failed")
            st.state, st.error, st.time_finished = "Error", str(exc) or type(exc).__name__, _now_text()
        try:
            await self.save_status(storage)
        except Exception:  # noqa: BLE001 - the run is over either way; its status stays readable here
            log.exception("storing the tidy status failed")


class _Cancelled(Exception):
    pass


async def _mark_schedule(storage: Storage, finished: str | None = None) -> None:
    sched = await get_json(storage, SCHEDULE_KEY) or {}
    if finished is None:
        sched["last_started"] = time.time()
    else:
        sched["last_finished"] = finished
    await put_json(storage, SCHEDULE_KEY, sched)


@dataclass
class Tidy:
    storage: Storage
    ctx: "PkiContext"
    params: TidyParams
    status: TidyStatus
    cancelled: Callable[[], bool]
    progress: Callable[[], Awaitable[None]] | None = None   # persists the status now and then

    def __post_init__(self) -> None:
        self._pause = parse_duration(self.params.pause_duration)
        self._cert_pass_time: float | None = None   # `now` of this run's cert-store pass, when it ran
        self._removed: list[int] = []                # serials whose records are gone, not yet out of the CRL index
        self._forgot = False
        self._wal: bool | None = None                # whether delta WAL pointers must be deleted too

    async def run(self) -> None:
        p = self.params
        if p.tidy_cert_store or p.tidy_invalid_certs:
            await self._cert_store()
        if p.tidy_revoked_certs or p.tidy_revoked_cert_issuer_associations:
            await self._revoked()
        await self._forget([], flush=True)
        if self._forgot and not (await crlmod.runtime(self.ctx).crl_config(self.storage)).auto_rebuild:
            await crlmod.request_rebuild(self.storage, self.ctx)
        if p.tidy_expired_issuers:
            await self._expired_issuers()
        if p.tidy_move_legacy_ca_bundle:
            await self._legacy_bundle()
        if p.tidy_acme:
            await acme_tidy.run(self.storage, self.status, p.safety_buffer, p.acme_account_safety_buffer, self._step)

    async def _step(self) -> None:
        if self.cancelled():
            raise _Cancelled()
        if self._pause:
            await asyncio.sleep(self._pause)

    async def _pages(self, prefix: str) -> Any:
        async for listed in list_pages(self.storage, prefix, PAGE):
            keys = [k for k in listed if not k.endswith("/")]
            values = await gather_limited([self.storage.get(prefix + k) for k in keys])
            yield list(zip(keys, values))
            if self.progress is not None:
                await self.progress()

    async def _cert_store(self) -> None:
        now = time.time()
        p = self.params
        if p.tidy_cert_store:
            self._cert_pass_time = now
        # Which buffer applies depends on whether the certificate is revoked: only worth a read when they differ.
        lookup = p.safety_buffer != p.revoked_safety_buffer
        # A revoked certificate this pass deletes can have its revocation record deleted right after it (record
        # last, as in the revocation pass), saving that pass a read of every such record. Which ones are revoked
        # comes from the CRL index; a record it misses is still found and finished by the revocation pass.
        fold = p.tidy_cert_store and p.tidy_revoked_certs and not p.tidy_revoked_cert_issuer_associations
        rt = crlmod.runtime(self.ctx)
        index = await rt.ensure_index(self.storage) if fold else None
        wal = fold and await self._wal_in_use()
        async for page in self._pages(CERTS_PREFIX):
            expired: list[tuple[str, float]] = []
            doomed: list[str] = []
            finished: list[tuple[str, int]] = []
            for key, der in page:
                await self._step()
                if der is None:
                    continue
                try:
                    not_after = x509.load_der_x509_certificate(der).not_valid_after_utc.timestamp()
                except ValueError:
                    if p.tidy_invalid_certs:
                        doomed.append(key)
                    continue
                if p.tidy_cert_store and now > not_after + min(p.safety_buffer, p.revoked_safety_buffer):
                    expired.append((key, not_after))
            if lookup:
                revoked = await gather_limited([self.storage.get(REVOKED_PREFIX + k) for k, _ in expired])
            else:
                revoked = [None] * len(expired)
            for (key, not_after), rec in zip(expired, revoked):
                if now > not_after + (p.revoked_safety_buffer if rec is not None else p.safety_buffer):
                    doomed.append(key)
                    serial = hyphen_to_int(key) if index is not None else None
                    if serial is not None and (serial in index or serial in rt.pending.entries) \
                            and now > not_after + p.revoked_safety_buffer:
                        finished.append((key, serial))
            await gather_limited([self.storage.delete(CERTS_PREFIX + k) for k in doomed])
            self.status.cert_store_deleted_count += len(doomed)
            if finished:
                await gather_limited([self._drop_revocation(k, wal) for k, _ in finished])
                self.status.revoked_cert_deleted_count += len(finished)
                await self._forget([serial for _, serial in finished])

    async def _wal_in_use(self) -> bool:
        # Asked by both passes; one answer per run saves the second listing of the WAL.
        if self._wal is None:
            self._wal = (await crlmod.runtime(self.ctx).crl_config(self.storage)).enable_delta \
                or await _any_wal(self.storage)
        return self._wal

    async def _drop_revocation(self, key: str, wal: bool) -> None:
        if wal:
            await self.storage.delete(WAL_PREFIX + key)
        await self.storage.delete(REVOKED_PREFIX + key)

    async def _forget(self, serials: list[int], flush: bool = False) -> None:
        """Drop serials from the CRL index in batches, so the list of them stays small."""
        self._removed.extend(serials)
        if self._removed and (flush or len(self._removed) >= FORGET_BATCH):
            await _forget_in_crl_index(self.storage, self.ctx, self._removed)
            self._removed, self._forgot = [], True

    async def _revoked(self) -> None:
        now = time.time()
        p = self.params
        issuers = self.ctx.issuers(self.storage)
        known = {r.id for r in await issuers.all()}
        wal = await self._wal_in_use()

        async def drop(key: str, cert_gone: bool) -> None:
            # Record last: if we die midway the record is still there and the next tidy finishes the job.
            await asyncio.gather(*([] if cert_gone else [self.storage.delete(CERTS_PREFIX + key)]),
                                 *([self.storage.delete(WAL_PREFIX + key)] if wal else []))
            await self.storage.delete(REVOKED_PREFIX + key)

        async for page in self._pages(REVOKED_PREFIX):
            doomed: list[tuple[str, bool]] = []
            for key, raw in page:
                await self._step()
                if raw is None:
                    continue
                rec = RevocationRecord.from_json(key.replace("-", ":"), json.loads(raw))
                cert = rec.certificate()
                if cert is None:
                    continue
                if p.tidy_revoked_cert_issuer_associations and rec.issuer_id not in known:
                    signer = await find_signing_issuer(issuers, cert, verify=True)
                    if signer is None:
                        self.status.missing_issuer_cert_count += 1
                    else:
                        rec.issuer_id = signer.id
                        await put_json(self.storage, REVOKED_PREFIX + key, rec.to_json())
                not_after = cert.not_valid_after_utc.timestamp()
                if p.tidy_revoked_certs and now > not_after + p.revoked_safety_buffer:
                    # This run's cert-store pass already deleted certs/ for what had expired by its start: one
                    # storage call per record saved.
                    swept = self._cert_pass_time
                    gone = swept is not None and swept > not_after + p.revoked_safety_buffer
                    doomed.append((key, gone))
            await gather_limited([drop(k, gone) for k, gone in doomed])
            self.status.revoked_cert_deleted_count += len(doomed)
            await self._forget([s for s in (hyphen_to_int(k) for k, _ in doomed) if s is not None])

    async def _expired_issuers(self) -> None:
        issuers = self.ctx.issuers(self.storage)
        default = await issuers.default_id()
        now = time.time()
        changed = False
        for rec in await issuers.all():
            await self._step()
            if rec.id == default:
                continue
            if now > rec.certificate.not_valid_after_utc.timestamp() + self.params.issuer_safety_buffer:
                log.info("tidy: deleting expired issuer %s (serial %s)", rec.id, rec.serial_number)
                await issuers.delete(rec.id)
                self.ctx.invalidate("config/issuer/" + rec.id)
                changed = True
        if changed:
            fake = _StorageRequest(self.storage)
            await self.ctx.issuers_changed(fake)  # type: ignore[arg-type]

    async def _legacy_bundle(self) -> None:
        raw = await self.storage.get(LEGACY_BUNDLE)
        if raw is not None:
            await self.storage.put(LEGACY_BUNDLE_BACKUP, raw, seal_wrap=True)
            await self.storage.delete(LEGACY_BUNDLE)


@dataclass
class _StorageRequest:
    """What issuer-change hooks need of a request: its storage."""
    storage: Storage


async def _forget_in_crl_index(storage: Storage, ctx: "PkiContext", serials: list[int]) -> None:
    rt = crlmod.runtime(ctx)
    index = await rt.ensure_index(storage)
    async with rt.build_lock:
        for serial in serials:
            index.remove(serial)
            rt.pending.entries.pop(serial, None)
        await index.save(storage)


async def _any_wal(storage: Storage) -> bool:
    """Whether any delta WAL pointer exists (they are only written while delta CRLs are on, but may outlive that)."""
    async for keys in list_pages(storage, WAL_PREFIX, 64):
        if any(k not in WAL_RESERVED and not k.endswith("/") for k in keys):
            return True
    return False


def runner(ctx: "PkiContext") -> TidyRunner:
    rt = crlmod.runtime(ctx)
    if rt.tidy is None:
        rt.tidy = TidyRunner()
    return rt.tidy


async def periodic(storage: Storage, ctx: "PkiContext") -> None:
    """Start an auto-tidy when its interval has passed since the last tidy (first run one interval after the
    schedule is first seen, as the built-in engine counts from mount load)."""
    cfg = await load_auto_tidy(storage)
    if not cfg.enabled or cfg.interval_duration <= 0:
        return
    tr = runner(ctx)
    if tr.running():
        return
    sched = await get_json(storage, SCHEDULE_KEY)
    if sched is None or "last_started" not in sched:
        await put_json(storage, SCHEDULE_KEY, {**(sched or {}), "last_started": time.time()})
        return
    if time.time() >= float(sched["last_started"]) + cfg.interval_duration:
        tr.start(storage, ctx, cfg.params(), auto=True)

