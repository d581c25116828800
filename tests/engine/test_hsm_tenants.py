"""Two mounts on one token: a mount uses the token only after its own PIN has been verified against it.

The token can be named by label or by slot; both name the same token, so neither may let a second mount ride on
the first mount's login.
"""
from __future__ import annotations

import asyncio

import pytest

from engine.hsm import service
from engine.hsm.config import PREFIX, ManagedKeyStore
from plugin.framework import Operation
from tests.engine.hsm_helpers import Mount, error_text, managed_key_body
from tests.hsm_fixtures import softhsm  # noqa: F401  (fixture)

pytestmark = pytest.mark.hsm


def _root(mount: Mount, key: str, name: str) -> object:
    return mount.call(Operation.UPDATE, "root/generate/kms",
                      {"common_name": f"{name} root", "managed_key_name": key, "issuer_name": name, "ttl": "24h"})


def _token_ref(hsm, label: str, how: str) -> dict[str, object]:
    return {"token_label": label} if how == "label" else {"token_label": "", "slot": str(hsm.slot_of(label))}


@pytest.mark.parametrize("how", ["label", "slot"])
def test_second_mount_with_a_wrong_pin_is_refused_and_cannot_sign(softhsm, how):  # noqa: F811
    label = softhsm.new_token()
    a, b = Mount(), Mount()
    a.ok(Operation.UPDATE, "managed-keys/ka", managed_key_body(softhsm, label, "a-key"))
    out = _root(a, "ka", "a")
    assert out.error is None and not out.response.is_error   # A is logged in to the token now

    body = {**managed_key_body(softhsm, label, "a-key", pin="0000", allow_generate_key=False),
            **_token_ref(softhsm, label, how)}
    text = error_text(b.call(Operation.UPDATE, "managed-keys/kb", body))
    assert text.startswith("400 ") and "PIN" in text
    assert not [k for k in b.storage.entries if k.startswith(PREFIX)]

    text = error_text(_root(b, "kb", "b"))
    assert text.startswith("400 ")
    assert not [k for k in b.storage.entries if k.startswith("issuer")]
    # A is not disturbed by B's failed attempt.
    out = _root(a, "ka", "a2")
    assert out.error is None and not out.response.is_error


@pytest.mark.parametrize("how", ["label", "slot"])
def test_second_mount_with_the_right_pin_shares_the_token(softhsm, how):  # noqa: F811
    label = softhsm.new_token()
    a, b = Mount(), Mount()
    a.ok(Operation.UPDATE, "managed-keys/ka", managed_key_body(softhsm, label, "a-key"))
    assert _root(a, "ka", "a").error is None
    b.ok(Operation.UPDATE, "managed-keys/kb", {**managed_key_body(softhsm, label, "b-key"),
                                               **_token_ref(softhsm, label, how)})
    out = _root(b, "kb", "b")
    assert out.error is None and not out.response.is_error
    out = _root(a, "ka", "a2")
    assert out.error is None and not out.response.is_error


def test_a_stored_config_whose_pin_no_longer_matches_cannot_ride_on_another_login(softhsm):  # noqa: F811
    """B's PIN was right when written; the token's PIN changes and only A learns the new one."""
    label = softhsm.new_token()
    a, b = Mount(), Mount()
    a.ok(Operation.UPDATE, "managed-keys/ka", managed_key_body(softhsm, label, "a-key"))
    b.ok(Operation.UPDATE, "managed-keys/kb", {**managed_key_body(softhsm, label, "b-key"),
                                               **_token_ref(softhsm, label, "label")})
    backup = softhsm.backup(label)
    softhsm.reinit_token(label, pin="4321")
    a.ok(Operation.UPDATE, "managed-keys/ka", managed_key_body(softhsm, label, "a-key", pin="4321"))
    assert _root(a, "ka", "a").error is None
    text = error_text(_root(b, "kb", "b"))
    assert text.startswith("400 ") and "PIN" in text, text
    softhsm.restore(label, backup)


def test_a_wrong_pin_written_again_does_not_log_the_other_mount_out_again(softhsm):  # noqa: F811
    label = softhsm.new_token()
    a, b = Mount(), Mount()
    a.ok(Operation.UPDATE, "managed-keys/ka", managed_key_body(softhsm, label, "a-key"))
    body = {**managed_key_body(softhsm, label, "a-key", pin="0000", allow_generate_key=False)}
    assert "rejected the PIN" in error_text(b.call(Operation.UPDATE, "managed-keys/kb", body))
    assert _root(a, "ka", "a").error is None          # A logs in again, with its own PIN
    pool = service.pool(asyncio.run(ManagedKeyStore(a.storage).get("ka"))).pool()
    sessions = list(pool._idle)
    assert "not trying it again for a while" in error_text(b.call(Operation.UPDATE, "managed-keys/kb", body))
    assert pool._idle == sessions                     # A's login and sessions were left alone
