"""Benchmarks (never tests): our mount next to the built-in `pki` in one server, reported as ratios.

Machines are shared and noisy, so every figure is paired with the built-in engine's figure from the same
run. Load comes from `hey` (Go, cheap on CPU), or from `scripts/loadgen.py` where every request differs or each one
is timed, so that the client does not steal much of the two cores the server and the plugin share.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from integration.harness import BaoServer, unique_name
from scripts import loadgen

RESULTS: list[str] = []


def report(line: str) -> None:
    print(line, flush=True)
    RESULTS.append(line)


@dataclass
class Load:
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int


def hey(url: str, token: str, body: dict | None, duration: int, concurrency: int = 8,
        method: str = "POST") -> Load:
    if shutil.which("hey") is None:
        raise SystemExit("hey is not installed (apt-get install hey)")
    cmd = ["hey", "-z", f"{duration}s", "-c", str(concurrency), "-m", method, "-H", f"X-Vault-Token: {token}",
           "-o", "csv"]
    if body is not None:
        cmd += ["-T", "application/json", "-d", json.dumps(body)]
    out = subprocess.run(cmd + [url], capture_output=True, text=True, check=True).stdout
    rows = [line.split(",") for line in out.splitlines()[1:] if line.strip()]
    # csv columns: response-time,DNS+dialup,DNS,Request-write,Response-delay,Response-read,status-code,offset
    times = sorted(float(r[0]) * 1000 for r in rows)
    errors = sum(1 for r in rows if not r[6].startswith("2"))
    span = max(float(r[7]) + float(r[0]) for r in rows) if rows else duration
    if not times:
        return Load(0, 0, 0, 0)
    return Load(rps=len(times) / span, p50_ms=times[len(times) // 2],
                p99_ms=times[min(len(times) - 1, int(len(times) * 0.99))], errors=errors)


def sequential_latency(bao: BaoServer, path: str, n: int = 400) -> float:
    """Median latency of one client reading in a loop. The client is `loadgen` (a kept-alive socket, tens of
    microseconds per request): with Python `requests` each read carried about half a millisecond of client time,
    the same on both mounts, which pulled the ratio toward 1."""
    _, replies = loadgen.run(bao.addr, bao.token, [("GET", path, None)] * (n + 20), clients=1)
    if any(r.status != 200 for r in replies):
        raise SystemExit(f"GET {path} failed: {replies[0].status} {replies[0].body[:200]!r}")
    return statistics.median(r.seconds for r in replies[20:]) * 1000


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time of these processes so far (from /proc, in clock ticks)."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except (OSError, IndexError, ValueError):
            pass
    return total / os.sysconf("SC_CLK_TCK")


class CpuMeter:
    """CPU seconds the server and the plugin spend over a block: `with CpuMeter(bao) as m: ...; m.server`."""

    def __init__(self, bao: BaoServer) -> None:
        self._server = [bao.proc.pid] if bao.proc else []
        self._plugin = bao.plugin_pids()
        self.server = self.plugin = 0.0

    def __enter__(self) -> "CpuMeter":
        self._start = (cpu_seconds(self._server), cpu_seconds(self._plugin))
        return self

    def __exit__(self, *_: object) -> None:
        self.server = cpu_seconds(self._server) - self._start[0]
        self.plugin = cpu_seconds(self._plugin) - self._start[1]


def cpu_split(ours: CpuMeter, ours_n: float, ref: CpuMeter, ref_n: float) -> str:
    """Server (+ plugin) CPU per request on our mount next to the server's on the built-in one."""
    us = 1e6
    return (f"CPU per request: server {ours.server / ours_n * us:.0f} us + plugin {ours.plugin / ours_n * us:.0f} us "
            f"on ours, server {ref.server / ref_n * us:.0f} us on the built-in")


