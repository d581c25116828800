"""The gRPC services the server calls on the plugin process."""
from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Callable

from grpclib.const import Status
from grpclib.exceptions import GRPCError

from plugin.framework import Backend, Operation, Request, UnsupportedOperationError
from plugin.framework.errors import InternalError, forwarding_error, to_vault_error
from plugin.host import translate
from plugin.host.broker import Broker
from plugin.host.clients import GrpcStorage, GrpcSystemView, LazyChannel
from proto import (
    backend_grpc,
    backend_pb2,
    grpc_controller_grpc,
    grpc_controller_pb2,
    grpc_stdio_grpc,
    logical_version_grpc,
    logical_version_pb2,
    multiplexing_grpc,
    multiplexing_pb2,
)

log = logging.getLogger("python-pki.host")

BackendFactory = Callable[[], Backend]
RESOLVE_PATH = Operation.RESOLVE_PATH.value
_EMPTY_REPLY = backend_pb2.HandleRequestReply()
_NO_EXISTENCE_CHECK = backend_pb2.HandleExistenceCheckReply(check_found=False, exists=False)


@dataclass
class MountInstance:
    """One mount served by this process: its backend and its brokered storage/system view."""

    backend: Backend
    storage: GrpcStorage
    system: GrpcSystemView
    channel: LazyChannel
    config: dict[str, str] = field(default_factory=dict)


class Lifecycle:
    """Process-wide state: shutdown signalling and whether any mount finished Setup."""

    def __init__(self) -> None:
        self.shutdown = asyncio.Event()
        self.setup_seen = asyncio.Event()


class BackendService(backend_grpc.BackendBase):
    def __init__(self, factory: BackendFactory, broker: Broker, life: Lifecycle) -> None:
        self._factory = factory
        self._broker = broker
        self._life = life
        self._mounts: dict[str, MountInstance] = {}

    @staticmethod
    def _mux_id(stream) -> str:
        return stream.metadata.get("multiplex_id", "") if stream.metadata else ""

    def _mount(self, stream) -> MountInstance:
        key = self._mux_id(stream)
        inst = self._mounts.get(key)
        if inst is None and not key and len(self._mounts) == 1:
            inst = next(iter(self._mounts.values()))
        if inst is None:
            raise GRPCError(Status.FAILED_PRECONDITION, "backend not set up for this multiplex id")
        return inst

    async def Setup(self, stream) -> None:  # noqa: N802
        args = await stream.recv_message()
        key = self._mux_id(stream)
        try:
            backend = self._factory()
        except Exception as exc:  # noqa: BLE001 - reported to the server as a setup error
            log.exception("backend setup failed")
            await stream.send_message(backend_pb2.SetupReply(err=f"setup failed: {exc}"))
            return
        broker_id = args.broker_id
        channel = LazyChannel(lambda: self._broker.dial(broker_id))
        self._mounts[key] = MountInstance(backend=backend, storage=GrpcStorage(channel),
                                          system=GrpcSystemView(channel), channel=channel,
                                          config=dict(args.Config))
        self._life.setup_seen.set()
        await stream.send_message(backend_pb2.SetupReply())

    async def Type(self, stream) -> None:  # noqa: N802
        await stream.recv_message()
        inst = self._mount(stream)
        await stream.send_message(backend_pb2.TypeReply(type=inst.backend.backend_type))

    async def SpecialPaths(self, stream) -> None:  # noqa: N802
        await stream.recv_message()
        sp = self._mount(stream).backend.special_paths
        await stream.send_message(backend_pb2.SpecialPathsReply(paths=backend_pb2.Paths(
            root=sp.root, unauthenticated=sp.unauthenticated, local_storage=sp.local_storage,
            seal_wrap_storage=sp.seal_wrap_storage, allow_snapshot_read=sp.allow_snapshot_read,
            binary=sp.binary)))

    async def Initialize(self, stream) -> None:  # noqa: N802
        await stream.recv_message()
        inst = self._mount(stream)
        reply = backend_pb2.InitializeReply()
        try:
            await inst.backend.initialize(Request(operation=Operation.UPDATE, path="", storage=inst.storage,
                                                  system=inst.system))
        except Exception as exc:  # noqa: BLE001
            forward = forwarding_error(exc)
            if forward is not None:
                # A standby initializes on read-only storage; the active does the writing and we learn of it
                # through invalidations. Not a plugin error.
                log.info("initialize left its writes to the active node: %s", forward.message)
            else:
                log.exception("initialize failed")
                reply.err.CopyFrom(backend_pb2.ProtoError(err_type=2, err_msg=f"initialize failed: {exc}"))
        await stream.send_message(reply)

    async def HandleRequest(self, stream) -> None:  # noqa: N802
        args = await stream.recv_message()
        if args.request.operation == RESOLVE_PATH:
            # Sent ahead of every client request; an empty reply keeps the path as sent. Answered before
            # any parsing because it doubles the request count.
            await stream.send_message(_EMPTY_REPLY)
            return
        inst = self._mount(stream)
        req = translate.request_from_pb(args.request, inst.storage, inst.system)
        if req is None:
            err = UnsupportedOperationError()
            await stream.send_message(backend_pb2.HandleRequestReply(err=translate.error_to_pb(err)))
            return
        outcome = await inst.backend.handle(req)
        reply = backend_pb2.HandleRequestReply()
        if outcome.error is not None:
            reply.err.CopyFrom(translate.error_to_pb(outcome.error))
        elif outcome.response is not None:
            reply.response.CopyFrom(translate.response_to_pb(outcome.response))
        await stream.send_message(reply)

    async def HandleExistenceCheck(self, stream) -> None:  # noqa: N802
        args = await stream.recv_message()
        inst = self._mount(stream)
        routed = inst.backend.route(args.request.path)
        if routed is not None and routed[0].exists is None:
            # Most write paths have no existence check: answer from the router, before parsing the request.
            await stream.send_message(_NO_EXISTENCE_CHECK)
            return
        req = translate.request_from_pb(args.request, inst.storage, inst.system)
        reply = backend_pb2.HandleExistenceCheckReply()
        try:
            if req is None:
                raise UnsupportedOperationError()
            reply.check_found, reply.exists = await inst.backend.existence_check(req)
        except Exception as exc:  # noqa: BLE001
            err = to_vault_error(exc)
            if err is None:
                log.exception("existence check failed")
                err = InternalError("internal error")
            reply.err.CopyFrom(translate.error_to_pb(err))
        await stream.send_message(reply)

    async def Cleanup(self, stream) -> None:  # noqa: N802
        await stream.recv_message()
        key = self._mux_id(stream)
        inst = self._mounts.pop(key, None)
        if inst is not None:
            try:
                await inst.backend.cleanup()
            finally:
                inst.channel.close()
        await stream.send_message(backend_pb2.Empty())

    async def InvalidateKey(self, stream) -> None:  # noqa: N802
        args = await stream.recv_message()
        self._mount(stream).backend.invalidate(args.key)
        await stream.send_message(backend_pb2.Empty())


