"""pb.Storage served over an InMemoryStorage, for tests of the gRPC link and the storage client."""
from __future__ import annotations

from engine.storage import InMemoryStorage
from proto import backend_grpc, backend_pb2


class InMemoryStorageService(backend_grpc.StorageBase):
    """Get, Put, Delete, List and ListPage; the transaction calls are never made by the plugin."""

    def __init__(self) -> None:
        self.store = InMemoryStorage()

    async def fetch(self, key: str) -> bytes | None:
        """What Get answers; a test overrides it to misbehave."""
        return await self.store.get(key)

    async def Get(self, stream) -> None:  # noqa: N802
        args = await stream.recv_message()
        value = await self.fetch(args.key)
        reply = backend_pb2.StorageGetReply()
        if value is not None:
            reply.entry.CopyFrom(backend_pb2.StorageEntry(key=args.key, value=value))
        await stream.send_message(reply)

    async def Put(self, stream) -> None:  # noqa: N802
        args = await stream.recv_message()
        await self.store.put(args.entry.key, args.entry.value)
        await stream.send_message(backend_pb2.StoragePutReply())

    async def Delete(self, stream) -> None:  # noqa: N802
        args = await stream.recv_message()
        await self.store.delete(args.key)
        await stream.send_message(backend_pb2.StorageDeleteReply())

    async def List(self, stream) -> None:  # noqa: N802
        args = await stream.recv_message()
        await stream.send_message(backend_pb2.StorageListReply(keys=await self.store.list(args.prefix)))

    async def ListPage(self, stream) -> None:  # noqa: N802
        args = await stream.recv_message()
        keys = await self.store.list_page(args.prefix, args.after, args.limit)
        await stream.send_message(backend_pb2.StorageListReply(keys=keys))

    async def IsTransactional(self, stream) -> None: raise NotImplementedError  # noqa: E704, N802
    async def BeginReadOnlyTx(self, stream) -> None: raise NotImplementedError  # noqa: E704, N802
    async def BeginTx(self, stream) -> None: raise NotImplementedError  # noqa: E704, N802
    async def Commit(self, stream) -> None: raise NotImplementedError  # noqa: E704, N802
    async def Rollback(self, stream) -> None: raise NotImplementedError  # noqa: E704, N802
