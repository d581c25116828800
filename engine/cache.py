"""A per-mount read-through cache of decoded storage records, dropped by key on writes and invalidations."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

T = TypeVar("T")


@dataclass
class RecordCache(Generic[T]):
    """Records by id plus, once somebody listed them, the full id list (so listings skip storage.list)."""

    items: dict[str, T] = field(default_factory=dict)
    ids: list[str] | None = None
    derived: dict[str, Any] = field(default_factory=dict)   # anything computed from the whole set (chains...)

    def drop(self, record_id: str | None = None) -> None:
        if record_id is None:
            self.items.clear()
        else:
            self.items.pop(record_id, None)
        self.ids = None
        self.derived.clear()

    def store(self, record_id: str, record: T) -> None:
        self.items[record_id] = record
        if self.ids is not None and record_id not in self.ids:
            self.ids = sorted(self.ids + [record_id])
        self.derived.clear()