class ControllerService(grpc_controller_grpc.GRPCControllerBase):
    def __init__(self, life: Lifecycle) -> None:
        self._life = life

    async def Shutdown(self, stream) -> None:  # noqa: N802
        await stream.recv_message()
        await stream.send_message(grpc_controller_pb2.Empty())
        self._life.shutdown.set()


class StdioService(grpc_stdio_grpc.GRPCStdioBase):
    """We log straight to stderr (which the server reads), so this stream stays open and silent."""

    def __init__(self, life: Lifecycle) -> None:
        self._life = life

    async def StreamStdio(self, stream) -> None:  # noqa: N802
        await stream.recv_message()
        await self._life.shutdown.wait()


class MultiplexingService(multiplexing_grpc.PluginMultiplexingBase):
    def __init__(self, supported: bool) -> None:
        self._supported = supported

    async def MultiplexingSupport(self, stream) -> None:  # noqa: N802
        await stream.recv_message()
        await stream.send_message(multiplexing_pb2.MultiplexingSupportResponse(supported=self._supported))


def plugin_version() -> str:
    """The version the plugin reports at registration: `v` + the installed package's version (v0.1.0)."""
    from importlib import metadata

    try:
        return "v" + metadata.version("python-pki")
    except metadata.PackageNotFoundError:
        return ""


class VersionService(logical_version_grpc.PluginVersionBase):
    # The server refuses a `-version` that differs from the reported one and records ours when none is given.
    async def Version(self, stream) -> None:  # noqa: N802
        await stream.recv_message()
        await stream.send_message(logical_version_pb2.VersionReply(plugin_version=plugin_version()))

