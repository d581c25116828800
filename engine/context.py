"""Per-mount state shared by every path module: caches of decoded records and hooks other modules register."""
from __future__ import annotations

import asyncio
import functools
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Awaitable, Callable, TypeVar

from engine.cache import RecordCache
from engine.hsm.config import PREFIX as MANAGED_KEYS_PREFIX
from engine.issuers import ISSUER_PREFIX, ISSUERS_CONFIG, IssuerRecord, IssuerStore
from engine.keys import KEY_PREFIX, KEYS_CONFIG, KeyRecord, KeyStore
from engine.signing import SigningKey
from engine.storage import Storage
from engine.urls import CLUSTER_KEY, URLS_KEY

if TYPE_CHECKING:
    from plugin.framework import FieldData, Request, SecretType

# A KMS/HSM key provider: (request, fields) -> (KeyRecord not yet stored, is_new). Registered by the HSM module.
KmsKeyProvider = Callable[["Request", "FieldData"], Awaitable[tuple[KeyRecord, bool]]]
H = TypeVar("H", bound=Callable[..., Awaitable[Any]])
# Called after anything that changes the issuer set (import, generation, deletion): e.g. CRL rebuilds.
IssuerChangeHook = Callable[["Request"], Awaitable[list[str]]]


@dataclass
class PkiContext:
    issuer_cache: RecordCache[IssuerRecord] = field(default_factory=RecordCache)
    key_cache: RecordCache[KeyRecord] = field(default_factory=RecordCache)
    signers: dict[str, SigningKey] = field(default_factory=dict)        # loaded signing keys by key id
    extra: dict[str, Any] = field(default_factory=dict)                 # other modules' per-mount state
    kms_provider: KmsKeyProvider | None = None
    issuer_change_hooks: list[IssuerChangeHook] = field(default_factory=list)
    invalidation_hooks: list[Callable[[str], None]] = field(default_factory=list)
    periodic_hooks: list[Callable[["Request"], Awaitable[None]]] = field(default_factory=list)
    initialize_hooks: list[Callable[["Request"], Awaitable[None]]] = field(default_factory=list)
    secret_types: list["SecretType"] = field(default_factory=list)   # modules append in their paths(ctx)
    # Serialises changes to the issuer/key set (generation, import, update, delete, defaults), as the built-in
    # engine's issuers lock does: two concurrent imports must not both pick themselves as the default.
    issuers_lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    def serialized(self, handler: "H") -> "H":
        """Wrap a path handler so it runs under `issuers_lock`."""
        @functools.wraps(handler)
        async def run(req: Any, d: Any) -> Any:
            async with self.issuers_lock:
                return await handler(req, d)
        return run  # type: ignore[return-value]

    def keys(self, storage: Storage) -> KeyStore:
        return KeyStore(storage, self.key_cache)

    def issuers(self, storage: Storage) -> IssuerStore:
        return IssuerStore(storage, self.issuer_cache, self.keys(storage), self.signers)

    def invalidate(self, key: str) -> None:
        """The framework's invalidate hook (another node wrote `key`) and our own write paths call this."""
        if key.startswith(ISSUER_PREFIX):
            self.issuer_cache.drop(key[len(ISSUER_PREFIX):])
        elif key == ISSUERS_CONFIG or key in (URLS_KEY, CLUSTER_KEY):
            self.issuer_cache.drop_derived()
        elif key.startswith(KEY_PREFIX):
            key_id = key[len(KEY_PREFIX):]
            self.key_cache.drop(key_id)
            self.signers.pop(key_id, None)
        elif key == KEYS_CONFIG:
            self.key_cache.drop_derived()
        elif key.startswith(MANAGED_KEYS_PREFIX):
            # Which keys sign through that managed key is in storage; signers are cheap to load again.
            self.signers.clear()
        for hook in self.invalidation_hooks:
            hook(key)

    def clear(self) -> None:
        self.issuer_cache.drop()
        self.key_cache.drop()
        self.signers.clear()

    async def issuers_changed(self, req: "Request") -> list[str]:
        """Run the registered hooks (CRL rebuild etc.); their warnings are added to the response."""
        warnings: list[str] = []
        for hook in self.issuer_change_hooks:
            warnings.extend(await hook(req))
        return warnings
