"""Run `bao pki health-check -format=json` on a mount and reduce its report to what does not depend on the mount.

Issuer ids, serials, dates and the mount's own path differ between two mounts that are otherwise in the same
state; everything else in a finding (check name, status, endpoint, message, data) must be equal.
"""
from __future__ import annotations

import json
import re
from typing import Any

from integration.harness import Client

_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_SERIAL = re.compile(r"\b[0-9a-f]{2}(?::[0-9a-f]{2}){7,}\b")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z| ?[+-]\d{2}:?\d{2})?(?: [A-Z]{3,4})?")
_DURATION = re.compile(r"\b\d+h\d+m[\d.]+s\b|\b[\d.]+(?:ms|µs|s)\b")


def _scrub(value: Any, mount: str) -> Any:
    if isinstance(value, dict):
        return {k: _scrub(v, mount) for k, v in sorted(value.items())}
    if isinstance(value, list):
        return [_scrub(v, mount) for v in value]
    if isinstance(value, str):
        text = value.replace(f"/{mount}/", "/MOUNT/").replace(f"{mount}/", "MOUNT/")
        text = _UUID.sub("ID", text)
        text = _SERIAL.sub("SERIAL", text)
        text = _DATE.sub("DATE", text)
        return _DURATION.sub("DURATION", text)
    return value


def health_check(client: Client, mount: str, *args: str) -> tuple[int, dict[str, list[Any]]]:
    """The exit code and the findings per check, normalized and sorted."""
    proc = client.cli("pki", "health-check", "-format=json", *args, f"{mount}/", check=False)
    try:
        report = json.loads(proc.stdout)
    except ValueError:
        raise AssertionError(f"health-check on {mount}/ gave no JSON (rc {proc.returncode}): "
                             f"{proc.stdout}\n{proc.stderr}") from None
    findings = {check: sorted((_scrub(r, mount) for r in results), key=json.dumps)
                for check, results in report.items()}
    return proc.returncode, findings


def differences(ref: tuple[int, dict[str, list[Any]]], ours: tuple[int, dict[str, list[Any]]]) -> list[str]:
    out = []
    if ref[0] != ours[0]:
        out.append(f"exit code: built-in {ref[0]}, ours {ours[0]}")
    for check in sorted(set(ref[1]) | set(ours[1])):
        a, b = ref[1].get(check), ours[1].get(check)
        if a != b:
            out.append(f"{check}: built-in {json.dumps(a)}\n    ours {json.dumps(b)}")
    return out
