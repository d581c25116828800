"""Keys: generation defaults and minimums, naming, listing, SKID, import, defaults, seal-wrapped storage."""
from __future__ import annotations

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from ca_helpers import Mount, cert_of


def test_generate_defaults_and_exported_key() -> None:
    mount = Mount()
    ec_key = mount.ok("write", "keys/generate/exported", key_type="ec", key_name="signing")
    assert set(ec_key) == {"key_id", "key_name", "key_type", "private_key"} and ec_key["key_type"] == "ec"
    parsed = serialization.load_pem_private_key(ec_key["private_key"].encode(), None)
    assert isinstance(parsed, ec.EllipticCurvePrivateKey) and parsed.curve.key_size == 256
    internal = mount.ok("write", "keys/generate/internal", key_type="ed25519")
    assert "private_key" not in internal and internal["key_type"] == "ed25519"
    listed = mount.list("keys/").data
    assert sorted(listed["keys"]) == sorted([ec_key["key_id"], internal["key_id"]])
    assert listed["key_info"][ec_key["key_id"]] == {"key_name": "signing", "is_default": True}
    assert listed["key_info"][internal["key_id"]]["is_default"] is False
    # Seal-wrapped, and nothing readable returns the private key again.
    entry = mount.storage.entries["config/key/" + ec_key["key_id"]]
    assert entry.seal_wrap is True
    assert "PRIVATE" not in str(mount.read("key/signing").data)


@pytest.mark.parametrize("body,expected", [
    ({"key_type": "rsa", "key_bits": 1024}, "RSA keys < 2048 bits are unsafe and not supported: got 1024"),
    ({"key_type": "rsa", "key_bits": 3000}, "unsupported bit length for RSA key: 3000"),
    ({"key_type": "ec", "key_bits": 255}, "unsupported bit length for EC key: 255"),
    ({"key_type": "dsa"}, "unknown key type dsa"),
    ({"key_name": "default"}, "reserved keyword 'default'"),
    ({"key_name": "bad name"}, "key name contained invalid characters"),
])
def test_generate_rejects_bad_parameters_without_storing(body: dict, expected: str) -> None:
    mount = Mount()
    before = mount.storage.snapshot()
    reply = mount.write("keys/generate/internal", **body)
    assert reply.status == 400 and expected in reply.error
    assert mount.storage.snapshot() == before


@pytest.mark.parametrize("path", ["root/generate/internal", "intermediate/generate/internal"])
def test_ca_generation_rejects_small_keys_without_storing(path: str) -> None:
    mount = Mount()
    before = mount.storage.snapshot()
    reply = mount.write(path, common_name="x", key_type="rsa", key_bits=1024)
    assert reply.status == 400 and "RSA keys < 2048 bits are unsafe" in reply.error
    assert mount.storage.snapshot() == before


def test_key_names_unique_rename_and_skid() -> None:
    mount = Mount()
    first = mount.ok("write", "keys/generate/internal", key_type="ec", key_name="one")
    dup = mount.write("keys/generate/internal", key_type="ec", key_name="one")
    assert dup.status == 400 and dup.error == "key name already in use"
    renamed = mount.ok("write", "key/one", key_name="uno")
    assert renamed == {"key_id": first["key_id"], "key_name": "uno", "key_type": "ec"}
    cleared = mount.write("key/uno", key_name="")
    assert cleared.status == 200 and "referenced by its Id" not in str(cleared.data) and cleared.warnings
    assert mount.read("key/uno").status == 400
    root = mount.ok("write", "root/generate/existing", common_name="r", key_ref=first["key_id"])
    ski = cert_of(root["certificate"]).extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    assert mount.ok("read", "key/" + first["key_id"])["subject_key_id"] == ":".join(f"{b:02x}" for b in ski)


def test_config_keys_default() -> None:
    mount = Mount()
    a = mount.ok("write", "keys/generate/internal", key_type="ec", key_name="a")
    b = mount.ok("write", "keys/generate/internal", key_type="ec", key_name="b")
    assert mount.ok("read", "config/keys") == {"default": a["key_id"]}
    assert mount.ok("write", "config/keys", default="b") == {"default": b["key_id"]}
    assert mount.ok("read", "key/default")["key_id"] == b["key_id"]
    for bad in ("", "default", "nope"):
        assert mount.write("config/keys", default=bad).status == 400


def test_key_import_validation() -> None:
    mount = Mount()
    before = mount.storage.snapshot()
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    assert "too short" in mount.write("keys/import", pem_bundle="x").error
    assert "only a single key" in mount.write("keys/import", pem_bundle=pem + pem).error
    assert mount.storage.snapshot() == before
    imported = mount.ok("write", "keys/import", pem_bundle=pem, key_name="imp")
    assert imported["key_type"] == "ec" and imported["key_name"] == "imp"