def rss_mb(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total / 1024


def bench_startup(bao: BaoServer, _args) -> None:
    times = []
    for _ in range(5):
        path = unique_name("start")
        t0 = time.perf_counter()
        bao.enable_plugin_mount(path)
        while bao.http("LIST", f"{path}/roles").status_code not in (200, 404):
            time.sleep(0.01)
        times.append(time.perf_counter() - t0)
        bao.disable_mount(path)
        time.sleep(0.5)
    report(f"| startup: secrets enable -> first read | median {statistics.median(times)*1000:.0f} ms "
           f"(max {max(times)*1000:.0f} ms, 5 runs) | target < 1500 ms |")


def bench_read(bao: BaoServer, args) -> None:
    ours, ref = unique_name("pki"), unique_name("ref")
    bao.enable_plugin_mount(ours)
    bao.enable_builtin_mount(ref)
    for m in (ours, ref):
        bao.http("POST", f"{m}/roles/x", json={"allow_any_name": True}).raise_for_status()
    pids = bao.plugin_pids()
    cpu0, n = cpu_seconds(pids), 400
    a = sequential_latency(bao, f"{ours}/roles/x", n)
    busy_ms = (cpu_seconds(pids) - cpu0) / (n + 20) * 1000
    b = sequential_latency(bao, f"{ref}/roles/x", n)
    report(f"| read roles/x sequential p50 | ours {a:.2f} ms, built-in {b:.2f} ms | ratio {a/b:.2f}x "
           f"| target <= 1.5x |")
    report(f"| plugin CPU per sequential read | {busy_ms:.2f} ms of the {a:.2f} ms | a plugin using no CPU "
           f"would be near {(a - busy_ms) / b:.2f}x | |")
    with CpuMeter(bao) as ma:
        la = hey(f"{bao.addr}/v1/{ours}/roles/x", bao.token, None, args.duration, method="GET")
    with CpuMeter(bao) as mb:
        lb = hey(f"{bao.addr}/v1/{ref}/roles/x", bao.token, None, args.duration, method="GET")
    report(f"| read roles/x, 8 clients | ours {la.rps:.0f} req/s p50 {la.p50_ms:.1f} ms, built-in {lb.rps:.0f} "
           f"req/s p50 {lb.p50_ms:.1f} ms | throughput ratio {la.rps/lb.rps:.2f}x | |")
    report(f"| read roles/x, 8 clients: where the CPU goes | "
           f"{cpu_split(ma, la.rps * args.duration, mb, lb.rps * args.duration)} | | |")
    main_pids = bao.plugin_pids()
    report(f"| plugin RSS (plugin process, one shared by all mounts) | {rss_mb(main_pids):.0f} MB | "
           f"{len(main_pids)} process(es) | target < 80 MB |")


def worker_pids(parents: list[int]) -> list[int]:
    """Descendants of the plugin process (the RSA key-generation pool), so their memory is reported too."""
    found, frontier = [], list(parents)
    while frontier:
        pid = frontier.pop()
        try:
            children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        except OSError:
            continue
        for child in map(int, children):
            found.append(child)
            frontier.append(child)
    return found


def _issuing_pair(bao: BaoServer) -> tuple[str, str]:
    ours, ref = unique_name("pki"), unique_name("ref")
    bao.enable_plugin_mount(ours)
    bao.enable_builtin_mount(ref)
    for m in (ours, ref):
        bao.tune_max_ttl(m, "87600h")
        bao.http("POST", f"{m}/root/generate/internal",
                 json={"common_name": "Bench Root", "key_type": "ec", "ttl": "87600h"}).raise_for_status()
    return ours, ref


def bench_issue(bao: BaoServer, args) -> None:
    ours, ref = _issuing_pair(bao)
    for name, role in [("EC P-256", {"key_type": "ec", "key_bits": 256}),
                       ("RSA-2048", {"key_type": "rsa", "key_bits": 2048})]:
        for stored in (True, False):
            rname = unique_name("r")
            results, meters = {}, {}
            for m in (ours, ref):
                bao.http("POST", f"{m}/roles/{rname}", json={**role, "allow_any_name": True,
                                                              "no_store": not stored, "ttl": "1h"}).raise_for_status()
                with CpuMeter(bao) as meters[m]:
                    results[m] = hey(f"{bao.addr}/v1/{m}/issue/{rname}", bao.token,
                                     {"common_name": "a.example.com"}, args.duration)
            a, b = results[ours], results[ref]
            label = f"{name}, {'stored' if stored else 'no_store'}"
            if name.startswith("RSA") and stored:
                workers = worker_pids(bao.plugin_pids())
                report(f"| RSA key-generation pool RSS | {rss_mb(workers):.0f} MB in {len(workers)} process(es) | | |")
            report(f"| issue {label}, 8 clients | ours {a.rps:.1f} req/s p50 {a.p50_ms:.1f} p99 {a.p99_ms:.1f} ms"
                   f" ({a.errors} errors) | built-in {b.rps:.1f} req/s p50 {b.p50_ms:.1f} p99 {b.p99_ms:.1f} ms"
                   f" | ratio {a.rps / b.rps if b.rps else float('nan'):.2f}x |")
            if not name.startswith("RSA"):
                report(f"| issue {label}: where the CPU goes | "
                       f"{cpu_split(meters[ours], a.rps * args.duration, meters[ref], b.rps * args.duration)} | | |")


BENCHES: dict[str, Callable] = {"startup": bench_startup, "read": bench_read, "issue": bench_issue}


def main() -> None:
    parser = argparse.ArgumentParser(prog="scripts/bench")
    parser.add_argument("which", nargs="*", default=["all"])
    parser.add_argument("--duration", type=int, default=10, help="seconds of load per measurement")
    parser.add_argument("--out", help="also write the results table to this file")
    args = parser.parse_args()
    extra = {}
    try:   # benchmarks contributed by other areas register themselves here
        from scripts import bench_revocation  # noqa: F401
        extra.update(bench_revocation.BENCHES)
    except ImportError:
        pass
    try:
        from scripts import bench_hsm  # noqa: F401
        extra.update(bench_hsm.BENCHES)
    except ImportError:
        pass
    from scripts import bench_link
    extra.update(bench_link.BENCHES)
    from scripts import bench_acme
    extra.update(bench_acme.BENCHES)
    from scripts import bench_engine, bench_profile
    extra.update(bench_engine.BENCHES)
    extra.update(bench_profile.BENCHES)
    from scripts import bench_cluster
    extra.update(bench_cluster.BENCHES)
    benches = {**BENCHES, **extra}
    # `revoke` ends with the 100k-entry CRL build, so `all` does not run `crl100k` a second time; `profile`
    # (a sampler attached to the plugin) would slow the figures of what runs beside it.
    chosen = [b for b in benches if b not in ("crl100k", "profile")] if "all" in args.which else args.which
    with tempfile.TemporaryDirectory(prefix="python-pki-bench-") as tmp:
        bao = BaoServer(Path(tmp)).start()
        bao.register()
        try:
            report(f"# scripts/bench on {os.cpu_count()} cores, {time.strftime('%Y-%m-%d %H:%M')}")
            report("| measurement | result | ratio / detail | target |")
            report("|---|---|---|---|")
            for name in chosen:
                benches[name](bao, args)
        finally:
            bao.stop()
    if args.out:
        Path(args.out).write_text("\n".join(RESULTS) + "\n")


if __name__ == "__main__":
    main()
