"""`managed-keys/:name`: validation, PIN secrecy, seal-wrapping, in-use protection, nothing written on failure."""
from __future__ import annotations

import asyncio
import json

import pytest

from engine.hsm.config import PREFIX
from engine.keys import KeyStore
from plugin.framework import Operation
from tests.engine.hsm_helpers import Mount, error_text, managed_key_body
from tests.hsm_fixtures import softhsm  # noqa: F401  (fixture)

pytestmark = pytest.mark.hsm


def test_write_read_list_never_show_the_pin_and_storage_is_seal_wrapped(softhsm):  # noqa: F811
    mount = Mount()
    token = softhsm.new_token()
    out = mount.call(Operation.UPDATE, "managed-keys/ca", managed_key_body(softhsm, token, "ca", pin="1234"))
    assert out.error is None and not out.response.is_error
    assert any("first kms generation creates it" in w for w in out.response.warnings)
    data = mount.ok(Operation.READ, "managed-keys/ca")
    assert "pin" not in data and "1234" not in json.dumps(data)
    assert data["token_label"] == token and data["key_label"] == "ca" and data["key_type"] == "ec"
    assert data["curve"] == "P256" and data["mechanism"] == "0x1041" and data["uuid"]
    listed = mount.ok(Operation.LIST, "managed-keys/")
    assert listed["keys"] == ["ca"] and listed["key_info"]["ca"]["uuid"] == data["uuid"]
    assert mount.storage.entries[PREFIX + "ca"].seal_wrap is True


def test_rewrite_keeps_uuid_and_pin_when_omitted(softhsm):  # noqa: F811
    mount = Mount()
    token = softhsm.new_token()
    body = managed_key_body(softhsm, token, "ca")
    first = mount.ok(Operation.UPDATE, "managed-keys/ca", body)
    body.pop("pin")
    body["max_parallel"] = 8
    second = mount.ok(Operation.UPDATE, "managed-keys/ca", body)
    assert second["uuid"] == first["uuid"] and second["max_parallel"] == 8


@pytest.mark.parametrize("change,message", [
    ({"pin": "9999"}, "rejected the PIN"),
    ({"token_label": "no-such-token"}, 'no token found at token label "no-such-token"'),
    ({"library": "/usr/lib/libc.so.6"}, "is not an allowed PKCS#11 module"),
    ({"library": "relative.so"}, "must be an absolute path"),
    ({"mechanism": "0x9999"}, 'unsupported mechanism "0x9999"'),
    ({"curve": "P192"}, 'unsupported curve "P192"'),
    ({"key_label": "", "key_id": ""}, "one of key_label or key_id is required"),
    ({"slot": "1"}, "only one of slot or token_label may be set"),
    ({"type": "awskms"}, 'unsupported managed key type "awskms"'),
])
def test_bad_config_is_refused_and_nothing_is_stored(softhsm, change, message):  # noqa: F811
    mount = Mount()
    token = softhsm.new_token()
    before = mount.storage.snapshot()
    out = mount.call(Operation.UPDATE, "managed-keys/bad", {**managed_key_body(softhsm, token, "k"), **change})
    text = error_text(out)
    assert text.startswith("400 ") and message in text
    assert mount.storage.snapshot() == before


def test_wrong_pin_names_the_managed_key_then_the_right_pin_works(softhsm):  # noqa: F811
    mount = Mount()
    token = softhsm.new_token()
    out = mount.call(Operation.UPDATE, "managed-keys/hsm1", managed_key_body(softhsm, token, "k", pin="0000"))
    assert error_text(out) == f'400 managed key "hsm1": the token at token label "{token}" rejected the PIN'
    assert mount.storage.snapshot() == {}
    mount.ok(Operation.UPDATE, "managed-keys/hsm1", managed_key_body(softhsm, token, "k"))


