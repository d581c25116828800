from __future__ import annotations

import os
import shutil
from typing import Iterator

import pytest

from .pebble import AriProxy, Pebble, start_pebble

HAVE_PEBBLE = bool(shutil.which("pebble") or os.path.exists("/usr/bin/pebble"))


@pytest.fixture(scope="session")
def pebble() -> Iterator[Pebble]:
    """pebble with random nonce rejection and authorization reuse on: every flow must survive both."""
    if not HAVE_PEBBLE:
        pytest.skip("pebble is not installed")
    p = start_pebble({"PEBBLE_WFE_NONCEREJECT": "25", "PEBBLE_AUTHZREUSE": "50"})
    yield p
    p.stop()


@pytest.fixture()
def ari_proxy(pebble: Pebble) -> Iterator[AriProxy]:
    proxy = AriProxy(pebble)
    yield proxy
    proxy.stop()
