"""`scripts/bench profile`: the plugin process under load, sampled by py-spy, one flame graph SVG per workload
(EC issue, read, revoke), plus the frames that took most of the samples, summed from the same run's collapsed
stacks. A benchmark, not a test. The graphs go to $PKI_BENCH_PROFILE_DIR (default ./bench-profiles);
PKI_BENCH_PROFILE_SAMPLER=off runs the same loads unobserved and reports only the CPU per request."""
from __future__ import annotations

import collections
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Callable

from integration.harness import BaoServer
from scripts import loadgen
from scripts.benchmarks import CpuMeter, _issuing_pair, hey, report

RATE = 250            # samples per second: enough for a 10 s run, light enough not to reshape it
TOP = 12


def _py_spy() -> str:
    found = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(found).exists():
        raise SystemExit("py-spy is not installed (pip install py-spy: the test extra has it)")
    return found


def _plugin_pid(bao: BaoServer) -> int:
    """The plugin process itself (the server's child), not the RSA key-generation workers under it."""
    pids = bao.plugin_pids()
    server = bao.proc.pid if bao.proc else -1
    for pid in pids:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(stat[1]) == server:
            return pid
    if not pids:
        raise SystemExit("no plugin process found")
    return pids[0]


def _frame(frame: str) -> str:
    """`fn (path:line)` -> `fn (path)`, with the venv and stdlib prefixes dropped, so lines of one function add up."""
    name, _, where = frame.partition(" (")
    where = re.sub(r":\d+\)$", "", where)
    where = re.sub(r"^.*/(site-packages|python3\.\d+)/", "", where)
    where = re.sub(r"^.*?/((plugin|engine|proto|scripts)/)", r"\1", where)
    return f"{name} ({where})"


def summarize(raw: Path) -> tuple[int, list[tuple[str, int]], list[tuple[str, int]]]:
    """(samples, top frames by own samples, top project functions by samples that include them)."""
    own: collections.Counter[str] = collections.Counter()
    incl: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = [_frame(f) for f in stack.split(";")]
        n = int(count)
        total += n
        own[frames[-1]] += n
        for f in set(frames):
            if "(plugin/" in f or "(engine/" in f:
                incl[f] += n
    return total, own.most_common(TOP), incl.most_common(TOP)


def _profiled(bao: BaoServer, out_dir: Path, name: str, load: Callable[[], float]) -> None:
    """Runs `load` (returns the number of requests it made) while two py-spy samplers watch the plugin: one writes
    the flame graph, the other collapsed stacks for the summary (py-spy writes one format per run)."""
    if os.environ.get("PKI_BENCH_PROFILE_SAMPLER", "on") == "off":
        # The same loads without the sampler: CPU per request as the plugin spends it unobserved.
        with CpuMeter(bao) as meter:
            requests = load()
        report(f"| {name}, 8 clients, no sampler: CPU per request | server {meter.server / requests * 1e6:.0f} us + "
               f"plugin {meter.plugin / requests * 1e6:.0f} us | {requests:.0f} requests | |")
        return
    pid = _plugin_pid(bao)
    svg, raw = out_dir / f"{name}.svg", out_dir / f"{name}.txt"
    spies = [subprocess.Popen([_py_spy(), "record", "--pid", str(pid), "--rate", str(RATE), "--format", fmt,
                               "-o", str(path), "--nonblocking"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
             for fmt, path in (("flamegraph", svg), ("raw", raw))]
    try:
        with CpuMeter(bao) as meter:
            requests = load()
    finally:
        for spy in spies:
            spy.send_signal(signal.SIGINT)
        for spy in spies:
            spy.wait(timeout=60)
    total, own, incl = summarize(raw)
    per = f"server {meter.server / requests * 1e6:.0f} us + plugin {meter.plugin / requests * 1e6:.0f} us"
    report(f"| profile {name}: flame graph | {svg} ({total} samples, {requests:.0f} requests) | CPU per request "
           f"with the sampler attached: {per} | |")
    for label, rows in (("own samples", own), ("samples including callees", incl)):
        report(f"| profile {name}: top frames by {label} | "
               + "; ".join(f"{n * 100 / max(1, total):.1f}% {f}" for f, n in rows) + " | | |")


def bench_profile(bao: BaoServer, args) -> None:
    out_dir = Path(os.environ.get("PKI_BENCH_PROFILE_DIR") or "bench-profiles").resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    ours, _ = _issuing_pair(bao)
    bao.http("POST", f"{ours}/config/crl", json={"auto_rebuild": True}).raise_for_status()
    bao.http("POST", f"{ours}/roles/ec", json={"key_type": "ec", "key_bits": 256, "allow_any_name": True,
                                                "ttl": "1h"}).raise_for_status()

    def issue() -> float:
        res = hey(f"{bao.addr}/v1/{ours}/issue/ec", bao.token, {"common_name": "a.example.com"}, args.duration)
        return res.rps * args.duration

    def read() -> float:
        res = hey(f"{bao.addr}/v1/{ours}/roles/ec", bao.token, None, args.duration, method="GET")
        return res.rps * args.duration

    # Revocations each need their own certificate: issue them before the sampler starts.
    count = int(os.environ.get("PKI_BENCH_PROFILE_REVOKES") or 1000 * args.duration)
    _, issued = loadgen.run(bao.addr, bao.token, [("POST", f"{ours}/issue/ec", {"common_name": "a.example.com"})]
                            * count)
    serials = [r.json()["data"]["serial_number"] for r in issued if r.status == 200]

    def revoke() -> float:
        _, replies = loadgen.run(bao.addr, bao.token, [("POST", f"{ours}/revoke", {"serial_number": s})
                                                       for s in serials])
        return sum(1 for r in replies if r.status == 200) or 1

    for name, load in (("issue-ec", issue), ("read", read), ("revoke", revoke)):
        _profiled(bao, out_dir, name, load)
    if os.environ.get("PKI_BENCH_PROFILE_SAMPLER", "on") != "off":
        print(f"flame graphs written to {out_dir}/{{issue-ec,read,revoke}}.svg", flush=True)


BENCHES = {"profile": bench_profile}
