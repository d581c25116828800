"""The challenge validation queue of one mount.

A challenge the client accepts is written to `acme/validations/` before the answer goes out, so a plugin that is
killed mid-validation finds the work again when it starts (initialize) and finishes it. Five validations run at
once, each attempt bounded by a minute, failures retried five times with a back-off of 5 s per attempt (the
built-in's numbers). The queue is worked where the challenge was accepted: the active node (standbys forward every
ACME request); a worker that meets read-only storage stops.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import logging
from typing import Awaitable, Callable

from engine.acme import challenges
from engine.acme.config import read_config
from engine.acme.errors import AcmeProblem
from engine.acme.records import VALIDATIONS, AcmeStore, Validation, now, parse_time, rfc3339, validation_key
from engine.storage import Storage

log = logging.getLogger("python-pki.acme")
WORKERS = 5
MAX_ATTEMPTS = 5
ATTEMPT_TIMEOUT = 60.0
BACKOFF = 5.0
AUTHZ_LIFETIME = dt.timedelta(days=15)
Check = Callable[[str, object, str, str, str], Awaitable[None]]


class Validator:
    def __init__(self, check: Check | None = None) -> None:
        self._check = check or challenges.check   # type: ignore[assignment]
        self._storage: Storage | None = None
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._running: set[str] = set()
        self._not_before: dict[str, float] = {}   # entries whose last run failed outright wait this long
        self._slots = asyncio.Semaphore(WORKERS)
        self.stopped_readonly = False

    def kick(self, storage: Storage) -> None:
        """Make sure the worker runs (and looks at the queue now)."""
        self._storage = storage
        self._wake.set()
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):  # noqa: BLE001 - shutting down
                pass
            self._task = None

    async def idle(self) -> None:
        """For tests: wait until nothing is queued or running."""
        while True:
            assert self._storage is not None
            if not self._running and not await self._storage.list(VALIDATIONS):
                return
            await asyncio.sleep(0.05)

    async def _loop(self) -> None:
        while True:
            self._wake.clear()
            storage = self._storage
            assert storage is not None
            try:
                wait = await self._pass(storage)
            except Exception as exc:  # noqa: BLE001 - the worker must survive a storage hiccup
                if "readonly" in str(exc).replace("-", "").replace(" ", "") or "read-only" in str(exc):
                    self.stopped_readonly = True
                    return
                log.warning("ACME validation pass failed: %s", exc)
                wait = BACKOFF
            if wait is None and not self._running:
                await self._wake.wait()
                continue
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=wait if wait is not None else 1.0)
            except asyncio.TimeoutError:
                pass

    async def _pass(self, storage: Storage) -> float | None:
        """Start every due validation; seconds until the next one is due (None: nothing queued)."""
        store = AcmeStore(storage)
        soonest: float | None = None
        for name in await storage.list(VALIDATIONS):
            key = VALIDATIONS + name
            if key in self._running:
                continue
            held = self._not_before.get(key, 0.0) - asyncio.get_running_loop().time()
            if held > 0:
                soonest = held if soonest is None else min(soonest, held)
                continue
            rec = await store.validation(key)
            if rec is None:
                continue
            due = (parse_time(rec.next_at) - now()).total_seconds() if rec.next_at else 0.0
            if due > 0:
                soonest = due if soonest is None else min(soonest, due)
                continue
            self._running.add(key)
            asyncio.get_running_loop().create_task(self._one(storage, key, rec))
        return soonest

    async def _one(self, storage: Storage, key: str, rec: Validation) -> None:
        try:
            async with self._slots:
                await validate_once(storage, key, rec, self._check)
        except Exception as exc:  # noqa: BLE001 - logged; the entry stays queued, tried again after a back-off
            log.warning("ACME validation %s failed to run: %s", key, exc)
            self._not_before[key] = asyncio.get_running_loop().time() + BACKOFF
        finally:
            self._running.discard(key)
            self._wake.set()


async def enqueue(storage: Storage, rec: Validation) -> str:
    key = validation_key(rec.authz, rec.challenge_type)
    await AcmeStore(storage).put_validation(key, rec)
    return key


async def validate_once(storage: Storage, key: str, rec: Validation, check: Check) -> None:
    store = AcmeStore(storage)
    authz = await store.authz(rec.account, rec.authz)
    if authz is None or authz.status != "pending":
        await storage.delete(key)
        return
    chals = authz.challenge_list()
    target = next((c for c in chals if c.type == rec.challenge_type), None)
    if target is None or target.status in ("valid", "invalid"):
        await storage.delete(key)
        return
    cfg = await read_config(storage)
    try:
        await asyncio.wait_for(check(rec.challenge_type, authz.ident(), target.token, rec.thumbprint,
                                     cfg.dns_resolver), timeout=ATTEMPT_TIMEOUT)
        failure: AcmeProblem | None = None
    except AcmeProblem as exc:
        failure = exc
    except asyncio.TimeoutError:
        failure = AcmeProblem("connection", prefix="validation timed out")
    except Exception as exc:  # noqa: BLE001 - a failure of the check itself counts as a failed attempt
        failure = AcmeProblem("connection", prefix=f"validation failed: {exc}")
    stamp = now()
    if failure is None:
        target.status, target.validated, target.error = "valid", rfc3339(stamp), None
        authz.status, authz.expires = "valid", rfc3339(stamp + AUTHZ_LIFETIME)
    else:
        rec.attempts += 1
        if rec.attempts < MAX_ATTEMPTS:
            rec.next_at = rfc3339(stamp + dt.timedelta(seconds=BACKOFF * rec.attempts))
            # The last attempt's error shows on the still-processing challenge, as the built-in shows it.
            target.error = failure.stored()
            authz.challenges = [vars(c) for c in chals]
            await store.put_authz(authz)
            await store.put_validation(key, rec)
            return
        target.status, target.error = "invalid", failure.stored()
        authz.status = "invalid"
    authz.challenges = [vars(c) for c in chals]
    # The authorization is written before the queue entry goes: a crash in between validates once more.
    await store.put_authz(authz)
    await storage.delete(key)
