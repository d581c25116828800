"""The plugin's gRPC link alone, in one process: our HTTP/2 + TLS layer against grpclib on the same mTLS unix
socket, sequential unary calls. Shows what one call costs the plugin apart from the server (a benchmark, not a
test)."""
from __future__ import annotations

import asyncio
import os
import tempfile
import time
from typing import Any, Awaitable, Callable

from grpclib.client import Channel
from grpclib.server import Server

from plugin.host import tls
from plugin.host.grpc_client import GrpcChannel
from plugin.host.grpc_server import GrpcServer
from proto import multiplexing_grpc, multiplexing_pb2
from scripts.benchmarks import report

CALLS = 5000
PATH = "/pluginutil.multiplexing.PluginMultiplexing/MultiplexingSupport"


class _Echo(multiplexing_grpc.PluginMultiplexingBase):
    async def MultiplexingSupport(self, stream: Any) -> None:  # noqa: N802
        await stream.recv_message()
        await stream.send_message(multiplexing_pb2.MultiplexingSupportResponse(supported=True))


async def _measure(make_server: Callable[[list[Any]], Any], dial: Callable[[str, Any], tuple[Any, Callable[[], Awaitable[Any]]]]) -> float:
    """CPU microseconds per call, client and server together."""
    server_ident, client_ident = tls.make_identity(), tls.make_identity()
    server = make_server([_Echo()])
    sock = os.path.join(tempfile.mkdtemp(prefix="pp-link-"), "s")
    await server.start(path=sock, ssl=tls.server_context(server_ident, client_ident.cert_pem.decode()))
    channel, call = dial(sock, tls.client_context(client_ident, server_ident.cert_pem.decode()))
    try:
        for _ in range(200):
            await call()
        cpu0 = time.process_time()
        for _ in range(CALLS):
            await call()
        return (time.process_time() - cpu0) / CALLS * 1e6
    finally:
        channel.close()
        server.close()


def _ours(sock: str, ctx: Any) -> tuple[Any, Callable[[], Awaitable[Any]]]:
    channel = GrpcChannel(path=sock, ssl_context=ctx)
    req = multiplexing_pb2.MultiplexingSupportRequest()
    return channel, lambda: channel.unary(PATH, req, multiplexing_pb2.MultiplexingSupportResponse)


def _grpclib(sock: str, ctx: Any) -> tuple[Any, Callable[[], Awaitable[Any]]]:
    from grpclib.config import Configuration
    channel = Channel(path=sock, ssl=ctx, config=Configuration(ssl_target_name_override="localhost"))
    stub = multiplexing_grpc.PluginMultiplexingStub(channel)
    req = multiplexing_pb2.MultiplexingSupportRequest()
    return channel, lambda: stub.MultiplexingSupport(req)


def bench_link(_bao: Any, _args: Any) -> None:
    ours = asyncio.run(_measure(GrpcServer, _ours))
    theirs = asyncio.run(_measure(Server, _grpclib))
    report(f"| one unary call over the plugin's mTLS link, client + server CPU in one process | ours {ours:.0f} us, "
           f"grpclib/h2 {theirs:.0f} us | {theirs / ours:.1f}x less CPU | |")


BENCHES = {"link": bench_link}