def test_existing_key_of_the_wrong_type_is_refused(softhsm):  # noqa: F811
    mount = Mount()
    token = softhsm.new_token()
    mount.ok(Operation.UPDATE, "managed-keys/ec", managed_key_body(softhsm, token, "shared"))
    asyncio.run(mount.backend.pki_context.kms_provider(_req(mount), _fields({"managed_key_name": "ec"})))
    out = mount.call(Operation.UPDATE, "managed-keys/rsa", managed_key_body(softhsm, token, "shared", "rsa", 2048))
    assert "the token key is ec but mechanism CKM_RSA_PKCS needs rsa" in error_text(out)


def test_delete_refused_while_a_key_uses_it_and_identity_fields_frozen(softhsm):  # noqa: F811
    mount = Mount()
    token = softhsm.new_token()
    mount.ok(Operation.UPDATE, "managed-keys/ca", managed_key_body(softhsm, token, "ca"))
    record, is_new = asyncio.run(mount.backend.pki_context.kms_provider(_req(mount),
                                                                        _fields({"managed_key_name": "ca"})))
    assert is_new and record.private_key_pem is None and record.managed_key["managed_key_name"] == "ca"
    asyncio.run(KeyStore(mount.storage).put(record))

    before = mount.storage.snapshot()
    out = mount.call(Operation.DELETE, "managed-keys/ca")
    assert error_text(out) == f'400 managed key "ca" is in use by key(s): {record.id}'
    out = mount.call(Operation.UPDATE, "managed-keys/ca", managed_key_body(softhsm, token, "other-label"))
    assert "key_label cannot change" in error_text(out)
    assert mount.storage.snapshot() == before
    assert mount.ok(Operation.READ, "managed-keys/ca")["used_by_keys"] == [record.id]

    asyncio.run(KeyStore(mount.storage).delete(record.id))
    out = mount.call(Operation.DELETE, "managed-keys/ca")
    assert out.error is None and out.response is None
    assert mount.call(Operation.READ, "managed-keys/ca").response is None


def test_kms_provider_reuses_the_record_for_the_same_token_key(softhsm):  # noqa: F811
    mount = Mount()
    token = softhsm.new_token()
    mount.ok(Operation.UPDATE, "managed-keys/ca", managed_key_body(softhsm, token, "ca"))
    cfg_id = mount.ok(Operation.READ, "managed-keys/ca")["uuid"]
    first, _ = asyncio.run(mount.backend.pki_context.kms_provider(_req(mount), _fields({"managed_key_name": "ca"})))
    asyncio.run(mount.backend.pki_context.keys(mount.storage).put(first))
    again, is_new = asyncio.run(mount.backend.pki_context.kms_provider(_req(mount),
                                                                       _fields({"managed_key_id": cfg_id})))
    assert not is_new and again.id == first.id


def test_kms_without_generation_allowed_and_no_key_is_a_clear_400(softhsm):  # noqa: F811
    mount = Mount()
    token = softhsm.new_token()
    out = mount.call(Operation.UPDATE, "managed-keys/ca",
                     managed_key_body(softhsm, token, "ca", allow_generate_key=False))
    assert any("allow_generate_key is false" in w for w in out.response.warnings)
    outcome = asyncio.run(_provider_outcome(mount, {"managed_key_name": "ca"}))
    assert outcome == ('managed key "ca": no private key with label "ca" in the token, '
                       "and allow_generate_key is false")
    assert asyncio.run(_provider_outcome(mount, {"managed_key_name": "nope"})) == 'no managed key found for name "nope"'


# -- helpers ---------------------------------------------------------------------------------------------------

def _req(mount: Mount):
    from plugin.framework import Request
    return Request(operation=Operation.UPDATE, path="root/generate/kms", storage=mount.storage)


def _fields(raw: dict):
    from plugin.framework import Field, FieldData
    return FieldData(raw=raw, schema={"managed_key_name": Field(), "managed_key_id": Field(), "key_name": Field()})


async def _provider_outcome(mount: Mount, raw: dict) -> str:
    from plugin.framework import UserError
    try:
        await mount.backend.pki_context.kms_provider(_req(mount), _fields(raw))
    except UserError as exc:
        return exc.message
    return "no error"
