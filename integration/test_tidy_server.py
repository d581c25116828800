"""Tidy through the real server at a scale where storage calls overlap: thousands of expired certificates, some
revoked, tidied in one background run that must finish, count what it removed, and leave nothing expired."""
from __future__ import annotations

import time

import pytest

from integration.harness import BaoServer

COUNT = 2000
REVOKED_EVERY = 3          # one in three is revoked before it expires
TTL_SECONDS = 45           # long enough to issue and revoke them all, short enough to wait for


def _listed(bao: BaoServer, path: str) -> set[str]:
    resp = bao.http("LIST", path)
    if resp.status_code == 404:
        return set()
    resp.raise_for_status()
    return set(resp.json()["data"]["keys"])


@pytest.mark.slow
def test_tidy_of_thousands_of_expired_certs_finishes_and_removes_them_all(bao: BaoServer, mounts) -> None:
    m = mounts.ours
    bao.tune_max_ttl(m, "87600h")
    bao.http("POST", f"{m}/root/generate/internal",
             json={"common_name": "Tidy Root", "key_type": "ec", "ttl": "87600h"}).raise_for_status()
    bao.http("POST", f"{m}/roles/short", json={"allow_any_name": True, "key_type": "ec",
                                               "ttl": f"{TTL_SECONDS}s"}).raise_for_status()
    bao.http("POST", f"{m}/roles/long", json={"allow_any_name": True, "key_type": "ec", "ttl": "1h"}).raise_for_status()
    issued = bao.parallel([("POST", f"{m}/issue/short", {"common_name": "a.example.com"})] * COUNT)
    assert all(r.status_code == 200 for r in issued)
    serials = [r.json()["data"]["serial_number"] for r in issued]
    expirations = [r.json()["data"]["expiration"] for r in issued]
    revoked = serials[::REVOKED_EVERY]
    # An expired certificate cannot be revoked (400), so all-200 also shows every revoke beat its expiry.
    statuses = [r.status_code for r in bao.parallel([("POST", f"{m}/revoke", {"serial_number": s})
                                                       for s in revoked])]
    assert statuses == [200] * len(revoked), "some revokes failed (too slow to beat the certificates' expiry?)"
    # Live certificates (one of them revoked) that tidy must leave alone.
    live = [bao.http("POST", f"{m}/issue/long", json={"common_name": "b.example.com"}).json()["data"]["serial_number"]
            for _ in range(3)]
    bao.http("POST", f"{m}/revoke", json={"serial_number": live[0]}).raise_for_status()
    # Tidy only once the LAST one expired: the clock starts per certificate, not when issuance began.
    time.sleep(max(0.0, max(expirations) - time.time()) + 2)

    resp = bao.http("POST", f"{m}/tidy", json={"tidy_cert_store": True, "tidy_revoked_certs": True,
                                               "safety_buffer": "1s"})
    assert resp.status_code == 202, resp.text
    deadline = time.time() + 300
    while True:
        status = bao.http("GET", f"{m}/tidy-status").json()["data"]
        if status["state"] not in ("Running", "Cancelling") or time.time() > deadline:
            break
        time.sleep(0.2)
    assert status["state"] == "Finished", status
    assert not status["error"], status
    assert status["cert_store_deleted_count"] == COUNT, status
    assert status["revoked_cert_deleted_count"] == len(revoked), status

    def hyphen(s: str) -> str:
        return s.replace(":", "-")
    remaining = _listed(bao, f"{m}/certs")
    remaining_revoked = _listed(bao, f"{m}/certs/revoked")
    assert not remaining & {s for s in serials} and not remaining & {hyphen(s) for s in serials}
    assert not remaining_revoked & {s for s in revoked} and not remaining_revoked & {hyphen(s) for s in revoked}
    assert set(live) <= remaining | {s.replace("-", ":") for s in remaining}
    assert live[0] in remaining_revoked | {s.replace("-", ":") for s in remaining_revoked}
