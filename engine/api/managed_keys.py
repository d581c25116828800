"""`managed-keys/:name`: PKCS#11 managed keys configured on the mount, and the `kms` key provider.

Vault Enterprise configures these under `sys/managed-keys/pkcs11/:name`, out of a plugin's reach, so the
mount carries its own with Vault's field names. Reads never return the PIN.
"""
from __future__ import annotations

from typing import Any

from engine.context import PkiContext
from engine.hsm import service
from engine.hsm.config import ManagedKeyStore, build_config
from engine.keys import KeyRecord
from plugin.framework import (
    Field, FieldData, FieldType, Operation, Path, Request, Response, UserError, forward_from_standby, list_response,
    name_regex,
)

# Vault fields we accept so that the same payload works here, but which mean nothing for a mount-local key.
_ACCEPTED_UNUSED = ("any_mount", "allow_replace_key", "force_rw_session", "usages")
# Changing any of these would point existing issuers at another key.
_IDENTITY_FIELDS = ("library", "slot", "token_label", "key_label", "key_id", "mechanism")

FIELDS: dict[str, Field] = {
    "name": Field(FieldType.STRING, "Name of the managed key."),
    "type": Field(FieldType.STRING, "Backend type; only pkcs11 is supported.", default="pkcs11"),
    "library": Field(FieldType.STRING, "Absolute path of the PKCS#11 module; it must be listed in "
                                       "PYTHON_PKI_PKCS11_LIBRARIES in the server's environment "
                                       "(SoftHSM's usual paths are allowed by default)."),
    "slot": Field(FieldType.STRING, "Slot id of the token (decimal or 0x hex); or use token_label."),
    "token_label": Field(FieldType.STRING, "Label of the token; or use slot."),
    "pin": Field(FieldType.STRING, "User PIN of the token. Stored seal-wrapped, never returned."),
    "key_label": Field(FieldType.STRING, "CKA_LABEL of the key pair in the token."),
    "key_id": Field(FieldType.STRING, "CKA_ID of the key pair: 0x-prefixed hex, else the UTF-8 bytes of the text."),
    "mechanism": Field(FieldType.STRING, "Signing mechanism, which sets the key family: 0x0001 (CKM_RSA_PKCS), "
                                         "0x000d (CKM_RSA_PKCS_PSS), 0x1041 (CKM_ECDSA), 0x1057 (CKM_EDDSA)...",
                       default="0x0001"),
    "key_bits": Field(FieldType.INT, "RSA modulus size for generated keys (2048, 3072, 4096)."),
    "curve": Field(FieldType.STRING, "EC curve for generated keys: P256, P384 or P521."),
    "allow_generate_key": Field(FieldType.BOOL, "Generate the key pair inside the token when it does not exist."),
    "allow_store_key": Field(FieldType.BOOL, "Accepted for Vault compatibility; keys are never imported into "
                                             "the token by this engine."),
    "max_parallel": Field(FieldType.INT, "Sessions kept open on the token (shared by managed keys on it).",
                          default=4),
    **{name: Field(FieldType.STRING, "Accepted for Vault compatibility; has no effect on a mount-local key.")
       for name in _ACCEPTED_UNUSED},
}


def paths(ctx: PkiContext) -> list[Path]:
    async def list_keys(req: Request, d: FieldData) -> Response | None:
        store = ManagedKeyStore(req.storage)
        names = await store.names()
        if not names:
            return None
        info: dict[str, Any] = {}
        for name in names:
            cfg = await store.get(name)
            if cfg is not None:
                info[name] = {"uuid": cfg.uuid, "type": "pkcs11", "key_type": cfg.key_type}
        return list_response(names, info)

    async def read(req: Request, d: FieldData) -> Response | None:
        cfg = await ManagedKeyStore(req.storage).get(d.get("name"))
        if cfg is None:
            return None
        data = cfg.public_view()
        data["used_by_keys"] = await service.keys_using(req.storage, cfg)
        return Response(data=data)

    async def write(req: Request, d: FieldData) -> Response | None:
        await forward_from_standby(req)   # checking the settings logs the token's shared pool out first
        name = d.get("name")
        kind = (d.get("type") or "pkcs11").lower()
        if kind != "pkcs11":
            raise UserError(f'unsupported managed key type "{kind}": only pkcs11 is supported')
        store = ManagedKeyStore(req.storage)
        existing = await store.get(name)
        raw = {k: d.get(k) for k in FIELDS if k not in _ACCEPTED_UNUSED}
        raw["extra"] = {k: d.get(k) for k in _ACCEPTED_UNUSED if d.has(k)}
        cfg = build_config(name, raw, existing)
        warnings: list[str] = []
        if existing is not None:
            users = await service.keys_using(req.storage, existing)
            changed = [f for f in _IDENTITY_FIELDS if getattr(existing, f) != getattr(cfg, f)]
            if users and changed:
                raise UserError(f'managed key "{name}" is used by key(s) {", ".join(users)}: '
                                f'{", ".join(changed)} cannot change')
        if raw["extra"]:
            warnings.append("ignored for a mount-local managed key: " + ", ".join(sorted(raw["extra"])))
        warnings += await service.verify_config(cfg)
        # Everything checked: the record goes last. Cached signers must pick up the new settings.
        await store.put(cfg)
        if existing is not None:
            for key_id in await service.keys_using(req.storage, existing):
                ctx.signers.pop(key_id, None)
        return Response(data=cfg.public_view(), warnings=warnings)

    async def delete(req: Request, d: FieldData) -> Response | None:
        await forward_from_standby(req)   # closes the token's sessions after the delete
        store = ManagedKeyStore(req.storage)
        cfg = await store.get(d.get("name"))
        if cfg is None:
            return None
        users = await service.keys_using(req.storage, cfg)
        if users:
            raise UserError(f'managed key "{cfg.name}" is in use by key(s): {", ".join(users)}')
        await store.delete(cfg.name)
        return None

    async def exists(req: Request, d: FieldData) -> bool:
        return await ManagedKeyStore(req.storage).get(d.get("name")) is not None

    async def kms_provider(req: Request, d: FieldData) -> tuple[KeyRecord, bool]:
        def field(name: str) -> str:
            return str(d.get(name) or "") if name in d.schema else ""

        name, key_uuid = field("managed_key_name"), field("managed_key_id")
        ext_ref = field("external_key_ref")
        if ext_ref and not (name or key_uuid):
            # OpenBao's spelling of the reference: a managed key's name or uuid on this mount.
            store = ManagedKeyStore(req.storage)
            if await store.get(ext_ref) is not None:
                name = ext_ref
            else:
                key_uuid = ext_ref
        return await service.resolve_kms_key(req.storage, name, key_uuid, field("key_name"), ctx.keys(req.storage))

    ctx.kms_provider = kms_provider

    return [
        Path("managed-keys/?$", {}, {Operation.LIST: list_keys},
             synopsis="List the PKCS#11 managed keys configured on this mount."),
        Path("managed-keys/" + name_regex("name"), FIELDS,
             {Operation.READ: read, Operation.UPDATE: write, Operation.DELETE: delete},
             exists=exists,
             synopsis="Configure a PKCS#11 managed key (HSM-held CA key) for this mount.",
             description="The PIN is stored seal-wrapped and never returned. A managed key in use by a key "
                         "cannot be deleted, nor pointed at another token key."),
    ]
