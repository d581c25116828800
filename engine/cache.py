"""A per-mount read-through cache of decoded storage records, dropped by key on writes and invalidations."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

T = TypeVar("T")


@dataclass
class RecordCache(Generic[T]):
    """Records by id plus, once somebody listed them, the full id list (so listings skip storage.list).

    On a standby an invalidation can arrive while a read of the old value is still in flight; `epoch` counts
    drops, and a value read from storage is kept only when no drop happened since the read began (`fill*`)."""

    items: dict[str, T] = field(default_factory=dict)
    ids: list[str] | None = None
    derived: dict[str, Any] = field(default_factory=dict)   # anything computed from the whole set (chains...)
    epoch: int = 0

    def drop(self, record_id: str | None = None) -> None:
        if record_id is None:
            self.items.clear()
        else:
            self.items.pop(record_id, None)
        self.ids = None
        self.drop_derived()

    def drop_derived(self) -> None:
        self.derived.clear()
        self.epoch += 1

    def store(self, record_id: str, record: T) -> None:
        """After this process wrote the record (write-through)."""
        self.items[record_id] = record
        if self.ids is not None and record_id not in self.ids:
            self.ids = sorted(self.ids + [record_id])
        self.drop_derived()

    def fill(self, record_id: str, record: T, epoch: int) -> None:
        """A record read from storage since `epoch`: kept unless something was dropped meanwhile."""
        if epoch == self.epoch:
            self.items[record_id] = record

    def fill_ids(self, ids: list[str], epoch: int) -> None:
        if epoch == self.epoch:
            self.ids = ids

    def fill_derived(self, name: str, value: Any, epoch: int) -> None:
        if epoch == self.epoch:
            self.derived[name] = value
