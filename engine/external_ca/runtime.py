"""Process-wide state of one mount: the clock, the executor for blocking ACME I/O, connections, locks."""
from __future__ import annotations

import asyncio
import concurrent.futures
import datetime as dt
import functools
import os
import uuid
from collections import defaultdict
from typing import Any, Callable, TypeVar

from engine.external_ca import acme_client, keys
from engine.external_ca.order_index import IndexGuard
from engine.external_ca.common import Clock, utcnow
from engine.external_ca.records import AccountRecord, account_key_path
from engine.external_ca.transport import Reach
from engine.storage import Storage

T = TypeVar("T")


class Runtime:
    def __init__(self, clock: Clock | None = None, max_workers: int = 8) -> None:
        self.clock: Clock = clock or utcnow
        self.executor = concurrent.futures.ThreadPoolExecutor(max_workers=max_workers,
                                                              thread_name_prefix="acme")
        self.trust = acme_client.TrustStore()
        self._conns: dict[tuple[str, int, str, str, tuple[str, ...]], acme_client.Conn] = {}
        self.order_locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        self.role_locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        self.account_locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        self.index = IndexGuard()

    def now(self) -> dt.datetime:
        return self.clock()

    async def blocking(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, functools.partial(fn, *args, **kwargs))

    def verify_for(self, trusted_ca: str) -> bool | str:
        return self.trust.verify_for(trusted_ca)

    async def reach(self, storage: Storage, trusted_ca: str) -> Reach:
        """TLS trust and the mount's host policy (config/network) for one account's requests."""
        from engine.external_ca.network import load_policy

        return Reach(self.verify_for(trusted_ca), await load_policy(storage))

    async def load_account_key(self, storage: Storage, name: str, version: int) -> keys.PrivateKey:
        raw = await storage.get(account_key_path(name, version))
        if raw is None:
            raise RuntimeError(f"account {name} has no stored key version {version}")
        return keys.from_pem(raw.decode())

    async def conn(self, storage: Storage, acct: AccountRecord) -> acme_client.Conn:
        reach = await self.reach(storage, acct.trusted_ca)
        cache_key = (acct.name, acct.active_key_version, acct.account_url, acct.trusted_ca, reach.policy.allowed)
        conn = self._conns.get(cache_key)
        if conn is None:
            key = await self.load_account_key(storage, acct.name, acct.active_key_version)
            conn = await self.blocking(acme_client.connect, acct.directory_url, key, acct.account_url, reach)
            self.forget_account(acct.name)
            self._conns[cache_key] = conn
        return conn

    def forget_all_connections(self) -> None:
        self._conns.clear()

    def forget_account(self, name: str) -> None:
        for k in [k for k in self._conns if k[0] == name]:
            del self._conns[k]

    def new_order_id(self) -> str:
        """A UUIDv7 (time-ordered), like the ids the published API shows."""
        ms = int(self.now().timestamp() * 1000) & ((1 << 48) - 1)
        rand = int.from_bytes(os.urandom(10), "big")
        value = (ms << 80) | (0x7 << 76) | ((rand >> 68) & 0xFFF) << 64 | (0b10 << 62) | (rand & ((1 << 62) - 1))
        return str(uuid.UUID(int=value))

    async def close(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)
        self.trust.close()
