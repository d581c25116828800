"""Clients for the server's brokered services: Storage (engine.storage.Storage) and SystemView."""
from __future__ import annotations

import asyncio
import time
from typing import Any, Awaitable, Callable, TypeVar

from google.protobuf.json_format import MessageToDict
from grpclib.const import Status
from grpclib.exceptions import GRPCError

from engine.storage import PagingUnsupported, StorageError
from plugin.host.grpc_client import GrpcChannel
from proto import backend_pb2

M = TypeVar("M")
ChannelSource = Callable[[], Awaitable[GrpcChannel]]


class LazyChannel:
    """Dials the brokered service on first use; Setup must not block on it (register-time Setup has none)."""

    def __init__(self, dial: ChannelSource) -> None:
        self._dial = dial
        self._channel: GrpcChannel | None = None
        self._lock = asyncio.Lock()

    async def get(self) -> GrpcChannel:
        if self._channel is None:
            async with self._lock:
                if self._channel is None:
                    self._channel = await self._dial()
        return self._channel

    def close(self) -> None:
        if self._channel is not None:
            self._channel.close()
            self._channel = None


class GrpcStorage:
    def __init__(self, channel: LazyChannel) -> None:
        self._channel = channel
        self._paging = True    # until the server says it has no ListPage (Vault)

    async def _call(self, method: str, args: Any, reply_type: type[M]) -> M:
        return await (await self._channel.get()).unary("/pb.Storage/" + method, args, reply_type)

    async def get(self, key: str) -> bytes | None:
        reply = await self._call("Get", backend_pb2.StorageGetArgs(key=key), backend_pb2.StorageGetReply)
        if reply.err:
            raise StorageError(reply.err)
        return reply.entry.value if reply.HasField("entry") else None

    async def put(self, key: str, value: bytes, seal_wrap: bool = False) -> None:
        reply = await self._call("Put", backend_pb2.StoragePutArgs(
            entry=backend_pb2.StorageEntry(key=key, value=value, seal_wrap=seal_wrap)), backend_pb2.StoragePutReply)
        if reply.err:
            raise StorageError(reply.err)

    async def delete(self, key: str) -> None:
        reply = await self._call("Delete", backend_pb2.StorageDeleteArgs(key=key), backend_pb2.StorageDeleteReply)
        if reply.err:
            raise StorageError(reply.err)

    async def list(self, prefix: str) -> list[str]:
        reply = await self._call("List", backend_pb2.StorageListArgs(prefix=prefix), backend_pb2.StorageListReply)
        if reply.err:
            raise StorageError(reply.err)
        return list(reply.keys)

    async def list_page(self, prefix: str, after: str, limit: int) -> list[str]:
        if not self._paging:
            raise PagingUnsupported("the server's storage has no ListPage")
        try:
            reply = await self._call("ListPage", backend_pb2.StorageListPageArgs(
                prefix=prefix, after=after, limit=limit), backend_pb2.StorageListReply)
        except GRPCError as exc:
            if exc.status != Status.UNIMPLEMENTED:
                raise
            self._paging = False
            raise PagingUnsupported("the server's storage has no ListPage") from None
        if reply.err:
            raise StorageError(reply.err)
        return list(reply.keys)


class GrpcSystemView:
    """pb.SystemView. Lease TTLs are asked for every time: a `secrets tune` must bind the very next issue."""

    # The replication state changes only with the node's role, and the server rebuilds every mount then; a short
    # memory still spares the round trip on each forwarded-up-front request without outliving a role change.
    REPLICATION_STATE_TTL = 1.0

    def __init__(self, channel: LazyChannel) -> None:
        self._channel = channel
        self._replication: tuple[float, int] | None = None

    async def _call(self, method: str, args: Any, reply_type: type[M]) -> M:
        return await (await self._channel.get()).unary("/pb.SystemView/" + method, args, reply_type)

    async def replication_state(self) -> int:
        now = time.monotonic()
        if self._replication is None or now - self._replication[0] > self.REPLICATION_STATE_TTL:
            reply = await self._call("ReplicationState", backend_pb2.Empty(), backend_pb2.ReplicationStateReply)
            self._replication = (now, reply.state)
        return self._replication[1]

    async def default_lease_ttl(self) -> int:
        return (await self._call("DefaultLeaseTTL", backend_pb2.Empty(), backend_pb2.TTLReply)).TTL // 1_000_000_000

    async def max_lease_ttl(self) -> int:
        return (await self._call("MaxLeaseTTL", backend_pb2.Empty(), backend_pb2.TTLReply)).TTL // 1_000_000_000

    async def entity_info(self, entity_id: str) -> dict[str, Any] | None:
        reply = await self._call("EntityInfo", backend_pb2.EntityInfoArgs(entity_id=entity_id), backend_pb2.EntityInfoReply)
        if reply.err:
            raise StorageError(reply.err)
        if not reply.HasField("entity"):
            return None
        return MessageToDict(reply.entity, preserving_proto_field_name=True)

    async def groups_for_entity(self, entity_id: str) -> list[dict[str, Any]]:
        reply = await self._call("GroupsForEntity", backend_pb2.EntityInfoArgs(entity_id=entity_id), backend_pb2.GroupsForEntityReply)
        if reply.err:
            raise StorageError(reply.err)
        return [MessageToDict(g, preserving_proto_field_name=True) for g in reply.groups]

    async def local_mount(self) -> bool:
        return (await self._call("LocalMount", backend_pb2.Empty(), backend_pb2.LocalMountReply)).local
