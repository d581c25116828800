"""Small shared helpers: the clock, RFC 3339 rendering, serial formatting, storage key prefixes."""
from __future__ import annotations

import datetime as dt
from typing import Callable

Clock = Callable[[], dt.datetime]

# Go's zero time, which the published API shows for "nothing scheduled".
ZERO_TIME = "0001-01-01T00:00:00Z"

ACCOUNT_PREFIX = "account/"
# Private keys live under their own prefixes so that the mount can seal-wrap exactly these.
ACCOUNT_KEY_PREFIX = "account-key/"
ORDER_KEY_PREFIX = "order-key/"
ROLE_PREFIX = "role/"
ORDER_PREFIX = "order/"
SERIAL_PREFIX = "serial/"
# Index of non-terminal orders (engine/external_ca/order_index.py); records.save_order keeps it current.
ORDER_ACTIVE_PREFIX = "order-active/"
SEAL_WRAPPED_PREFIXES = [ACCOUNT_KEY_PREFIX, ORDER_KEY_PREFIX]


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def rfc3339(value: dt.datetime | None) -> str:
    if value is None:
        return ZERO_TIME
    value = value.astimezone(dt.timezone.utc).replace(microsecond=0)
    return value.strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_rfc3339(text: str) -> dt.datetime | None:
    if not text or text == ZERO_TIME:
        return None
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


def colon_serial(serial: int) -> str:
    """Lower-case colon hex of the minimal big-endian magnitude, as the PKI engine renders serials."""
    raw = serial.to_bytes(max(1, (serial.bit_length() + 7) // 8), "big")
    return ":".join(f"{b:02x}" for b in raw)


def normalize_serial(text: str) -> str:
    """Accept colon or hyphen forms (any case, optional leading zero bytes) and give the canonical colon form."""
    cleaned = text.strip().lower().replace("-", ":")
    parts = [p for p in cleaned.split(":") if p != ""]
    hexdigits = "".join(p.zfill(2) for p in parts) if len(parts) > 1 else cleaned.replace(":", "")
    try:
        value = int(hexdigits, 16)
    except ValueError:
        return ""
    return colon_serial(value)


def colon_hex(data: bytes) -> str:
    return ":".join(f"{b:02x}" for b in data)
