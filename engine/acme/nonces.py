"""Replay nonces: kept in memory on the node that made them (the active one; standbys forward ACME) for 90 s."""
from __future__ import annotations

import secrets
import time

NONCE_LIFETIME = 90.0
MAX_OUTSTANDING = 50_000   # a flood of new-nonce calls must not grow memory without bound


class NonceService:
    """One per mount: a nonce of one mount is never redeemed on another."""

    def __init__(self, lifetime: float = NONCE_LIFETIME) -> None:
        self.lifetime = lifetime
        self._issued: dict[str, float] = {}     # nonce -> expiry (monotonic); dicts keep insertion order

    def get(self) -> str:
        self._expire()
        nonce = secrets.token_urlsafe(21)
        self._issued[nonce] = time.monotonic() + self.lifetime
        while len(self._issued) > MAX_OUTSTANDING:
            self._issued.pop(next(iter(self._issued)))
        return nonce

    def redeem(self, nonce: str) -> bool:
        expiry = self._issued.pop(nonce, None) if nonce else None
        return expiry is not None and expiry >= time.monotonic()

    def _expire(self) -> None:
        now = time.monotonic()
        while self._issued:
            first = next(iter(self._issued))
            if self._issued[first] >= now:
                return
            del self._issued[first]

    def __len__(self) -> int:
        return len(self._issued)
