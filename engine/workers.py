"""CPU-heavy work (RSA key generation) off the event loop, in a process pool owned by the engine.

RSA key generation dominates RSA issuance (tens of ms per key); a process pool sized to the machine's cores
lets a 2-core box use both whatever the GIL does. The pool starts lazily, on the
first request that needs it, with the forkserver method: the plugin process runs gRPC threads and forking it
directly is unsafe.
"""
from __future__ import annotations

import asyncio
import atexit
import contextlib
import multiprocessing
import os
import sys
import threading
import time
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from multiprocessing import forkserver, resource_tracker
from typing import Any, Callable, Iterator, TypeVar

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

T = TypeVar("T")

_lock = threading.Lock()
_executor: Executor | None = None


def _pool_size() -> int:
    env = os.environ.get("PYTHON_PKI_WORKERS")
    if env and env.isdigit() and int(env) > 0:
        return int(env)
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1))


def executor() -> Executor:
    """The shared pool; a thread pool when PYTHON_PKI_WORKERS=threads (debugging, restricted sandboxes)."""
    global _executor
    with _lock:
        if _executor is None:
            if os.environ.get("PYTHON_PKI_WORKERS") == "threads":
                _executor = ThreadPoolExecutor(max_workers=4, thread_name_prefix="pki-worker")
            else:
                method = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
                ctx = multiprocessing.get_context(method)
                if method == "forkserver":
                    ctx.set_forkserver_preload(["engine.workers"])
                    with _stdio_detached():
                        # Started here, not lazily, so that they inherit /dev/null rather than our stdio.
                        resource_tracker.ensure_running()
                        forkserver.ensure_running()
                _executor = ProcessPoolExecutor(max_workers=_pool_size(), mp_context=ctx,
                                                initializer=_worker_init, initargs=(os.getpid(),))
        return _executor


@contextlib.contextmanager
def _stdio_detached() -> Iterator[None]:
    """Processes started inside get /dev/null as stdout/stderr.

    The plugin's stdout and stderr are pipes to the server, and the server only sees the plugin exit once
    every holder of those pipes has closed them. Pool processes outliving a killed plugin kept the server
    from noticing the crash, so it never relaunched the plugin.
    """
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    saved = (os.dup(1), os.dup(2))
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in (*saved, devnull):
            os.close(fd)


OWNER_POLL_SECONDS = 1.0


def _owner_alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            return fh.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except (OSError, IndexError):
        return False


def _worker_init(owner: int) -> None:
    """Detach from our stdio and exit once the process that owns the pool is gone.

    After a SIGKILL of the plugin nothing else ends the pool: each worker waits on its task queue, and
    the forkserver only exits when every worker has closed the pipe it watches.
    """
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    os.close(devnull)

    def watch() -> None:
        while _owner_alive(owner):
            time.sleep(OWNER_POLL_SECONDS)
        os._exit(0)

    threading.Thread(target=watch, name="pool-owner-watch", daemon=True).start()


async def run(fn: Callable[..., T], *args: Any) -> T:
    """Run a picklable top-level function in the pool and await its result."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(executor(), fn, *args)


def shutdown() -> None:
    global _executor
    with _lock:
        if _executor is not None:
            _executor.shutdown(wait=False, cancel_futures=True)
            _executor = None


atexit.register(shutdown)


def rsa_private_key_der(bits: int) -> bytes:
    """Runs in a worker: a fresh RSA key as PKCS#8 DER (bytes cross the process boundary cheaply)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    return key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


async def generate_rsa(bits: int) -> rsa.RSAPrivateKey:
    der = await run(rsa_private_key_der, bits)
    # Made by our own worker a moment ago: OpenSSL's RSA check would cost as much again, serially, on the loop.
    key = serialization.load_der_private_key(der, password=None, unsafe_skip_rsa_key_validation=True)
    assert isinstance(key, rsa.RSAPrivateKey)
    return key


def private_keys_valid(blocks: list[bytes]) -> list[bool]:
    """Runs in a worker: whether each PEM block is a private key that passes OpenSSL's checks.

    The RSA consistency check costs up to hundreds of ms per large key; a bundle of them on the event loop
    would hold up every mount.
    """
    out = []
    for block in blocks:
        try:
            serialization.load_pem_private_key(block, password=None)
            out.append(True)
        except (ValueError, TypeError):
            out.append(False)
    return out


async def load_private_keys(blocks: list[bytes]) -> list[Any]:
    """Each block as a private key (None where it is not one), checked off the event loop."""
    if not blocks:
        return []
    valid = await run(private_keys_valid, blocks)
    # Checked in the worker just now: loading again without the check is cheap enough for the loop.
    return [serialization.load_pem_private_key(block, password=None, unsafe_skip_rsa_key_validation=True)
            if ok else None for block, ok in zip(blocks, valid)]
