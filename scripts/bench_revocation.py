"""Revocation at scale, ours vs the built-in engine in one server (a benchmark, not a test).

20k stored EC certificates per mount, revoked by 8 clients with auto_rebuild=true, then crl/rotate, then a tidy
once they expired (plugin RSS sampled while it runs); plus the in-process build time of a 100k-entry CRL.
PKI_BENCH_REVOKE_COUNT and PKI_BENCH_REVOKE_TTL size the run; PKI_BENCH_REVOKE_AUTO_REBUILD=false measures the
default configuration instead, where each revoke rebuilds the CRL.
"""
from __future__ import annotations

import asyncio
import os
import time
from typing import Callable

import requests

from integration.harness import BaoServer
from scripts import loadgen
from scripts.benchmarks import CpuMeter, _issuing_pair, cpu_split, report, rss_mb

COUNT = 20_000
CLIENTS = 8
TTL_SECONDS = 240


def _parallel(bao: BaoServer, calls: list[tuple[str, str, dict | None]]) -> tuple[float, list[loadgen.Reply]]:
    return loadgen.run(bao.addr, bao.token, calls, CLIENTS)


def _wait_tidy(bao: BaoServer, mount: str, sample: Callable[[], None]) -> float:
    t0 = time.perf_counter()
    while True:
        sample()
        state = bao.http("GET", f"{mount}/tidy-status").json()["data"]["state"]
        if state not in ("Running", "Cancelling"):
            return time.perf_counter() - t0
        time.sleep(0.05)


