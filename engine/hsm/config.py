"""Managed key configurations (`managed-keys/<name>` on the mount): which PKCS#11 module, token and key.

Vault Enterprise keeps these in `sys/managed-keys/pkcs11/:name`, which a plugin cannot reach, so the mount
holds its own. Field names follow Vault's. The record holds the token PIN, so its storage prefix is declared
seal-wrapped and reads never return the PIN.
"""
from __future__ import annotations

import os
import re
import uuid
from dataclasses import asdict, dataclass, field
from typing import Any

from engine.storage import Storage, get_json, put_json
from plugin.framework import UserError

PREFIX = "managed-keys/"

# Loading a PKCS#11 module runs its code inside the plugin, so only modules an operator listed (in the
# server's environment, which the plugin inherits) or the usual SoftHSM locations may be named.
LIBRARIES_ENV = "PYTHON_PKI_PKCS11_LIBRARIES"
DEFAULT_LIBRARIES = (
    "/usr/lib/softhsm/libsofthsm2.so",
    "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/local/lib/softhsm/libsofthsm2.so",
)

# Signing mechanisms Vault's managed keys accept, by CKM_* value; they decide the key family.
MECHANISMS: dict[int, tuple[str, str]] = {
    0x0001: ("CKM_RSA_PKCS", "rsa"),
    0x000D: ("CKM_RSA_PKCS_PSS", "rsa"),
    0x0040: ("CKM_SHA256_RSA_PKCS", "rsa"),
    0x0041: ("CKM_SHA384_RSA_PKCS", "rsa"),
    0x0042: ("CKM_SHA512_RSA_PKCS", "rsa"),
    0x0043: ("CKM_SHA256_RSA_PKCS_PSS", "rsa"),
    0x0044: ("CKM_SHA384_RSA_PKCS_PSS", "rsa"),
    0x0045: ("CKM_SHA512_RSA_PKCS_PSS", "rsa"),
    0x1041: ("CKM_ECDSA", "ec"),
    0x1044: ("CKM_ECDSA_SHA256", "ec"),
    0x1045: ("CKM_ECDSA_SHA384", "ec"),
    0x1046: ("CKM_ECDSA_SHA512", "ec"),
    0x1057: ("CKM_EDDSA", "ed25519"),
}
_MECH_BY_NAME = {name: value for value, (name, _) in MECHANISMS.items()}

CURVES: dict[str, int] = {"p256": 256, "p-256": 256, "secp256r1": 256, "prime256v1": 256,
                          "p384": 384, "p-384": 384, "secp384r1": 384,
                          "p521": 521, "p-521": 521, "secp521r1": 521}
CURVE_NAMES = {256: "P256", 384: "P384", 521: "P521"}
RSA_BITS = (2048, 3072, 4096)
DEFAULT_MAX_PARALLEL = 4
_NAME_RE = re.compile(r"^\w(([\w.-]+)?\w)?\Z", re.ASCII)


@dataclass
class ManagedKeyConfig:
    name: str
    uuid: str
    library: str
    pin: str
    slot: int | None = None
    token_label: str = ""
    key_label: str = ""
    key_id: str = ""                 # CKA_ID as the user wrote it ("0x.." hex, else UTF-8 text)
    mechanism: int = 0x0001
    key_bits: int = 0                # RSA modulus size; EC keys use `curve`
    curve: str = ""
    allow_generate_key: bool = False
    allow_store_key: bool = False
    max_parallel: int = DEFAULT_MAX_PARALLEL
    extra: dict[str, Any] = field(default_factory=dict)   # accepted-but-unused Vault fields, echoed on read

    @property
    def key_type(self) -> str:
        return MECHANISMS[self.mechanism][1]

    @property
    def mechanism_name(self) -> str:
        return MECHANISMS[self.mechanism][0]

    @property
    def ck_id(self) -> bytes | None:
        return parse_key_id(self.key_id) if self.key_id else None

    def describe_key(self) -> str:
        parts = []
        if self.key_label:
            parts.append(f'label "{self.key_label}"')
        if self.key_id:
            parts.append(f'id "{self.key_id}"')
        return " and ".join(parts)

    def describe_token(self) -> str:
        return f"slot {self.slot}" if self.slot is not None else f'token "{self.token_label}"'

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> "ManagedKeyConfig":
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in raw.items() if k in known})

    def public_view(self) -> dict[str, Any]:
        """What a read returns: everything but the PIN."""
        out: dict[str, Any] = {
            "name": self.name, "uuid": self.uuid, "type": "pkcs11", "library": self.library,
            "slot": "" if self.slot is None else str(self.slot), "token_label": self.token_label,
            "key_label": self.key_label, "key_id": self.key_id, "mechanism": f"0x{self.mechanism:04x}",
            "mechanism_name": self.mechanism_name, "key_type": self.key_type, "key_bits": self.key_bits,
            "curve": self.curve, "allow_generate_key": self.allow_generate_key,
            "allow_store_key": self.allow_store_key, "max_parallel": self.max_parallel,
        }
        out.update(self.extra)
        return out


def parse_key_id(text: str) -> bytes:
    if text.lower().startswith("0x"):
        try:
            return bytes.fromhex(text[2:])
        except ValueError:
            raise UserError(f'key_id "{text}" starts with 0x but is not hex') from None
    return text.encode()


def parse_mechanism(raw: str) -> int:
    text = raw.strip()
    if not text:
        return 0x0001
    upper = text.upper()
    if upper in _MECH_BY_NAME:
        return _MECH_BY_NAME[upper]
    if "CKM_" + upper in _MECH_BY_NAME:
        return _MECH_BY_NAME["CKM_" + upper]
    try:
        value = int(text, 16) if text.lower().startswith("0x") else int(text, 10)
    except ValueError:
        raise UserError(f'unknown mechanism "{raw}"') from None
    if value not in MECHANISMS:
        raise UserError(f'unsupported mechanism "{raw}": use one of '
                        + ", ".join(f"0x{v:04x} ({n})" for v, (n, _) in sorted(MECHANISMS.items())))
    return value


