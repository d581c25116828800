"""The engine docs' quick start through the real `bao` CLI, on our mount and on the built-in engine side by side."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

from integration.harness import BaoServer


def _write(bao: BaoServer, path: str, *args: str) -> dict:
    out = bao.cli("write", "-format=json", path, *args).stdout
    return json.loads(out) if out.strip() else {}


def _quick_start(bao: BaoServer, mount: str) -> list[tuple[str, dict]]:
    bao.cli("secrets", "tune", "-max-lease-ttl=87600h", mount)
    steps = [
        ("root/generate/internal", _write(bao, f"{mount}/root/generate/internal",
                                          "common_name=example.com", "ttl=87600h")),
        ("config/urls", _write(bao, f"{mount}/config/urls",
                               f"issuing_certificates={bao.addr}/v1/{mount}/ca",
                               f"crl_distribution_points={bao.addr}/v1/{mount}/crl")),
        ("roles/example-dot-com", _write(bao, f"{mount}/roles/example-dot-com", "allowed_domains=example.com",
                                         "allow_subdomains=true", "max_ttl=72h")),
        ("issue/example-dot-com", _write(bao, f"{mount}/issue/example-dot-com", "common_name=blah.example.com")),
    ]
    read = json.loads(bao.cli("read", "-format=json", f"{mount}/roles/example-dot-com").stdout)
    steps.append(("read roles/example-dot-com", read))
    return steps


def _shape(secret: dict) -> dict[str, str]:
    data = secret.get("data") or {}
    return {k: type(v).__name__ for k, v in data.items()}


def test_quick_start_matches_builtin_engine_and_verifies(bao: BaoServer, mounts, tmp_path: Path) -> None:
    ours = _quick_start(bao, mounts.ours)
    ref = _quick_start(bao, mounts.ref)
    for (step, mine), (_, theirs) in zip(ours, ref):
        assert _shape(mine) == _shape(theirs), f"response keys/types differ at {step}"

    issued = ours[3][1]["data"]
    ca_pem = bao.cli("read", "-field=certificate", f"{mounts.ours}/cert/ca").stdout
    (tmp_path / "ca.pem").write_text(ca_pem)
    (tmp_path / "leaf.pem").write_text(issued["certificate"])
    verify = subprocess.run(["openssl", "verify", "-CAfile", str(tmp_path / "ca.pem"), str(tmp_path / "leaf.pem")],
                            capture_output=True, text=True)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert issued["issuing_ca"].strip() == ca_pem.strip()

    unauth = bao.http("GET", f"{mounts.ours}/ca/pem", token=False)
    assert unauth.status_code == 200 and unauth.text.strip() == ca_pem.strip()
