"""Requests and responses as the path framework sees them (independent of the wire format)."""
from __future__ import annotations

import dataclasses
import datetime as dt
import enum
from dataclasses import dataclass, field
from typing import Any, Protocol

from engine.storage import Storage


class Operation(str, enum.Enum):
    CREATE = "create"
    READ = "read"
    UPDATE = "update"
    PATCH = "patch"
    DELETE = "delete"
    LIST = "list"
    HELP = "help"
    ALIAS_LOOKAHEAD = "alias-lookahead"
    RESOLVE_ROLE = "resolve-role"
    HEADER = "header"
    RESOLVE_PATH = "resolve-path"
    ROLLBACK = "rollback"
    RENEW = "renew"
    REVOKE = "revoke"


class SystemView(Protocol):
    """What the server tells a backend about its mount and identities (pb.SystemView)."""

    async def default_lease_ttl(self) -> int: ...          # seconds
    async def max_lease_ttl(self) -> int: ...              # seconds
    async def entity_info(self, entity_id: str) -> dict[str, Any] | None: ...
    async def groups_for_entity(self, entity_id: str) -> list[dict[str, Any]]: ...
    async def local_mount(self) -> bool: ...
    async def replication_state(self) -> int: ...          # consts.ReplicationState bits


@dataclass
class StaticSystemView:
    """A SystemView with fixed answers, for unit tests and for the period before Setup."""

    default_ttl: int = 32 * 86400
    max_ttl: int = 32 * 86400
    entities: dict[str, dict[str, Any]] = field(default_factory=dict)
    groups: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    local: bool = False
    replication: int = 0   # e.g. 1 << 14: a performance standby

    async def default_lease_ttl(self) -> int:
        return self.default_ttl

    async def max_lease_ttl(self) -> int:
        return self.max_ttl

    async def entity_info(self, entity_id: str) -> dict[str, Any] | None:
        return self.entities.get(entity_id)

    async def groups_for_entity(self, entity_id: str) -> list[dict[str, Any]]:
        return list(self.groups.get(entity_id, []))

    async def local_mount(self) -> bool:
        return self.local

    async def replication_state(self) -> int:
        return self.replication


@dataclass
class Secret:
    """A lease-bearing result (issue with generate_lease) or the secret a renew/revoke refers to."""

    internal_data: dict[str, Any] = field(default_factory=dict)
    ttl: int = 0                 # seconds
    max_ttl: int = 0
    renewable: bool = False
    lease_id: str = ""
    issue_time: dt.datetime | None = None


@dataclass
class Request:
    operation: Operation
    path: str
    storage: Storage
    system: SystemView = field(default_factory=StaticSystemView)
    data: dict[str, Any] = field(default_factory=dict)
    mount_point: str = ""
    mount_type: str = ""
    id: str = ""
    entity_id: str = ""
    client_token_present: bool = False
    unauthenticated: bool = False
    headers: dict[str, list[str]] = field(default_factory=dict)
    remote_addr: str = ""
    secret: Secret | None = None
    match: dict[str, str] = field(default_factory=dict)   # named captures of the matched pattern

    def replace(self, **changes: Any) -> "Request":
        return dataclasses.replace(self, **changes)


@dataclass
class Response:
    data: dict[str, Any] | None = None
    warnings: list[str] = field(default_factory=list)
    secret: Secret | None = None
    headers: dict[str, list[str]] = field(default_factory=dict)
    redirect: str = ""

    def add_warning(self, message: str) -> None:
        self.warnings.append(message)

    @property
    def is_error(self) -> bool:
        return bool(self.data) and set(self.data) == {"error"}


def error_response(message: str) -> Response:
    """Vault's usual user error: the server answers 400 `{"errors": [message]}`."""
    return Response(data={"error": message})


def raw_response(body: bytes, content_type: str, status: int = 200,
                 cache_control: str | None = None) -> Response:
    """A non-JSON body (PEM, DER, OCSP). Bytes are base64-encoded on the wire, as the server expects."""
    data: dict[str, Any] = {"http_content_type": content_type, "http_raw_body": body, "http_status_code": status}
    if cache_control:
        data["http_raw_cache_control"] = cache_control
    return Response(data=data)


def paginate(keys: list[str], after: str, limit: int) -> list[str]:
    """OpenBao's `after`/`limit` on LISTs: keys sorted, strictly after `after`, at most `limit` (<=0: all)."""
    keys = sorted(keys)
    if after:
        keys = [k for k in keys if k > after]
    return keys[:limit] if limit > 0 else keys


def list_response(keys: list[str], key_info: dict[str, Any] | None = None) -> Response:
    data: dict[str, Any] = {"keys": keys}
    if key_info is not None:
        data["key_info"] = key_info
    return Response(data=data)
