"""The compact revocation index CRLs are built from: (serial, revocation time, issuer) for every revoked cert.

Reading 100,000 `revoked/` records one by one for every CRL build is what makes the built-in engine slow at
scale, and one storage entry holding the whole index would exceed raft's 1 MiB value limit. So the index lives
in hash buckets (`crls/index/<n>`, each well under 512 KB); a fold rewrites only the buckets it touched.

Invariant restored whenever a process first loads the index (`reconcile`): index + pending == the set of
`revoked/` keys. That is what makes a plugin crash after a revoke's 200 lose nothing: a record that reached
storage but not the index is found by listing `revoked/` once.
"""
from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Iterator

from engine.revocation import REVOKED_PREFIX, WAL_PREFIX, WAL_RESERVED, RevocationRecord, WalEntry
from engine.storage import Storage, get_json, put_json
from engine.x509util import serial_to_colon_hex

META_KEY = "crls/index/meta"
BUCKET_PREFIX = "crls/index/b/"
MAX_PER_BUCKET = 4000          # about 60 bytes a line: ~240 KB per bucket, half the 512 KB budget
INITIAL_BUCKETS = 8
STORAGE_CONCURRENCY = 32       # parallel storage calls when many independent reads/deletes are due


async def gather_limited(coros: list, limit: int = STORAGE_CONCURRENCY) -> list:
    sem = asyncio.Semaphore(limit)

    async def one(c):  # type: ignore[no-untyped-def]
        async with sem:
            return await c
    return await asyncio.gather(*(one(c) for c in coros))


def hyphen_to_int(key: str) -> int | None:
    try:
        return int(key.replace("-", ""), 16)
    except ValueError:
        return None


def int_to_hyphen(serial: int) -> str:
    return serial_to_colon_hex(serial).replace(":", "-")


@dataclass
class RevocationIndex:
    issuers: list[str] = field(default_factory=list)           # position -> issuer id ("" = unknown)
    issuer_pos: dict[str, int] = field(default_factory=dict)
    buckets: list[dict[int, tuple[int, int]]] = field(
        default_factory=lambda: [{} for _ in range(INITIAL_BUCKETS)])
    dirty: set[int] = field(default_factory=set)
    meta_dirty: bool = False

    # -- in memory ---------------------------------------------------------------------------------------------
    def _issuer_index(self, issuer_id: str) -> int:
        pos = self.issuer_pos.get(issuer_id)
        if pos is None:
            pos = len(self.issuers)
            self.issuers.append(issuer_id)
            self.issuer_pos[issuer_id] = pos
            self.meta_dirty = True
        return pos

    def __len__(self) -> int:
        return sum(len(b) for b in self.buckets)

    def __contains__(self, serial: int) -> bool:
        return serial in self.buckets[serial % len(self.buckets)]

    def get(self, serial: int) -> tuple[int, str] | None:
        hit = self.buckets[serial % len(self.buckets)].get(serial)
        return None if hit is None else (hit[0], self.issuers[hit[1]])

    def add(self, serial: int, revocation_time: int, issuer_id: str) -> None:
        value = (revocation_time, self._issuer_index(issuer_id))
        b = serial % len(self.buckets)
        if self.buckets[b].get(serial) == value:
            return
        self.buckets[b][serial] = value
        self.dirty.add(b)
        if len(self.buckets[b]) > MAX_PER_BUCKET:
            self._grow()

    def remove(self, serial: int) -> bool:
        b = serial % len(self.buckets)
        if self.buckets[b].pop(serial, None) is None:
            return False
        self.dirty.add(b)
        return True

    def _grow(self) -> None:
        old = self.buckets
        self.buckets = [{} for _ in range(len(old) * 2)]
        for bucket in old:
            for serial, value in bucket.items():
                self.buckets[serial % len(self.buckets)][serial] = value
        self.dirty = set(range(len(self.buckets)))
        self.meta_dirty = True

    def entries(self) -> Iterator[tuple[int, int, str]]:
        names = self.issuers
        for bucket in self.buckets:
            for serial, (t, pos) in bucket.items():
                yield serial, t, names[pos]

    def serials(self) -> Iterator[int]:
        for bucket in self.buckets:
            yield from bucket

    # -- storage -----------------------------------------------------------------------------------------------
    @classmethod
    async def load(cls, storage: Storage) -> "RevocationIndex":
        meta = await get_json(storage, META_KEY)
        idx = cls()
        if meta is None:
            return idx
        idx.issuers = list(meta.get("issuers") or [])
        idx.issuer_pos = {name: i for i, name in enumerate(idx.issuers)}
        count = int(meta.get("buckets") or INITIAL_BUCKETS)
        idx.buckets = [{} for _ in range(count)]
        raws = await gather_limited([storage.get(f"{BUCKET_PREFIX}{i}") for i in range(count)])
        for i, raw in enumerate(raws):
            if not raw:
                continue
            for line in raw.decode().splitlines():
                parts = line.split(",")
                if len(parts) != 3:
                    continue
                serial, t, pos = int(parts[0], 16), int(parts[1]), int(parts[2])
                if pos >= len(idx.issuers):
                    pos = idx._issuer_index("")
                home = serial % count
                if home != i:              # written under another bucket count before a crash
                    idx.dirty.update((home, i))
                idx.buckets[home][serial] = (t, pos)
        return idx

    async def save(self, storage: Storage) -> None:
        # Meta first: a crash between meta and buckets leaves entries findable by reconciliation, while the
        # other order could leave buckets pointing at issuer positions the meta does not know.
        if self.meta_dirty or self.dirty:
            await put_json(storage, META_KEY, {"version": 1, "buckets": len(self.buckets),
                                               "issuers": self.issuers})
            self.meta_dirty = False
        dirty, self.dirty = sorted(self.dirty), set()
        await gather_limited([storage.put(f"{BUCKET_PREFIX}{b}", self._encode(b)) for b in dirty])

    def _encode(self, b: int) -> bytes:
        return "".join(f"{s:x},{t},{p}\n" for s, (t, p) in self.buckets[b].items()).encode()


