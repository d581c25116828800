"""Pytest fixture: a SoftHSM2 of our own per test session (see engine.hsm.softhsm)."""
from __future__ import annotations

import os
from typing import Iterator

import pytest

from engine.hsm.softhsm import SoftHsm, find_softhsm, make_softhsm, skip_reason

__all__ = ["SoftHsm", "find_softhsm", "softhsm"]


@pytest.fixture(scope="session")
def softhsm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SoftHsm]:
    reason = skip_reason()
    if reason:
        pytest.skip(reason)
    hsm = make_softhsm(tmp_path_factory.mktemp("softhsm"))
    previous = os.environ.get("SOFTHSM2_CONF")
    os.environ["SOFTHSM2_CONF"] = str(hsm.conf)
    yield hsm
    if previous is None:
        os.environ.pop("SOFTHSM2_CONF", None)
    else:
        os.environ["SOFTHSM2_CONF"] = previous