def bench_revoke(bao: BaoServer, args) -> None:
    ours, ref = _issuing_pair(bao)
    count = int(os.environ.get("PKI_BENCH_REVOKE_COUNT") or getattr(args, "revoke_count", COUNT))
    ttl = int(os.environ.get("PKI_BENCH_REVOKE_TTL") or TTL_SECONDS)   # shorter for smaller counts
    # "false" measures the default configuration, where every revoke asks for a CRL rebuild.
    auto_rebuild = os.environ.get("PKI_BENCH_REVOKE_AUTO_REBUILD", "true").lower() != "false"
    crl_mode = "auto_rebuild" if auto_rebuild else "CRL rebuilt on every revoke (default config)"
    serials: dict[str, list[str]] = {}
    for m in (ours, ref):
        bao.http("POST", f"{m}/config/crl", json={"auto_rebuild": auto_rebuild}).raise_for_status()
        bao.http("POST", f"{m}/roles/rv", json={"allow_any_name": True, "key_type": "ec",
                                                 "ttl": f"{ttl}s"}).raise_for_status()
    # Each certificate's clock starts when it is issued: tidy waits for the last one of both mounts to expire,
    # or it would time a tidy that finds most certificates still valid (as an earlier version of this bench did).
    expire_after = 0.0
    results: dict[str, dict[str, float]] = {}
    meters: dict[str, CpuMeter] = {}
    for m in (ours, ref):
        took, resps = _parallel(bao, [("POST", f"{m}/issue/rv", {"common_name": "a.example.com"})] * count)
        issued = [r.json()["data"] for r in resps if r.status == 200]
        serials[m] = [d["serial_number"] for d in issued]
        expire_after = max([expire_after] + [d["expiration"] for d in issued])
        issue_s = took
        client0 = time.process_time()
        with CpuMeter(bao) as meters[m]:
            took, resps = _parallel(bao, [("POST", f"{m}/revoke", {"serial_number": s}) for s in serials[m]])
        client_us = (time.process_time() - client0) / max(1, len(serials[m])) * 1e6
        errors = sum(1 for r in resps if r.status != 200)
        revoke_s = took
        t0 = time.perf_counter()
        bao.http("GET", f"{m}/crl/rotate").raise_for_status()
        rotate_s = time.perf_counter() - t0
        size = len(requests.get(f"{bao.addr}/v1/{m}/crl", timeout=60).content)
        results[m] = {"issue": issue_s, "revoke": revoke_s, "rotate": rotate_s, "size": size, "errors": errors,
                      "n": len(serials[m]), "client_us": client_us}
    a, b = results[ours], results[ref]
    report(f"| issue {a['n']} stored EC certs, 8 clients | ours {a['issue']:.1f} s, built-in {b['issue']:.1f} s "
           f"| ratio {b['issue'] / a['issue']:.2f}x throughput | |")
    report(f"| revoke {a['n']}, 8 clients, {crl_mode} | ours {a['n'] / a['revoke']:.0f}/s ({a['errors']:.0f} "
           f"errors), built-in {b['n'] / b['revoke']:.0f}/s | ratio {b['revoke'] / a['revoke']:.2f}x | >= 1.0x |")
    report(f"| revoke: where the CPU goes | {cpu_split(meters[ours], a['n'], meters[ref], b['n'])}; the load "
           f"generator {a['client_us']:.0f} / {b['client_us']:.0f} us | | |")
    report(f"| crl/rotate with {a['n']} revoked | ours {a['rotate'] * 1000:.0f} ms ({a['size'] / 1024:.0f} KB), "
           f"built-in {b['rotate'] * 1000:.0f} ms ({b['size'] / 1024:.0f} KB) | ratio "
           f"{a['rotate'] / b['rotate']:.2f}x time | <= 1.0x |")

    time.sleep(max(0.0, expire_after - time.time()) + 2)
    tidy: dict[str, float] = {}
    peak = {"rss": 0.0, "before": rss_mb(bao.plugin_pids())}

    def sample() -> None:
        peak["rss"] = max(peak["rss"], rss_mb(bao.plugin_pids()))

    tidy_cpu: dict[str, CpuMeter] = {}
    for m in (ours, ref):
        body = {"tidy_cert_store": True, "tidy_revoked_certs": True, "safety_buffer": "1s"}
        with CpuMeter(bao) as tidy_cpu[m]:
            bao.http("POST", f"{m}/tidy", json=body).raise_for_status()
            tidy[m] = _wait_tidy(bao, m, sample if m == ours else (lambda: None))
    st = {m: bao.http("GET", f"{m}/tidy-status").json()["data"] for m in (ours, ref)}

    def counts(m: str) -> str:
        return (f"{st[m]['state']}, deleted {st[m]['cert_store_deleted_count']} certs, "
                f"{st[m]['revoked_cert_deleted_count']} revocations")
    report(f"| tidy {a['n']} expired+revoked certs | ours {tidy[ours]:.1f} s ({counts(ours)}), built-in "
           f"{tidy[ref]:.1f} s ({counts(ref)}) | ratio {tidy[ours] / tidy[ref]:.2f}x time | <= 1.0x |")
    report(f"| tidy: where the CPU goes (per certificate) | "
           f"{cpu_split(tidy_cpu[ours], a['n'], tidy_cpu[ref], b['n'])} | | |")
    report(f"| plugin RSS while tidying | before {peak['before']:.0f} MB, peak {peak['rss']:.0f} MB | | flat |")
    bench_crl_build(bao, args)


def bench_crl_build(bao: BaoServer, args) -> None:
    """In-process: fold 100k revocations into the index and build + sign + store the CRL."""
    from engine import crl as crlmod
    from engine.backend import build_backend
    from engine.storage import InMemoryStorage
    from plugin.framework import Operation, Request, StaticSystemView

    async def go() -> float:
        backend = build_backend()
        storage = InMemoryStorage()
        system = StaticSystemView(max_ttl=10 * 365 * 86400)
        await backend.handle(Request(operation=Operation.UPDATE, path="root/generate/internal", storage=storage,
                                     system=system, data={"common_name": "Bench", "key_type": "ec",
                                                          "ttl": "87600h"}))
        ctx = backend.pki_context  # type: ignore[attr-defined]
        rt = crlmod.runtime(ctx)
        await rt.ensure_index(storage)
        issuer_id = (await ctx.issuers(storage).all())[0].id
        now = int(time.time())
        for i in range(100_000):
            rt.pending.entries[(i + 1) * 104729 + 2 ** 120] = (now, issuer_id)
        t0 = time.perf_counter()
        await crlmod.request_rebuild(storage, ctx)
        return time.perf_counter() - t0

    took = asyncio.run(go())
    report(f"| build a 100k-entry CRL (index fold + sign + chunked store, in-process) | {took:.2f} s | | < 3 s |")


BENCHES = {"revoke": bench_revoke, "crl100k": bench_crl_build}