@dataclass
class Pending:
    """Revocations not yet folded into the index (this process's revokes, WAL entries, reconciled records)."""

    entries: dict[int, tuple[int, str]] = field(default_factory=dict)
    wal_keys: set[str] = field(default_factory=set)     # delta-wal/ keys to delete once folded


async def reconcile(storage: Storage, index: RevocationIndex, pending: Pending) -> None:
    """Make index + pending equal the `revoked/` keys: add what is missing, drop what tidy already removed."""
    revoked_keys = await storage.list(REVOKED_PREFIX)
    revoked: dict[int, str] = {}
    for key in revoked_keys:
        value = hyphen_to_int(key)
        if value is not None:
            revoked[value] = key
    wal_keys = [k for k in await storage.list(WAL_PREFIX) if k not in WAL_RESERVED and not k.endswith("/")]
    wal_raw = await gather_limited([get_json(storage, WAL_PREFIX + k) for k in wal_keys])
    for key, raw in zip(wal_keys, wal_raw):
        pending.wal_keys.add(key)
        if raw is None:
            continue
        entry = WalEntry.from_json(raw)
        if entry.serial in revoked:        # a WAL entry without its record is a revoke that never finished
            pending.entries.setdefault(entry.serial, (entry.revocation_time, entry.issuer_id))
    missing = [s for s in revoked if s not in index and s not in pending.entries]
    records = await gather_limited([get_json(storage, REVOKED_PREFIX + revoked[s]) for s in missing])
    for serial, raw in zip(missing, records):
        if raw is None:
            continue
        rec = RevocationRecord.from_json(serial_to_colon_hex(serial), raw)
        pending.entries[serial] = (rec.revocation_time, rec.issuer_id)
    for serial in [s for s in index.serials() if s not in revoked]:
        index.remove(serial)
