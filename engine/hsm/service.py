"""What the rest of the engine asks of managed keys: key records for `kms` generation, signing keys for them.

A managed key is one key in one token (as in Vault): generation paths with `managed_key_name`/`managed_key_id`
use the token key named by the config's `key_label`/`key_id`, generating it inside the token first when it is
absent and the config has `allow_generate_key`.
"""
from __future__ import annotations

import uuid
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes

from engine.hsm.config import ManagedKeyConfig, ManagedKeyStore
from engine.hsm.errors import ManagedKeyConfigError
from engine.hsm.signer import HsmSigningKey, run_blocking
from engine.hsm.token import KeyNotInToken, KeyRef, TokenHandle, generate_op, handle_for, public_key_op
from engine.keys import KeyRecord, KeyStore
from engine.signing import register_managed_loader
from engine.storage import Storage
from engine.x509util import key_bits_of, key_type_name
from plugin.framework import UserError


def key_ref(cfg: ManagedKeyConfig) -> KeyRef:
    return KeyRef(name=cfg.name, label=cfg.key_label, ck_id=cfg.ck_id)


def pool(cfg: ManagedKeyConfig) -> TokenHandle:
    """The way to this config's token; every use checks the config's own PIN against the token's login."""
    return handle_for(cfg.library, cfg.slot, cfg.token_label, cfg.pin, cfg.max_parallel)


def managed_info(cfg: ManagedKeyConfig) -> dict[str, Any]:
    """The reference a key record keeps (no PIN: that stays in the seal-wrapped config)."""
    return {"managed_key_name": cfg.name, "managed_key_id": cfg.uuid, "key_label": cfg.key_label,
            "key_id": cfg.key_id, "mechanism": f"0x{cfg.mechanism:04x}"}


async def token_public_key(cfg: ManagedKeyConfig) -> CertificatePublicKeyTypes | None:
    try:
        return await run_blocking(pool(cfg).run, cfg.name, public_key_op(key_ref(cfg)))
    except KeyNotInToken:
        return None


def check_key_matches(cfg: ManagedKeyConfig, pub: CertificatePublicKeyTypes) -> None:
    kind = key_type_name(pub)
    if kind != cfg.key_type:
        raise ManagedKeyConfigError(cfg.name, f"the token key is {kind} but mechanism {cfg.mechanism_name} "
                                              f"needs {cfg.key_type}")
    if kind in ("rsa", "ec") and cfg.key_bits and key_bits_of(pub) != cfg.key_bits:
        raise ManagedKeyConfigError(cfg.name, f"the token key has {key_bits_of(pub)} bits, the managed key "
                                              f"says {cfg.key_bits}")


async def ensure_token_key(cfg: ManagedKeyConfig) -> tuple[CertificatePublicKeyTypes, bool]:
    """The token key's public half, generating the pair in the token when allowed; (public key, generated?)."""
    pub = await token_public_key(cfg)
    if pub is not None:
        check_key_matches(cfg, pub)
        return pub, False
    if not cfg.allow_generate_key:
        raise ManagedKeyConfigError(cfg.name, f"no private key with {key_ref(cfg).describe()} in the token, "
                                              "and allow_generate_key is false")
    pub = await run_blocking(pool(cfg).run, cfg.name, generate_op(key_ref(cfg), cfg.key_type, cfg.key_bits))
    return pub, True


async def resolve_kms_key(storage: Storage, managed_key_name: str = "", managed_key_id: str = "",
                          key_name: str = "", keys: KeyStore | None = None) -> tuple[KeyRecord, bool]:
    """A key record for `*/generate/kms` and whether it is new (then the caller stores it, last).

    If the mount already has a key record for this token key, that record is returned (keys are
    de-duplicated by public key, as in Vault).
    """
    cfg = await ManagedKeyStore(storage).resolve(managed_key_name, managed_key_id)
    pub, _ = await ensure_token_key(cfg)
    existing = await (keys or KeyStore(storage)).find_by_public_key(pub)
    if existing is not None:
        if not existing.managed_key:
            raise UserError("the token key's public key matches a key stored in this mount that is not managed")
        return existing, False
    record = KeyRecord(
        id=str(uuid.uuid4()), name=key_name, key_type=key_type_name(pub), key_bits=key_bits_of(pub),
        private_key_pem=None, managed_key=managed_info(cfg),
        public_key_pem=pub.public_bytes(serialization.Encoding.PEM,
                                        serialization.PublicFormat.SubjectPublicKeyInfo).decode(),
    )
    return record, True


def signing_key(cfg: ManagedKeyConfig, public_key: CertificatePublicKeyTypes) -> HsmSigningKey:
    return HsmSigningKey(lambda: pool(cfg), key_ref(cfg), key_type_name(public_key), public_key)


async def load_managed_signing_key(storage: Storage, record: KeyRecord) -> HsmSigningKey:
    """The loader `engine.signing` calls for key records with `managed_key` set."""
    info = record.managed_key or {}
    store = ManagedKeyStore(storage)
    cfg = await store.by_uuid(str(info.get("managed_key_id", "")))
    if cfg is None:
        raise UserError(f'key {record.id} refers to managed key "{info.get("managed_key_name", "")}", '
                        "which is no longer configured on this mount")
    return signing_key(cfg, record.public_key())


async def keys_using(storage: Storage, cfg: ManagedKeyConfig) -> list[str]:
    return [r.id for r in await KeyStore(storage).all()
            if r.managed_key and r.managed_key.get("managed_key_id") == cfg.uuid]


async def verify_config(cfg: ManagedKeyConfig) -> list[str]:
    """Prove the config's PIN against the token itself, then look for its key; warnings.

    A login another managed key made does not count: unless the token is logged in with this very PIN, it is
    logged out and logged in again with it (the other users' next request logs in again with theirs).
    """
    await run_blocking(pool(cfg).verify, cfg.name)
    pub = await token_public_key(cfg)
    warnings: list[str] = []
    if pub is None:
        if cfg.allow_generate_key:
            warnings.append(f"no key with {key_ref(cfg).describe()} in the token yet: the first kms generation "
                            "creates it")
        else:
            warnings.append(f"no key with {key_ref(cfg).describe()} in the token, and allow_generate_key is "
                            "false: kms generation will fail until the key exists")
    else:
        check_key_matches(cfg, pub)
    return warnings


register_managed_loader(load_managed_signing_key)


def managed_key_fields(record: KeyRecord) -> dict[str, Any]:
    """What `key/:ref` reads show for a managed key (Terraform reads managed_key_name and managed_key_id)."""
    info = record.managed_key or {}
    if not info:
        return {}
    return {"managed_key_name": info.get("managed_key_name", ""), "managed_key_id": info.get("managed_key_id", "")}
