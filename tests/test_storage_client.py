"""GrpcStorage's paged listing against a Storage service with ListPage (OpenBao) and without it (Vault)."""
from __future__ import annotations

import asyncio
from pathlib import Path

from grpclib.const import Status
from grpclib.exceptions import GRPCError

from engine.storage import PagingUnsupported, list_pages
from plugin.host.clients import GrpcStorage, LazyChannel
from plugin.host.grpc_client import GrpcChannel
from plugin.host.grpc_server import GrpcServer
from tests.storage_service import InMemoryStorageService


class FakeStorageService(InMemoryStorageService):
    """Counts List calls; without paging, ListPage answers UNIMPLEMENTED as a Vault server does."""

    def __init__(self, paging: bool) -> None:
        super().__init__()
        self.paging = paging
        self.list_calls = 0

    async def List(self, stream) -> None:  # noqa: N802
        self.list_calls += 1
        await super().List(stream)

    async def ListPage(self, stream) -> None:  # noqa: N802
        if not self.paging:
            raise GRPCError(Status.UNIMPLEMENTED, "unknown method ListPage for service pb.Storage")
        await super().ListPage(stream)


def _run(tmp_path: Path, paging: bool) -> tuple[list[list[str]], int, bool]:
    async def go() -> tuple[list[list[str]], int, bool]:
        service = FakeStorageService(paging)
        server = GrpcServer([service])
        sock = str(tmp_path / f"s{int(paging)}.sock")
        await server.start(path=sock)

        async def dial() -> GrpcChannel:
            return GrpcChannel(path=sock)
        channel = LazyChannel(dial)
        storage = GrpcStorage(channel)
        try:
            for i in range(12):
                await storage.put(f"certs/{i:02d}", b"x")
            pages = [keys async for keys in list_pages(storage, "certs/", 5)]
            refused = False
            try:
                await storage.list_page("certs/", "", 5)
            except PagingUnsupported:
                refused = True
            return pages, service.list_calls, refused
        finally:
            channel.close()
            server.close()
            await server.wait_closed()
    return asyncio.run(go())


def test_list_page_pages_through_the_server(tmp_path: Path) -> None:
    pages, list_calls, refused = _run(tmp_path, paging=True)
    assert pages == [[f"{i:02d}" for i in range(0, 5)], [f"{i:02d}" for i in range(5, 10)], ["10", "11"]]
    assert list_calls == 0 and not refused


def test_without_list_page_the_keys_are_listed_once(tmp_path: Path) -> None:
    pages, list_calls, refused = _run(tmp_path, paging=False)
    assert [k for page in pages for k in page] == [f"{i:02d}" for i in range(12)]
    assert list_calls == 1 and refused
