"""go-plugin's GRPCBroker: the server announces where its Storage/SystemView services listen; we dial them.

The announcement (ConnInfo) can arrive before or after the Setup that names its service id, so
connections are promised by id and resolved whenever the announcement comes in.
"""
from __future__ import annotations

import asyncio
import logging
import ssl

from plugin.host.grpc_client import GrpcChannel
from proto import grpc_broker_grpc, grpc_broker_pb2

log = logging.getLogger("python-pki.broker")

DIAL_TIMEOUT = 5.0   # the Go SDK waits this long for a brokered service to be announced


class Broker(grpc_broker_grpc.GRPCBrokerBase):
    def __init__(self, tls: ssl.SSLContext | None) -> None:
        self._tls = tls
        self._announced: dict[int, asyncio.Future[grpc_broker_pb2.ConnInfo]] = {}

    def _future(self, service_id: int) -> asyncio.Future[grpc_broker_pb2.ConnInfo]:
        fut = self._announced.get(service_id)
        if fut is None:
            fut = asyncio.get_running_loop().create_future()
            self._announced[service_id] = fut
        return fut

    async def StartStream(self, stream) -> None:  # noqa: N802 - gRPC method name
        async for info in stream:
            if info.HasField("knock") and info.knock.knock and not info.knock.ack:
                # A multiplexed-broker dialer asks whether we listen for this id; we host no services.
                await stream.send_message(grpc_broker_pb2.ConnInfo(
                    service_id=info.service_id,
                    knock=grpc_broker_pb2.ConnInfo.Knock(knock=True, ack=False, error="no such service")))
                continue
            fut = self._future(info.service_id)
            if fut.done():
                self._announced[info.service_id] = fut = asyncio.get_running_loop().create_future()
            fut.set_result(info)
            log.debug("broker announced service %d at %s %s", info.service_id, info.network, info.address)

    async def dial(self, service_id: int) -> GrpcChannel:
        try:
            info = await asyncio.wait_for(asyncio.shield(self._future(service_id)), DIAL_TIMEOUT)
        except asyncio.TimeoutError:
            raise ConnectionError(f"timeout waiting for the server to announce broker service {service_id}") from None
        if info.network == "unix":
            return GrpcChannel(path=info.address, ssl_context=self._tls)
        host, _, port = info.address.rpartition(":")
        return GrpcChannel(host=host.strip("[]"), port=int(port), ssl_context=self._tls)
