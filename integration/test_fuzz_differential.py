"""Server-level differential fuzz: generated requests over every path pattern of our OpenAPI, to our mount and to
the built-in in one server.

A 5xx from ours fails the test unless the built-in answers the same request with a 5xx too and the README's
"Fuzzing" list names the case. The plugin process must not restart and no request may hang. The default size
suits CI (PKI_FUZZ_REQUESTS=2000); a nightly run sets PKI_FUZZ_REQUESTS=100000 (and PKI_FUZZ_SEED to vary the
sequence). The figures are printed and, with PKI_FUZZ_REPORT=path, written as JSON.
"""
from __future__ import annotations

import fnmatch
import json
import os
import re
import time
from collections import Counter
from pathlib import Path

import pytest
import requests

from integration.fuzz_requests import FuzzRequest, generate
from integration.harness import BaoServer

REQUESTS = int(os.environ.get("PKI_FUZZ_REQUESTS", "2000"))
SEED = int(os.environ.get("PKI_FUZZ_SEED", "12"))
HANG_SECONDS = 60
DROPPED = 599            # our marker for "no HTTP answer at all"; counts as a 5xx
RESET_EVERY = 250        # requests between re-creating the CA and role (deletes empty the mounts)
README = Path(__file__).resolve().parent.parent / "README.md"


def both_5xx_listed() -> set[tuple[str, str]]:
    """(METHOD, path pattern glob) pairs the README lists as 5xx on both engines."""
    text = README.read_text()
    section = text.split("### Fuzzing", 1)[1].split("\n#", 1)[0] if "### Fuzzing" in text else ""
    return set(re.findall(r"^- 5xx on both: `(\w+) ([^`]+)`", section, re.M))


def _rss_peak_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _setup(bao: BaoServer, mount: str) -> None:
    bao.http("POST", f"{mount}/root/generate/internal",
             json={"common_name": "fuzz.example.com", "key_type": "ec", "issuer_name": "ec-root", "ttl": "8760h"})
    bao.http("POST", f"{mount}/roles/web", json={"allowed_domains": "example.com", "allow_subdomains": True,
                                                 "key_type": "ec", "ttl": "1h"})


def _send(bao: BaoServer, mount: str, req: FuzzRequest) -> int | None:
    """The status, or None for a hang (no answer within HANG_SECONDS)."""
    path = f"{mount}/{req.path}"
    try:
        if req.method in ("GET", "LIST", "DELETE"):
            params = {k: (json.dumps(v) if isinstance(v, bool) else str(v)) for k, v in (req.body or {}).items()}
            resp = bao.http(req.method, path, params=params or None, timeout=HANG_SECONDS)
        else:
            resp = bao.http(req.method, path, data=json.dumps(req.body or {}),
                            headers={"Content-Type": "application/merge-patch+json" if req.method == "PATCH"
                                     else "application/json"}, timeout=HANG_SECONDS)
    except requests.exceptions.Timeout:
        return None
    except requests.exceptions.ConnectionError:
        return DROPPED       # the server closed the connection without an answer (a panic in its handler)
    return resp.status_code


def test_generated_requests_never_5xx_where_the_built_in_does_not(bao: BaoServer, mounts) -> None:
    doc = bao.http("GET", mounts.ours, params={"help": "1"}).json()["openapi"]
    reqs = generate(doc, SEED, REQUESTS)
    patterns = {r.pattern for r in reqs}
    pids_before = set(bao.plugin_pids())
    listed = both_5xx_listed()
    ours_5xx: list[str] = []
    ours_5xx_full: list[dict] = []     # the exact requests, for the report
    both_5xx: Counter[str] = Counter()
    ref_5xx = 0
    hangs: list[str] = []
    statuses: Counter[str] = Counter()
    started = time.monotonic()
    for i, req in enumerate(reqs):
        if i % RESET_EVERY == 0:
            for m in (mounts.ours, mounts.ref):
                _setup(bao, m)
        ours = _send(bao, mounts.ours, req)
        ref = _send(bao, mounts.ref, req)
        if ours is None:
            hangs.append(req.describe())
            continue
        statuses[f"{ours // 100}xx/{(ref or 0) // 100}xx"] += 1
        if ref is not None and ref >= 500:
            ref_5xx += 1
        if ours >= 500:
            pattern = "/" + req.pattern.lstrip("/")
            if ref is not None and ref >= 500 and any(m == req.method and fnmatch.fnmatchcase(pattern, glob)
                                                      for m, glob in listed):
                both_5xx[f"{req.method} {req.pattern}"] += 1
            else:
                ours_5xx.append(f"#{i} ours {ours} built-in {ref}: [{req.method} /{req.pattern.lstrip('/')}] "
                                f"{req.describe()}")
                ours_5xx_full.append({"index": i, "method": req.method, "path": req.path, "body": req.body})
    pids_after = set(bao.plugin_pids())
    figures = {
        "requests_sent_to_each": len(reqs), "path_patterns": len(patterns), "seed": SEED,
        "5xx_ours": len(ours_5xx) + sum(both_5xx.values()), "5xx_builtin": ref_5xx,
        "5xx_both_listed": dict(both_5xx), "hangs": len(hangs),
        "plugin_restarts": len(pids_after - pids_before),
        "max_plugin_rss_mib": round(max((_rss_peak_kib(p) for p in pids_after), default=0) / 1024, 1),
        "seconds": round(time.monotonic() - started, 1), "status_classes_ours/builtin": dict(statuses),
    }
    print("fuzz figures:", json.dumps(figures, indent=1))
    if os.environ.get("PKI_FUZZ_REPORT"):
        Path(os.environ["PKI_FUZZ_REPORT"]).write_text(json.dumps({**figures, "ours_5xx": ours_5xx, "ours_5xx_requests": ours_5xx_full,
                                                                    "hang_requests": hangs}, indent=1))
    assert len(patterns) >= 0.8 * len({p for p in doc["paths"]}) or REQUESTS < 500
    assert not hangs, hangs[:10]
    assert pids_after == pids_before, "the plugin process restarted"
    assert not ours_5xx, "\n".join(ours_5xx[:30])


@pytest.mark.parametrize("seed", [1, 2])
def test_generation_is_reproducible(bao: BaoServer, mounts, seed: int) -> None:
    doc = bao.http("GET", mounts.ours, params={"help": "1"}).json()["openapi"]
    a = [r.describe() for r in generate(doc, seed, 50)]
    assert a == [r.describe() for r in generate(doc, seed, 50)]


# Requests the fuzz once found answered 5xx by ours alone; each stays a regression case.
FOUND = [
    ("POST", "keys/generate/kms", {"external_key_ref": "../..", "key_name": "", "managed_key_id": ""}),
    ("POST", "keys/generate/kms", {"managed_key_name": "../..", "key_bits": 224}),
    ("DELETE", "eab/17-a5", None),
    ("GET", "issuer/%C3%A9/pem", None),
]


@pytest.mark.parametrize("method,path,body", FOUND, ids=[f"{m} {p}" for m, p, _ in FOUND])
def test_cases_the_fuzz_found_are_not_5xx(bao: BaoServer, mounts, method, path, body) -> None:
    _setup(bao, mounts.ours)
    status = _send(bao, mounts.ours, FuzzRequest(method, path, body, path, "found"))
    assert status is not None and status < 500, status
