"""CA key records (`config/key/<id>`, seal-wrapped) and the `config/keys` default."""
from __future__ import annotations

import uuid
from dataclasses import asdict, dataclass, field
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes, PrivateKeyTypes

from engine.cache import RecordCache
from engine.storage import storage_id_shaped, Storage, get_json, put_json
from engine.x509util import key_bits_of, key_type_name, private_key_to_pem, public_key_der
from plugin.framework import UserError

KEY_PREFIX = "config/key/"
KEYS_CONFIG = "config/keys"


@dataclass
class KeyRecord:
    id: str
    name: str
    key_type: str                  # 'rsa' | 'ec' | 'ed25519'
    key_bits: int
    private_key_pem: str | None    # None for managed keys
    managed_key: dict[str, Any] | None = None   # opaque reference owned by the HSM/KMS module
    public_key_pem: str = ""       # SubjectPublicKeyInfo PEM: lets us match certificates without the private key

    def public_key(self) -> CertificatePublicKeyTypes:
        return serialization.load_pem_public_key(self.public_key_pem.encode())  # type: ignore[return-value]

    def public_der(self) -> bytes:
        return public_key_der(self.public_key())

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> "KeyRecord":
        return cls(
            id=raw["id"], name=raw.get("name", ""), key_type=raw["key_type"], key_bits=int(raw.get("key_bits", 0)),
            private_key_pem=raw.get("private_key_pem"), managed_key=raw.get("managed_key"),
            public_key_pem=raw.get("public_key_pem", ""),
        )

    @classmethod
    def from_private_key(cls, key: PrivateKeyTypes, name: str = "", key_id: str | None = None) -> "KeyRecord":
        pub = key.public_key()
        return cls(
            id=key_id or str(uuid.uuid4()), name=name, key_type=key_type_name(key), key_bits=key_bits_of(key),
            private_key_pem=private_key_to_pem(key),
            public_key_pem=pub.public_bytes(serialization.Encoding.PEM,
                                            serialization.PublicFormat.SubjectPublicKeyInfo).decode(),
        )


@dataclass
class KeysConfig:
    default: str = ""


@dataclass
class KeyStore:
    storage: Storage
    cache: RecordCache[KeyRecord] = field(default_factory=RecordCache)

    async def get(self, key_id: str) -> KeyRecord | None:
        hit = self.cache.items.get(key_id)
        if hit is not None:
            return hit
        epoch = self.cache.epoch
        raw = await get_json(self.storage, KEY_PREFIX + key_id)
        if raw is None:
            return None
        rec = KeyRecord.from_json(raw)
        self.cache.fill(key_id, rec, epoch)
        return rec

    async def list(self) -> list[str]:
        ids = self.cache.ids
        if ids is None:
            epoch = self.cache.epoch
            ids = sorted(await self.storage.list(KEY_PREFIX))
            self.cache.fill_ids(ids, epoch)
        return list(ids)

    async def all(self) -> list[KeyRecord]:
        out = []
        for key_id in await self.list():
            rec = await self.get(key_id)
            if rec is not None:
                out.append(rec)
        return out

    async def put(self, rec: KeyRecord) -> None:
        await put_json(self.storage, KEY_PREFIX + rec.id, rec.to_json(), seal_wrap=True)
        self.cache.store(rec.id, rec)

    async def delete(self, key_id: str) -> None:
        await self.storage.delete(KEY_PREFIX + key_id)
        self.cache.drop(key_id)

    async def resolve(self, ref: str) -> KeyRecord:
        """A key by id, by name, or 'default' (any case); UserError in Vault's words when there is none."""
        found = await self.find(ref)
        if found is None:
            if ref.strip() == "default":
                raise UserError("no default key currently configured")
            raise UserError(f"unable to find PKI key for reference: {ref}")
        return found

    async def find(self, ref: str) -> KeyRecord | None:
        ref = ref.strip()
        if ref == "default" or ref == "":
            default = await self.default_id()
            return await self.get(default) if default else None
        rec = await self.get(ref) if storage_id_shaped(ref) else None
        if rec is not None:
            return rec
        for candidate in await self.all():
            if candidate.name and candidate.name == ref:
                return candidate
        return None

    async def find_by_public_key(self, pub: CertificatePublicKeyTypes) -> KeyRecord | None:
        der = public_key_der(pub)
        for rec in await self.all():
            if rec.public_key_pem and rec.public_der() == der:
                return rec
        return None

    async def name_taken(self, name: str, except_id: str = "") -> bool:
        if not name:
            return False
        return any(r.name == name and r.id != except_id for r in await self.all())

    async def config(self) -> KeysConfig:
        cached = self.cache.derived.get("config")
        if cached is None:
            epoch = self.cache.epoch
            raw = await get_json(self.storage, KEYS_CONFIG) or {}
            cached = KeysConfig(default=raw.get("default", ""))
            self.cache.fill_derived("config", cached, epoch)
        return cached

    async def default_id(self) -> str:
        return (await self.config()).default

    async def set_default(self, key_id: str) -> None:
        await put_json(self.storage, KEYS_CONFIG, {"default": key_id})
        self.cache.drop_derived()
        self.cache.derived["config"] = KeysConfig(default=key_id)


def validate_name(name: str, kind: str = "key") -> None:
    """Names are free-form identifiers, but 'default' is reserved and they must fit the path name pattern."""
    from plugin.framework.fields import NAME_RE

    if not name:
        return
    if name.lower() == "default":
        raise UserError(f"{kind} name is reserved")
    if not NAME_RE.match(name):
        raise UserError(f"{kind} name contained invalid characters")
