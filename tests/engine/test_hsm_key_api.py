"""Managed keys as the key API shows them, and generation types that must not take a managed key.

`key/:ref` reads name the managed key (Terraform's key resource reads managed_key_name/managed_key_id);
`internal`/`exported`/`existing` generation with managed_key_* is refused before anything is stored, and no
`exported` request ever returns the private half of a key held in the token.
"""
from __future__ import annotations

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from plugin.framework import Operation
from tests.engine.hsm_helpers import Mount, error_text, managed_key_body
from tests.hsm_fixtures import softhsm  # noqa: F401  (fixture)

pytestmark = pytest.mark.hsm


def _mount_with_managed_key(hsm) -> tuple[Mount, str]:  # noqa: ANN001
    mount = Mount()
    mount.ok(Operation.UPDATE, "managed-keys/mk", managed_key_body(hsm, hsm.new_token(), "mk", "ec", 256))
    return mount, mount.ok(Operation.READ, "managed-keys/mk")["uuid"]


def test_key_read_names_the_managed_key_and_local_keys_do_not(softhsm):  # noqa: F811
    mount, uuid = _mount_with_managed_key(softhsm)
    managed = mount.ok(Operation.UPDATE, "keys/generate/kms", {"managed_key_name": "mk", "key_name": "in-token"})
    local = mount.ok(Operation.UPDATE, "keys/generate/internal", {"key_type": "ec", "key_name": "on-disk"})

    for ref in (managed["key_id"], "in-token"):
        read = mount.ok(Operation.READ, f"key/{ref}")
        assert read["managed_key_name"] == "mk"
        assert read["managed_key_id"] == uuid
        assert read["key_type"] == "ec" and read["key_name"] == "in-token"
        assert read["subject_key_id"].count(":") == 19

    plain = mount.ok(Operation.READ, f"key/{local['key_id']}")
    assert "managed_key_name" not in plain and "managed_key_id" not in plain

    # As in Vault, the list's key_info carries only the name and the default flag.
    listed = mount.ok(Operation.LIST, "keys/")
    assert listed["key_info"][managed["key_id"]] == {"key_name": "in-token", "is_default": True}


def test_a_root_made_by_id_reads_back_the_same_managed_key(softhsm):  # noqa: F811
    mount, uuid = _mount_with_managed_key(softhsm)
    root = mount.ok(Operation.UPDATE, "root/generate/kms", {"common_name": "R", "managed_key_id": uuid})
    read = mount.ok(Operation.READ, f"key/{root['key_id']}")
    assert (read["managed_key_name"], read["managed_key_id"]) == ("mk", uuid)


@pytest.mark.parametrize("path", [
    "root/generate/internal", "root/generate/exported", "issuers/generate/root/exported", "root/rotate/exported",
    "intermediate/generate/internal", "intermediate/generate/exported", "issuers/generate/intermediate/exported",
    "keys/generate/internal", "keys/generate/exported",
])
@pytest.mark.parametrize("arg", ["managed_key_name", "managed_key_id"])
def test_managed_key_on_a_local_key_type_is_a_400_and_stores_nothing(softhsm, path, arg):  # noqa: F811
    mount, uuid = _mount_with_managed_key(softhsm)
    before = mount.storage.snapshot()
    body = {"common_name": "x", "key_type": "ec", arg: "mk" if arg == "managed_key_name" else uuid}
    text = error_text(mount.call(Operation.UPDATE, path, body))
    assert text.startswith("400 ") and f'cannot specify "{arg}"' in text, text
    assert mount.storage.snapshot() == before


@pytest.mark.parametrize("path", ["root/generate/existing", "intermediate/generate/existing",
                                  "intermediate/cross-sign"])
def test_managed_key_on_an_existing_type_is_a_400_and_stores_nothing(softhsm, path):  # noqa: F811
    mount, _ = _mount_with_managed_key(softhsm)
    key = mount.ok(Operation.UPDATE, "keys/generate/kms", {"managed_key_name": "mk"})
    before = mount.storage.snapshot()
    text = error_text(mount.call(Operation.UPDATE, path, {"common_name": "x", "key_ref": key["key_id"],
                                                          "managed_key_name": "mk"}))
    assert text.startswith("400 ") and 'cannot specify "managed_key_name"' in text, text
    assert mount.storage.snapshot() == before


@pytest.mark.parametrize("path", ["root/generate/exported", "intermediate/generate/exported"])
def test_exported_never_returns_the_token_key(softhsm, path):  # noqa: F811
    """`exported` makes (and returns) a fresh local key; a key_ref naming the managed key does not change that."""
    mount, _ = _mount_with_managed_key(softhsm)
    managed = mount.ok(Operation.UPDATE, "keys/generate/kms", {"managed_key_name": "mk"})
    out = mount.ok(Operation.UPDATE, path, {"common_name": "x", "key_type": "ec", "key_ref": managed["key_id"],
                                            "format": "pem", "private_key_format": "pkcs8"})
    assert out["key_id"] != managed["key_id"]
    returned = serialization.load_pem_private_key(out["private_key"].encode(), password=None)
    token_pub = mount.ok(Operation.READ, f"key/{managed['key_id']}")["subject_key_id"]
    returned_read = mount.ok(Operation.READ, f"key/{out['key_id']}")
    assert "managed_key_id" not in returned_read
    assert returned_read["subject_key_id"] != token_pub
    # The private key handed out is the one behind the new local record, not the token's.
    returned_skid = x509.SubjectKeyIdentifier.from_public_key(returned.public_key()).digest  # type: ignore[arg-type]
    assert returned_read["subject_key_id"].replace(":", "").lower() == returned_skid.hex()
