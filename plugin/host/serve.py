"""Serve the plugin: negotiate with the server's environment, listen, print the handshake line, run."""
from __future__ import annotations

import asyncio
import logging
import os
import random
import signal
import sys
import tempfile

from grpclib.health.service import Health

from plugin.host import tls
from plugin.host.broker import Broker
from plugin.host.grpc_server import GrpcServer
from plugin.host.services import (
    BackendFactory,
    BackendService,
    ControllerService,
    Lifecycle,
    MultiplexingService,
    StdioService,
    VersionService,
)

log = logging.getLogger("python-pki.host")

MAGIC_COOKIE_KEY = "VAULT_BACKEND_PLUGIN"
MAGIC_COOKIE_VALUE = "6669da05-b1c8-4f49-97d9-c8e5bed98e20"
CORE_PROTOCOL = 1
SUPPORTED_APP_PROTOCOLS = (5, 4)
SETUP_DEADLINE = 120.0      # a process nobody set up is a leak (e.g. a failed load the server forgot)
PARENT_POLL = 1.0


class NegotiationError(Exception):
    pass


def negotiate_protocol(env: dict[str, str]) -> int:
    offered = {int(v) for v in env.get("PLUGIN_PROTOCOL_VERSIONS", "").split(",") if v.strip().isdigit()}
    for version in SUPPORTED_APP_PROTOCOLS:
        if version in offered:
            return version
    raise NegotiationError(f"server offers plugin protocols {sorted(offered)}; we speak {SUPPORTED_APP_PROTOCOLS}")


def automtls_enabled(env: dict[str, str]) -> bool:
    flag = env.get("VAULT_PLUGIN_AUTOMTLS_ENABLED") or env.get("BAO_PLUGIN_AUTOMTLS_ENABLED") or ""
    return flag.lower() == "true" and bool(env.get("PLUGIN_CLIENT_CERT"))


UNIX_PATH_MAX = 100   # sun_path is 108 bytes on Linux; leave room for the terminator


async def _listen(server: GrpcServer, env: dict[str, str], tls_ctx) -> tuple[str, str]:
    """Listen on a unix socket (in PLUGIN_UNIX_SOCKET_DIR when set), else TCP within the server's port range."""
    directory = tempfile.mkdtemp(prefix="python-pki-", dir=env.get("PLUGIN_UNIX_SOCKET_DIR") or None)
    path = os.path.join(directory, "plugin.sock")
    if len(path.encode()) <= UNIX_PATH_MAX:
        try:
            await server.start(path=path, ssl=tls_ctx)
            return "unix", path
        except OSError as exc:
            log.info("unix socket listen failed (%s); using tcp", exc)
    os.rmdir(directory)
    low = int(env.get("PLUGIN_MIN_PORT") or 10000)
    high = int(env.get("PLUGIN_MAX_PORT") or 25000)
    start = random.randint(low, high)
    for offset in range(high - low + 1):
        port = low + (start - low + offset) % (high - low + 1)
        try:
            await server.start("127.0.0.1", port, ssl=tls_ctx)
            return "tcp", f"127.0.0.1:{port}"
        except OSError:
            continue
    raise OSError(f"no free port in {low}-{high}")


async def _watch_parent(life: Lifecycle, parent: int) -> None:
    # If the server dies (even by SIGKILL) nobody will send Shutdown: exit on our own.
    while not life.shutdown.is_set():
        if os.getppid() != parent:
            log.info("server process went away; exiting")
            life.shutdown.set()
            return
        await asyncio.sleep(PARENT_POLL)


async def _setup_deadline(life: Lifecycle) -> None:
    try:
        await asyncio.wait_for(life.setup_seen.wait(), SETUP_DEADLINE)
    except asyncio.TimeoutError:
        log.info("no Setup within %.0fs; exiting", SETUP_DEADLINE)
        life.shutdown.set()


async def serve(factory: BackendFactory, env: dict[str, str]) -> None:
    version = negotiate_protocol(env)
    life = Lifecycle()
    server_tls = client_tls = None
    cert_field = ""
    if automtls_enabled(env):
        ident = tls.make_identity()
        server_tls = tls.server_context(ident, env["PLUGIN_CLIENT_CERT"])
        client_tls = tls.client_context(ident, env["PLUGIN_CLIENT_CERT"])
        cert_field = ident.handshake_cert
    broker = Broker(client_tls)
    server = GrpcServer([
        BackendService(factory, broker, life),
        broker,
        ControllerService(life),
        StdioService(life),
        MultiplexingService(supported=True),
        VersionService(),
        Health(),
    ])
    network, address = await _listen(server, env, server_tls)
    line = f"{CORE_PROTOCOL}|{version}|{network}|{address}|grpc|{cert_field}\n"
    sys.stdout.write(line)
    sys.stdout.flush()
    # Anything printed later must not corrupt the protocol stream.
    sys.stdout = sys.stderr

    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGINT, lambda: None)      # the terminal's Ctrl-C is the server's to handle
    loop.add_signal_handler(signal.SIGTERM, life.shutdown.set)
    watchers = [asyncio.create_task(_watch_parent(life, os.getppid())), asyncio.create_task(_setup_deadline(life))]
    await life.shutdown.wait()
    for task in watchers:
        task.cancel()
    server.close()
    try:
        await asyncio.wait_for(server.wait_closed(), 1.0)
    except asyncio.TimeoutError:
        pass
    if network == "unix":
        try:
            os.unlink(address)
            os.rmdir(os.path.dirname(address))
        except OSError:
            pass
