"""The key-generation pool's processes must never hold the plugin's stdout/stderr (pipes to the server)."""
from __future__ import annotations

import asyncio
import os

from engine import workers


def stdio_of_worker_and_its_parent() -> tuple[str, str, str, str]:
    ppid = os.getppid()
    return (os.readlink("/proc/self/fd/1"), os.readlink("/proc/self/fd/2"),
            os.readlink(f"/proc/{ppid}/fd/1"), os.readlink(f"/proc/{ppid}/fd/2"))


def test_pool_processes_hold_dev_null_not_our_stdio():
    ours = (os.readlink("/proc/self/fd/1"), os.readlink("/proc/self/fd/2"))
    workers.shutdown()
    try:
        seen = asyncio.run(workers.run(stdio_of_worker_and_its_parent))
    finally:
        workers.shutdown()
    assert seen == ("/dev/null",) * 4
    # and our own stdio is back in place afterwards
    assert (os.readlink("/proc/self/fd/1"), os.readlink("/proc/self/fd/2")) == ours


def test_pool_exits_when_its_owner_is_killed(tmp_path):
    """SIGKILL the process that owns a pool: its workers and the forkserver must go away on their own."""
    import signal
    import subprocess
    import sys
    import time

    root = os.path.dirname(os.path.dirname(__file__))
    script = (
        "import asyncio, os, sys\n"
        "from engine import workers\n"
        "asyncio.run(workers.generate_rsa(2048))\n"
        "print(os.getpid(), flush=True)\n"
        "import time; time.sleep(60)\n"
    )
    owner = subprocess.Popen([sys.executable, "-c", script], cwd=root, stdout=subprocess.PIPE, text=True)
    pid = int(owner.stdout.readline())

    def descendants(parent: int) -> set[int]:
        out = subprocess.run(["ps", "-eo", "pid,ppid"], capture_output=True, text=True).stdout.split("\n")[1:]
        pairs = [tuple(map(int, line.split())) for line in out if line.strip()]
        found, frontier = set(), {parent}
        while frontier:
            frontier = {p for p, pp in pairs if pp in frontier} - found
            found |= frontier
        return found

    pool = descendants(pid)
    assert pool, "the pool should have started processes"
    os.kill(pid, signal.SIGKILL)
    owner.wait(10)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and any(os.path.exists(f"/proc/{p}") for p in pool):
        time.sleep(0.2)
    left = [p for p in pool if os.path.exists(f"/proc/{p}")
            and open(f"/proc/{p}/stat").read().rsplit(")", 1)[1].split()[0] != "Z"]
    assert not left, f"pool processes outlived their owner: {left}"
