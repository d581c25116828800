"""The stored records (accounts, roles, orders) and their JSON round trip."""
from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass, field
from typing import Any, Type, TypeVar

from engine.external_ca.common import (
    ACCOUNT_KEY_PREFIX, ACCOUNT_PREFIX, ORDER_ACTIVE_PREFIX, ORDER_KEY_PREFIX, ORDER_PREFIX, ROLE_PREFIX,
    SERIAL_PREFIX,
)
from engine.storage import Storage, get_json, put_json

T = TypeVar("T")


class OrderStatus(str, enum.Enum):
    # The published API's hyphenated names (seed 003 printed them with underscores).
    NEW = "new"
    SUBMITTED = "submitted"
    AWAITING = "awaiting-challenge-fulfillment"
    NOTIFY = "notify-acme-server-challenges-completed"
    PROCESSING = "processing-challenge"
    FETCHING = "fetching-certificate"
    COMPLETED = "completed"
    EXPIRED = "expired"
    REVOKED = "revoked"
    ERROR = "error"

    @property
    def terminal(self) -> bool:
        return self in (OrderStatus.COMPLETED, OrderStatus.EXPIRED, OrderStatus.REVOKED, OrderStatus.ERROR)


# States in which challenge material handed to clients depends on the current account key.
CHALLENGE_STATES = (OrderStatus.SUBMITTED, OrderStatus.AWAITING, OrderStatus.NOTIFY, OrderStatus.PROCESSING)


@dataclass
class KeyVersion:
    key_type: str
    key_version: int
    key_creation_date: str


@dataclass
class AccountRecord:
    name: str
    directory_url: str
    email_contacts: list[str]
    account_url: str
    active_key_version: int
    account_keys: dict[str, KeyVersion]
    creation_date: str
    last_updated_date: str
    trusted_ca: str = ""
    eab_kid: str = ""
    key_max_age: int = 0                 # seconds; 0 = never rotate automatically
    # Set between the key-change call and the record update, so a crash there can be resolved later.
    pending_key_version: int | None = None

    @property
    def active_key(self) -> KeyVersion:
        return self.account_keys[str(self.active_key_version)]


@dataclass
class RoleRecord:
    name: str
    acme_account_name: str
    allowed_domains: list[str]
    allowed_domain_options: list[str]
    allowed_challenge_types: list[str]
    csr_generate_key_type: str
    csr_identifier_population: str
    creation_date: str
    last_updated_date: str
    allowed_ip_ranges: list[str] = field(default_factory=list)
    ari_renewal: bool = False


@dataclass
class ChallengeState:
    type: str
    url: str
    token: str
    status: str
    fulfilled: bool = False


@dataclass
class AuthzState:
    url: str
    identifier: str          # as the client names it ("*.example.com" for wildcard authorizations)
    identifier_type: str
    status: str
    expires: str
    challenges: list[ChallengeState]


@dataclass
class OrderRecord:
    order_id: str
    role_name: str
    account_name: str
    status: OrderStatus
    identifiers: list[str]
    identifier_types: list[str]
    csr: str                            # the client's CSR ("" in the identifier workflow)
    generated_csr: str                  # ours, in the identifier workflow
    creation_date: str
    last_update: str
    next_work_date: str
    expires: str = ""
    last_error: str = ""
    order_url: str = ""
    finalize_url: str = ""
    certificate_url: str = ""
    authorizations: list[AuthzState] = field(default_factory=list)
    certificate: str = ""
    ca_chain: list[str] = field(default_factory=list)
    serial_number: str = ""
    not_before: str = ""
    not_after: str = ""
    attempts: int = 0                   # consecutive transient failures, for back-off
    replaces: str = ""                  # ARI certificate id of the certificate this order renews
    replaced_by: str = ""               # order id that renews this one
    ari_next_check: str = ""
    ari_window_start: str = ""
    ari_window_end: str = ""
    ari_explanation_url: str = ""

    @property
    def identifier_workflow(self) -> bool:
        return self.csr == ""


def _to_jsonable(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj):
        return {f.name: _to_jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, enum.Enum):
        return obj.value
    if isinstance(obj, dict):
        return {k: _to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_to_jsonable(v) for v in obj]
    return obj


def to_json(obj: Any) -> dict[str, Any]:
    return _to_jsonable(obj)


def account_from_json(raw: dict[str, Any]) -> AccountRecord:
    raw = dict(raw)
    raw["account_keys"] = {k: KeyVersion(**v) for k, v in raw["account_keys"].items()}
    return _build(AccountRecord, raw)


def order_from_json(raw: dict[str, Any]) -> OrderRecord:
    raw = dict(raw)
    raw["status"] = OrderStatus(raw["status"])
    raw["authorizations"] = [
        AuthzState(**{**a, "challenges": [ChallengeState(**c) for c in a["challenges"]]})
        for a in raw.get("authorizations", [])
    ]
    return _build(OrderRecord, raw)


def _build(cls: Type[T], raw: dict[str, Any]) -> T:
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    return cls(**{k: v for k, v in raw.items() if k in names})


# --- storage --------------------------------------------------------------------------------------

async def load_account(storage: Storage, name: str) -> AccountRecord | None:
    raw = await get_json(storage, ACCOUNT_PREFIX + name)
    return None if raw is None else account_from_json(raw)


async def save_account(storage: Storage, rec: AccountRecord) -> None:
    await put_json(storage, ACCOUNT_PREFIX + rec.name, to_json(rec))


def account_key_path(name: str, version: int) -> str:
    return f"{ACCOUNT_KEY_PREFIX}{name}/{version}"


async def load_role(storage: Storage, name: str) -> RoleRecord | None:
    raw = await get_json(storage, ROLE_PREFIX + name)
    return None if raw is None else _build(RoleRecord, raw)


async def save_role(storage: Storage, rec: RoleRecord) -> None:
    await put_json(storage, ROLE_PREFIX + rec.name, to_json(rec))


async def load_order(storage: Storage, order_id: str) -> OrderRecord | None:
    raw = await get_json(storage, ORDER_PREFIX + order_id)
    return None if raw is None else order_from_json(raw)


async def save_order(storage: Storage, rec: OrderRecord) -> None:
    await put_json(storage, ORDER_PREFIX + rec.order_id, to_json(rec))
    if rec.status.terminal:
        # After the record: a crash in between leaves a marker that readers see is stale.
        await storage.delete(f"{ORDER_ACTIVE_PREFIX}{rec.role_name}/{rec.order_id}")


def order_key_path(order_id: str) -> str:
    return ORDER_KEY_PREFIX + order_id


def serial_path(serial: str) -> str:
    return SERIAL_PREFIX + serial.replace(":", "-")


async def list_order_ids(storage: Storage) -> list[str]:
    return [k for k in await storage.list(ORDER_PREFIX) if not k.endswith("/")]

