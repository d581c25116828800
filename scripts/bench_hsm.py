"""`scripts/bench hsm`: EC P-256 issuance from an HSM-backed issuer (SoftHSM) vs a storage-backed one.

Both issuers live in the same server and run; the figure that matters is the ratio. SoftHSM must be visible to
the plugin, i.e. SOFTHSM2_CONF must be in the server's environment: `scripts.benchmarks` imports this module
before it starts the server, so the private token store is created (and the variable set) at import.
"""
from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable

from engine.hsm.softhsm import SoftHsm, make_hsm_issuer, make_softhsm, skip_reason
from integration.harness import BaoServer, unique_name

_store: SoftHsm | None = None
if skip_reason() is None:
    _root = Path(tempfile.mkdtemp(prefix="python-pki-bench-softhsm-"))
    atexit.register(shutil.rmtree, _root, True)
    _store = make_softhsm(_root)
    os.environ["SOFTHSM2_CONF"] = str(_store.conf)


def bench_hsm(bao: BaoServer, args) -> None:
    from scripts.benchmarks import hey, report

    if _store is None:
        report(f"| HSM issuance | skipped: {skip_reason()} | | |")
        return
    token = _store.new_token()
    hsm_mount, local_mount = unique_name("hsm"), unique_name("pki")
    for mount in (hsm_mount, local_mount):
        bao.enable_plugin_mount(mount)
        bao.tune_max_ttl(mount, "87600h")
    make_hsm_issuer(bao.http, hsm_mount, _store, token, key_type="ec", key_bits=256)
    bao.http("POST", f"{local_mount}/root/generate/internal",
             json={"common_name": "local root", "key_type": "ec", "key_bits": 256, "ttl": "87600h"}
             ).raise_for_status()
    results = {}
    for mount in (hsm_mount, local_mount):
        bao.http("POST", f"{mount}/roles/leaf", json={"allow_any_name": True, "key_type": "ec", "key_bits": 256,
                                                      "ttl": "1h"}).raise_for_status()
        results[mount] = hey(f"{bao.addr}/v1/{mount}/issue/leaf", bao.token, {"common_name": "a.example.com"},
                             args.duration)
    h, s = results[hsm_mount], results[local_mount]
    report(f"| issue EC P-256 from an HSM-backed issuer (SoftHSM), 8 clients | HSM {h.rps:.1f} req/s p50 "
           f"{h.p50_ms:.1f} p99 {h.p99_ms:.1f} ms ({h.errors} errors) | storage-backed {s.rps:.1f} req/s p50 "
           f"{s.p50_ms:.1f} p99 {s.p99_ms:.1f} ms | HSM/storage {h.rps / s.rps if s.rps else float('nan'):.2f}x;"
           " seed 000: 50-100 certs/s on HSM hardware |")


BENCHES: dict[str, Callable] = {"hsm": bench_hsm}
