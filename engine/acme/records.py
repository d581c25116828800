"""Stored ACME records (accounts, EAB keys, orders, authorizations) and the storage keys they live under.

Everything sits under `acme/` (local storage, as the built-in declares it), one account's orders, authorizations
and issued-certificate trackers below that account, so a mount never reaches another mount's state and tidy can
walk one account at a time.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass, field
from typing import Any, TypeVar

from engine.storage import Storage, get_json, put_json

PREFIX = "acme/"
ACCOUNTS = PREFIX + "accounts/"
THUMBPRINTS = PREFIX + "account-thumbprints/"
EABS = PREFIX + "eab/"
VALIDATIONS = PREFIX + "validations/"

T = TypeVar("T")


def now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(microsecond=0)


def rfc3339(t: dt.datetime) -> str:
    return t.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


def _load(cls: type[T], raw: dict[str, Any] | None) -> T | None:
    if raw is None:
        return None
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    return cls(**{k: v for k, v in raw.items() if k in names})


@dataclass
class Eab:
    id: str
    key_type: str                 # "hs"
    key: str                      # base64url HMAC key (never returned after creation)
    acme_directory: str           # e.g. "roles/web/acme/"
    created_on: str


@dataclass
class Account:
    kid: str
    status: str                   # valid | deactivated | revoked
    jwk: dict[str, Any]
    thumbprint: str
    acme_directory: str
    contact: list[str] = field(default_factory=list)
    terms_of_service_agreed: bool = False
    created: str = ""
    revoked_on: str = ""
    eab_id: str = ""
    eab_directory: str = ""
    max_cert_expiry: str = ""     # latest notAfter of anything issued (tidy keeps the account until then)


@dataclass
class Identifier:
    type: str                     # dns | ip
    value: str                    # without "*." for wildcards
    original: str                 # as the client sent it
    wildcard: bool = False

    def to_acme(self) -> dict[str, str]:
        return {"type": self.type, "value": self.original}


@dataclass
class Challenge:
    type: str
    token: str
    status: str = "pending"       # pending | processing | valid | invalid
    validated: str = ""
    error: dict[str, Any] | None = None


@dataclass
class Authorization:
    id: str
    account: str
    identifier: dict[str, Any]
    status: str                   # pending | valid | invalid | deactivated | expired | revoked
    expires: str
    challenges: list[dict[str, Any]]
    wildcard: bool = False

    def ident(self) -> Identifier:
        return Identifier(**self.identifier)

    def challenge_list(self) -> list[Challenge]:
        return [Challenge(**c) for c in self.challenges]


@dataclass
class Order:
    id: str
    account: str
    status: str                   # pending | ready | processing | valid | invalid
    expires: str
    identifiers: list[dict[str, Any]]
    authorizations: list[str]
    cert_serial: str = ""
    cert_expiry: str = ""
    issuer_id: str = ""
    error: dict[str, Any] | None = None
    not_before: str = ""
    not_after: str = ""
    profile: str = ""
    replaces: str = ""
    # Set before signing: a crash between the signature and the order's final write is recognised on retry.
    finalizing_since: str = ""

    def idents(self) -> list[Identifier]:
        return [Identifier(**i) for i in self.identifiers]


@dataclass
class Validation:
    """One queued challenge validation (the queue lives in storage so a restarted plugin resumes it)."""

    account: str
    authz: str
    challenge_type: str
    directory: str
    attempts: int = 0
    next_at: str = ""
    thumbprint: str = ""


def account_key(kid: str) -> str:
    return f"{ACCOUNTS}{kid}"


def order_key(kid: str, oid: str) -> str:
    return f"{ACCOUNTS}{kid}/orders/{oid}"


def authz_key(kid: str, aid: str) -> str:
    return f"{ACCOUNTS}{kid}/authorizations/{aid}"


def cert_tracker_key(kid: str, serial_hyphen: str) -> str:
    return f"{ACCOUNTS}{kid}/certs/{serial_hyphen}"


def validation_key(authz_id: str, challenge_type: str) -> str:
    return f"{VALIDATIONS}{authz_id}-{challenge_type}"


class AcmeStore:
    """Typed reads and writes of the records above on one mount's storage."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage

    async def _get(self, cls: type[T], key: str) -> T | None:
        return _load(cls, await get_json(self.storage, key))

    async def _put(self, key: str, rec: Any) -> None:
        await put_json(self.storage, key, dataclasses.asdict(rec))

    async def eab(self, eid: str) -> Eab | None:
        return await self._get(Eab, EABS + eid)

    async def put_eab(self, rec: Eab) -> None:
        await self._put(EABS + rec.id, rec)

    async def delete_eab(self, eid: str) -> bool:
        """Deletes EAB key `eid`; False when there is none (never made, spent or deleted)."""
        if await self.storage.get(EABS + eid) is None:
            return False
        await self.storage.delete(EABS + eid)
        return True

    async def account(self, kid: str) -> Account | None:
        return await self._get(Account, account_key(kid))

    async def put_account(self, rec: Account) -> None:
        await self._put(account_key(rec.kid), rec)

    async def kid_for_thumbprint(self, thumbprint: str) -> str | None:
        raw = await get_json(self.storage, THUMBPRINTS + thumbprint)
        return (raw or {}).get("kid") or None

    async def put_thumbprint(self, thumbprint: str, kid: str) -> None:
        await put_json(self.storage, THUMBPRINTS + thumbprint, {"kid": kid})

    async def order(self, kid: str, oid: str) -> Order | None:
        return await self._get(Order, order_key(kid, oid))

    async def put_order(self, rec: Order) -> None:
        await self._put(order_key(rec.account, rec.id), rec)

    async def order_ids(self, kid: str) -> list[str]:
        return [k for k in await self.storage.list(f"{ACCOUNTS}{kid}/orders/") if not k.endswith("/")]

    async def authz(self, kid: str, aid: str) -> Authorization | None:
        return await self._get(Authorization, authz_key(kid, aid))

    async def put_authz(self, rec: Authorization) -> None:
        await self._put(authz_key(rec.account, rec.id), rec)

    async def track_cert(self, kid: str, serial_hyphen: str, oid: str) -> None:
        await put_json(self.storage, cert_tracker_key(kid, serial_hyphen), {"order": oid})

    async def tracked_cert(self, kid: str, serial_hyphen: str) -> str | None:
        raw = await get_json(self.storage, cert_tracker_key(kid, serial_hyphen))
        return None if raw is None else str(raw.get("order", ""))

    async def validation(self, key: str) -> Validation | None:
        return await self._get(Validation, key)

    async def put_validation(self, key: str, rec: Validation) -> None:
        await self._put(key, rec)
