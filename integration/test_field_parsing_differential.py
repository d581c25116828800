"""Edge values for duration, int and bool fields: our mount and the built-in accept and refuse the same ones,
store the same value, and our errors never contain the submitted value."""
from __future__ import annotations

import json

import pytest

from integration.harness import BaoServer

EDGE = {
    "ttl": ["3000000d", "106000d", "106752d", "9223372036", "9223372037", "2562047h", "2562048h", "1.5d", "1h2d",
            "1.9s", "-0.5s", "-1s", "1e300", "1" * 400, "0." + "1" * 60 + "s", "1" * 20 + "ns", " 1h", "1H",
            ".5h", "+1h", "", "d", "-0", "1_0", "\u0661"],
    "key_bits": ["0x800", "0o4000", "04000", "2_048", " 2048", "+2048", "2048.0", "9223372036854775808", "",
                 "1" * 400, "abc", "\u0662\u0660\u0664\u0668"],
    "allow_any_name": ["F", "f", "T", " true", "2", "-1", "1", "0", "yes", "", "tRUE"],
}
# Raw JSON bodies: numbers keep their text on the way to the plugin, as json.Number does for the built-in.
RAW = ['{"ttl": 1e300}', '{"ttl": 1.5}', '{"ttl": 10.0}', '{"ttl": true}', '{"ttl": null}', '{"ttl": 9223372037}',
       '{"key_bits": 2048.0}', '{"key_bits": 1e3}', '{"key_bits": null}', '{"key_bits": ' + "9" * 5000 + '}',
       '{"allow_any_name": 2}', '{"allow_any_name": 1.0}', '{"allow_any_name": -1}', '{"allow_any_name": null}',
       '{"allow_any_name": 1}']


def _post(bao: BaoServer, path: str, body: str):
    resp = bao.http("POST", path, data=body, headers={"Content-Type": "application/json"})
    return resp.status_code, (resp.json() if resp.content else {})


def _cases():
    for name, values in EDGE.items():
        for value in values:
            yield json.dumps({name: value}), name
    for body in RAW:
        yield body, body.split('"')[1]


CASES = list(_cases())


def test_role_fields_parse_like_the_built_in(bao: BaoServer, mounts) -> None:
    diffs = []
    for body, name in CASES:
        got, replies = {}, {}
        for mount in (mounts.ours, mounts.ref):
            status, reply = _post(bao, f"{mount}/roles/edge", body)
            stored = (reply.get("data") or {}).get(name) if status == 200 else None
            got[mount], replies[mount] = (status, stored), json.dumps(reply)
        submitted = json.loads(body, parse_int=str).get(name)
        if (got[mounts.ours][0] >= 400 and isinstance(submitted, str) and len(submitted) > 3
                and submitted not in replies[mounts.ref]):
            # (a refusal by the server itself, before any engine sees the request, shows in both replies)
            assert submitted not in replies[mounts.ours], (body, replies[mounts.ours])
        if got[mounts.ours] != got[mounts.ref]:
            diffs.append((body[:60], got[mounts.ours], got[mounts.ref]))
    assert not diffs, "ours vs built-in:\n" + "\n".join(map(str, diffs))


@pytest.mark.parametrize("expiry", ["3000000d", "106000d", "1" * 400, "1e300", "72h"])
def test_crl_expiry_matches_the_built_in_and_revocation_keeps_working(bao: BaoServer, mounts, expiry) -> None:
    statuses = {}
    for mount in (mounts.ours, mounts.ref):
        bao.cli("write", f"{mount}/root/generate/internal", "common_name=edge.example.com", "key_type=ec")
        status, _ = _post(bao, f"{mount}/config/crl", json.dumps({"expiry": expiry}))
        statuses[mount] = status
        rotated = bao.http("GET", f"{mount}/crl/rotate")
        assert rotated.status_code == 200, (mount, rotated.text)
    assert statuses[mounts.ours] == statuses[mounts.ref]