def allowed_libraries() -> list[str]:
    env = os.environ.get(LIBRARIES_ENV, "")
    listed = [p for p in env.split(os.pathsep) if p]
    return listed or list(DEFAULT_LIBRARIES)


def validate_library(path: str) -> str:
    if not path:
        raise UserError("library is required: the path of the PKCS#11 module")
    if not os.path.isabs(path):
        raise UserError(f'library "{path}" must be an absolute path')
    resolved = os.path.realpath(path)
    allowed = {os.path.realpath(p) for p in allowed_libraries()}
    if resolved not in allowed:
        raise UserError(f'library "{path}" is not an allowed PKCS#11 module; list it in {LIBRARIES_ENV} '
                        "in the server's environment")
    if not os.path.isfile(resolved):
        raise UserError(f'library "{path}" does not exist')
    return path


def build_config(name: str, data: dict[str, Any], existing: ManagedKeyConfig | None) -> ManagedKeyConfig:
    """A validated config from request fields (already type-converted); raises UserError, touches nothing."""
    if not _NAME_RE.match(name):
        raise UserError("managed key name contained invalid characters")
    pin = data.get("pin") or (existing.pin if existing else "")
    if not pin:
        raise UserError("pin is required")
    slot_raw = str(data.get("slot") or "").strip()
    slot: int | None = None
    if slot_raw:
        try:
            slot = int(slot_raw, 16) if slot_raw.lower().startswith("0x") else int(slot_raw)
        except ValueError:
            raise UserError(f'slot "{slot_raw}" is not a number') from None
    token_label = str(data.get("token_label") or "")
    if slot is None and not token_label:
        raise UserError("one of slot or token_label is required")
    if slot is not None and token_label:
        raise UserError("only one of slot or token_label may be set")
    key_label = str(data.get("key_label") or "")
    key_id = str(data.get("key_id") or "")
    if not key_label and not key_id:
        raise UserError("one of key_label or key_id is required")
    if key_id:
        parse_key_id(key_id)
    mechanism = parse_mechanism(str(data.get("mechanism") or ""))
    kind = MECHANISMS[mechanism][1]
    key_bits = int(data.get("key_bits") or 0)
    curve_raw = str(data.get("curve") or "").strip()
    curve = ""
    if kind == "rsa":
        if curve_raw:
            raise UserError(f"curve does not apply to RSA mechanism {MECHANISMS[mechanism][0]}")
        key_bits = key_bits or 2048
        if key_bits not in RSA_BITS:
            raise UserError(f"unsupported key_bits {key_bits} for RSA: use one of {', '.join(map(str, RSA_BITS))}")
    elif kind == "ec":
        bits = CURVES.get(curve_raw.lower()) if curve_raw else (key_bits or 256)
        if bits not in CURVE_NAMES:
            raise UserError(f'unsupported curve "{curve_raw or key_bits}": use P256, P384 or P521')
        curve, key_bits = CURVE_NAMES[bits], bits
    else:
        if curve_raw or key_bits:
            raise UserError("key_bits and curve do not apply to Ed25519")
    max_parallel = int(data.get("max_parallel") or DEFAULT_MAX_PARALLEL)
    if not 1 <= max_parallel <= 64:
        raise UserError("max_parallel must be between 1 and 64")
    return ManagedKeyConfig(
        name=name, uuid=existing.uuid if existing else str(uuid.uuid4()),
        library=validate_library(str(data.get("library") or "")), pin=pin, slot=slot, token_label=token_label,
        key_label=key_label, key_id=key_id, mechanism=mechanism, key_bits=key_bits, curve=curve,
        allow_generate_key=bool(data.get("allow_generate_key")), allow_store_key=bool(data.get("allow_store_key")),
        max_parallel=max_parallel, extra=dict(data.get("extra") or {}),
    )


class ManagedKeyStore:
    """Managed key configs in storage, looked up by name or by uuid (what key records refer to)."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage

    async def get(self, name: str) -> ManagedKeyConfig | None:
        if not _NAME_RE.match(name):
            return None     # not a name a managed key can have; "../.." would name another storage key
        raw = await get_json(self.storage, PREFIX + name)
        return None if raw is None else ManagedKeyConfig.from_json(raw)

    async def names(self) -> list[str]:
        return sorted(k for k in await self.storage.list(PREFIX) if not k.endswith("/"))

    async def by_uuid(self, key_uuid: str) -> ManagedKeyConfig | None:
        for name in await self.names():
            cfg = await self.get(name)
            if cfg is not None and cfg.uuid == key_uuid:
                return cfg
        return None

    async def resolve(self, name: str = "", key_uuid: str = "") -> ManagedKeyConfig:
        if name and key_uuid:
            raise UserError("only one of managed_key_name or managed_key_id may be set")
        if not name and not key_uuid:
            raise UserError("a managed key is required: set managed_key_name or managed_key_id")
        cfg = await (self.get(name) if name else self.by_uuid(key_uuid))
        if cfg is None:
            raise UserError(f'no managed key found for {"name" if name else "id"} "{name or key_uuid}"')
        return cfg

    async def put(self, cfg: ManagedKeyConfig) -> None:
        await put_json(self.storage, PREFIX + cfg.name, cfg.to_json(), seal_wrap=True)

    async def delete(self, name: str) -> None:
        await self.storage.delete(PREFIX + name)
