"""Fixtures and helpers for the external-CA backend through a real `bao` server.

Test modules import the fixtures they use from here (pytest registers fixtures found in a test module).
"""
from __future__ import annotations

import time
from typing import Any, Iterator

import pytest
import requests

from integration.harness import BaoServer, HarnessError, unique_name
from tests.external_ca.pebble import Pebble, start_pebble

EXTERNAL_CA_PLUGIN = "python-pki-external-ca"


@pytest.fixture(scope="session")
def external_ca_plugin(bao: BaoServer) -> str:
    """The same launcher registered a second time, serving the external-CA backend (README's line)."""
    bao.cli("plugin", "register", f"-sha256={bao.launcher_sha256}", "-command=python-pki",
            "-args=--backend=external-ca", "secret", EXTERNAL_CA_PLUGIN)
    return EXTERNAL_CA_PLUGIN


@pytest.fixture()
def xca(bao: BaoServer, external_ca_plugin: str) -> Iterator["Mount"]:
    path = unique_name("pki-external-ca")
    bao.cli("secrets", "enable", f"-path={path}", external_ca_plugin)
    try:
        yield Mount(bao, path)
    finally:
        try:
            bao.disable_mount(path)
        except HarnessError:
            pass


@pytest.fixture(scope="session")
def pebble_ca() -> Iterator[Pebble]:
    p = start_pebble({"PEBBLE_WFE_NONCEREJECT": "25", "PEBBLE_AUTHZREUSE": "50"})
    yield p
    p.stop()


class Mount:
    def __init__(self, bao: BaoServer, path: str) -> None:
        self.bao = bao
        self.path = path

    def req(self, method: str, sub: str, json: Any = None, **kw: Any) -> requests.Response:
        return self.bao.http(method, f"{self.path}/{sub}", json=json, **kw)

    def ok(self, method: str, sub: str, json: Any = None, **kw: Any) -> dict[str, Any]:
        resp = self.req(method, sub, json, **kw)
        assert resp.status_code == 200, f"{method} {sub}: {resp.status_code} {resp.text}"
        return resp.json()["data"]

    def wait_status(self, role: str, oid: str, wanted: tuple[str, ...], timeout: float = 60) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            data = self.ok("GET", f"role/{role}/order/{oid}/status")
            if data["order_status"] in wanted or data["order_status"] in ("error", "expired", "revoked") \
                    or time.monotonic() > deadline:
                return data
            time.sleep(0.5)
