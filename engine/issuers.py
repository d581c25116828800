"""Issuer records (`config/issuer/<id>`), the `config/issuers` default, chain building and AIA resolution."""
from __future__ import annotations

import dataclasses
import time
import uuid
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Iterable

from cryptography import x509
from cryptography.exceptions import InvalidSignature

from engine.cache import RecordCache
from engine.keys import KeyStore
from engine.signing import SigningKey, load_signing_key
from engine.storage import storage_id_shaped, Storage, get_json, put_json
from engine.urls import AiaUrls, read_cluster, read_global, render
from engine.x509util import cert_serial_colon, same_public_key, with_newline
from plugin.framework import UserError

ISSUER_PREFIX = "config/issuer/"
ISSUERS_CONFIG = "config/issuers"

READ_ONLY = "read-only"
ISSUING = "issuing-certificates"
CRL_SIGNING = "crl-signing"
OCSP_SIGNING = "ocsp-signing"
ALL_USAGES = frozenset({READ_ONLY, ISSUING, CRL_SIGNING, OCSP_SIGNING})
LEAF_NOT_AFTER_BEHAVIORS = ("err", "truncate", "permit")


class IssuerNotFoundError(UserError):
    """An issuer reference that resolves to nothing. 400 by default; the issuer read paths answer 500 with the
    same text because Terraform's drift detection matches the built-in engine's code and message."""


@dataclass
class IssuerRecord:
    id: str
    name: str
    key_id: str                          # "" for a key-less issuer (chain building only)
    certificate_pem: str                 # one trailing newline
    ca_chain: list[str] = field(default_factory=list)        # computed: self first, then parents (PEM, "\n"-ended)
    manual_chain: list[str] = field(default_factory=list)    # issuer ids overriding the computed chain
    leaf_not_after_behavior: str = "err"
    usage: set[str] = field(default_factory=lambda: set(ALL_USAGES))
    revocation_signature_algorithm: str = ""
    aia: AiaUrls | None = None
    revoked: bool = False
    revocation_time: int = 0             # unix seconds
    revocation_time_utc: str = ""        # RFC 3339
    last_modified: float = field(default_factory=time.time)
    version: int = 1

    @cached_property
    def certificate(self) -> x509.Certificate:
        return x509.load_pem_x509_certificate(self.certificate_pem.encode())

    @property
    def serial_number(self) -> str:
        return cert_serial_colon(self.certificate)

    @property
    def usage_string(self) -> str:
        """Vault's rendering: names sorted alphabetically, comma separated."""
        return ",".join(sorted(self.usage))

    def has_usage(self, usage: str) -> bool:
        return usage in self.usage

    def is_self_signed(self) -> bool:
        cert = self.certificate
        if cert.issuer != cert.subject:
            return False
        return _signed_by(cert, cert)

    def copy(self, **changes: Any) -> "IssuerRecord":
        """Records from the store are shared with the cache: modify a copy, then put it."""
        fresh = dataclasses.replace(self, **changes)
        fresh.usage = set(fresh.usage)
        fresh.manual_chain = list(fresh.manual_chain)
        fresh.ca_chain = list(fresh.ca_chain)
        return fresh

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id, "name": self.name, "key_id": self.key_id, "certificate": self.certificate_pem,
            "manual_chain": self.manual_chain, "leaf_not_after_behavior": self.leaf_not_after_behavior,
            "usage": sorted(self.usage), "revocation_signature_algorithm": self.revocation_signature_algorithm,
            "aia": self.aia.to_json() if self.aia is not None else None, "revoked": self.revoked,
            "revocation_time": self.revocation_time, "revocation_time_utc": self.revocation_time_utc,
            "last_modified": self.last_modified, "version": self.version,
        }

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> "IssuerRecord":
        return cls(
            id=raw["id"], name=raw.get("name", ""), key_id=raw.get("key_id", ""),
            certificate_pem=raw["certificate"], manual_chain=list(raw.get("manual_chain") or []),
            leaf_not_after_behavior=raw.get("leaf_not_after_behavior", "err"),
            usage=set(raw.get("usage") or ALL_USAGES),
            revocation_signature_algorithm=raw.get("revocation_signature_algorithm", ""),
            aia=AiaUrls.from_json(raw["aia"]) if raw.get("aia") is not None else None,
            revoked=bool(raw.get("revoked", False)), revocation_time=int(raw.get("revocation_time", 0)),
            revocation_time_utc=raw.get("revocation_time_utc", ""),
            last_modified=float(raw.get("last_modified", 0.0)), version=int(raw.get("version", 1)),
        )


@dataclass
class IssuersConfig:
    default: str = ""
    default_follows_latest_issuer: bool = False


def require_usage(issuer: IssuerRecord, usage: str) -> None:
    """UserError in Vault's words when the issuer lacks a usage (the built-in answers 500; we answer 400)."""
    if issuer.has_usage(usage):
        return
    ref = f"id:{issuer.id}" + (f" / name:{issuer.name}" if issuer.name else "")
    raise UserError(f"error while attempting to use issuer {issuer.id}: requested usage {usage} for issuer "
                    f"[{ref}] but only had usage {issuer.usage_string}")


def _signed_by(child: x509.Certificate, parent: x509.Certificate) -> bool:
    try:
        child.verify_directly_issued_by(parent)
        return True
    except (ValueError, TypeError, InvalidSignature):
        return False


@dataclass
class IssuerStore:
    storage: Storage
    cache: RecordCache[IssuerRecord] = field(default_factory=RecordCache)
    keys: KeyStore | None = None
    signing_cache: dict[str, SigningKey] = field(default_factory=dict)   # by key id

    def __post_init__(self) -> None:
        if self.keys is None:
            self.keys = KeyStore(self.storage)

    # -- records -------------------------------------------------------------------------------------------
    async def _load(self, issuer_id: str) -> IssuerRecord | None:
        hit = self.cache.items.get(issuer_id)
        if hit is not None:
            return hit
        epoch = self.cache.epoch
        raw = await get_json(self.storage, ISSUER_PREFIX + issuer_id)
        if raw is None:
            return None
        rec = IssuerRecord.from_json(raw)
        self.cache.fill(issuer_id, rec, epoch)
        return rec

    async def get(self, issuer_id: str) -> IssuerRecord | None:
        rec = await self._load(issuer_id)
        if rec is None:
            return None
        rec.ca_chain = await self.chain_pems(rec)
        return rec

    async def list(self) -> list[str]:
        ids = self.cache.ids
        if ids is None:
            epoch = self.cache.epoch
            ids = sorted(await self.storage.list(ISSUER_PREFIX))
            self.cache.fill_ids(ids, epoch)
        return list(ids)

    async def all(self) -> list[IssuerRecord]:
        out = []
        for issuer_id in await self.list():
            rec = await self._load(issuer_id)
            if rec is not None:
                out.append(rec)
        return out

    async def put(self, rec: IssuerRecord) -> None:
        rec.last_modified = time.time()
        await put_json(self.storage, ISSUER_PREFIX + rec.id, rec.to_json())
        stored = rec.copy()
        self.cache.store(rec.id, stored)

    async def delete(self, issuer_id: str) -> None:
        await self.storage.delete(ISSUER_PREFIX + issuer_id)
        self.cache.drop(issuer_id)

    async def resolve(self, ref: str) -> IssuerRecord:
        """By id, name or 'default'; IssuerNotFoundError with Vault's message otherwise."""
        rec = await self.find(ref)
        if rec is None:
            if ref.strip() == "default":
                raise IssuerNotFoundError("no default issuer currently configured")
            raise IssuerNotFoundError(f"unable to find PKI issuer for reference: {ref}")
        return rec

    async def find(self, ref: str) -> IssuerRecord | None:
        ref = ref.strip()
        if ref == "default":
            default = await self.default_id()
            return await self.get(default) if default else None
        if not ref:
            return None
        rec = await self.get(ref) if storage_id_shaped(ref) else None
        if rec is not None:
            return rec
        for candidate in await self.all():
            if candidate.name and candidate.name == ref:
                return await self.get(candidate.id)
        return None

    async def name_taken(self, name: str, except_id: str = "") -> bool:
        if not name:
            return False
        return any(r.name == name and r.id != except_id for r in await self.all())

    async def find_by_certificate(self, cert: x509.Certificate) -> IssuerRecord | None:
        """An issuer holding exactly this certificate (import de-duplication)."""
        for rec in await self.all():
            if rec.certificate == cert:
                return rec
        return None

    @staticmethod
    def new_id() -> str:
        return str(uuid.uuid4())

    # -- defaults ------------------------------------------------------------------------------------------
    async def config(self) -> IssuersConfig:
        cached = self.cache.derived.get("config")
        if cached is None:
            epoch = self.cache.epoch
            raw = await get_json(self.storage, ISSUERS_CONFIG) or {}
            cached = IssuersConfig(default=raw.get("default", ""),
                                   default_follows_latest_issuer=bool(raw.get("default_follows_latest_issuer")))
            self.cache.fill_derived("config", cached, epoch)
        return cached

    async def default_id(self) -> str:
        return (await self.config()).default

    async def set_config(self, cfg: IssuersConfig) -> None:
        await put_json(self.storage, ISSUERS_CONFIG, dataclasses.asdict(cfg))
        self.cache.drop_derived()
        self.cache.derived["config"] = IssuersConfig(cfg.default, cfg.default_follows_latest_issuer)

    async def set_default(self, issuer_id: str) -> None:
        cfg = await self.config()
        await self.set_config(IssuersConfig(issuer_id, cfg.default_follows_latest_issuer))

    # -- keys ----------------------------------------------------------------------------------------------
    async def signing_key(self, issuer: IssuerRecord) -> SigningKey:
        """The issuer's key as a signer; UserError (Vault's text) for a key-less issuer."""
        if not issuer.key_id:
            raise UserError(f"unable to fetch corresponding key for issuer {issuer.id}; "
                            "unable to use this issuer for signing")
        cached = self.signing_cache.get(issuer.key_id)
        if cached is not None:
            return cached
        assert self.keys is not None
        rec = await self.keys.get(issuer.key_id)
        if rec is None:
            raise UserError(f"unable to fetch corresponding key for issuer {issuer.id}; "
                            "unable to use this issuer for signing")
        signer = await load_signing_key(self.storage, rec)
        self.signing_cache[issuer.key_id] = signer
        return signer

    # -- chains --------------------------------------------------------------------------------------------
    async def chain_records(self, issuer: IssuerRecord) -> list[IssuerRecord]:
        """Self first, then parents found in the mount (siblings with the same subject and key, i.e.
        cross-signed or reissued copies, are followed too); or the manual chain when one is set."""
        chains: dict[str, list[str]] = self.cache.derived.get("chains") or {}
        ids = chains.get(issuer.id)
        if ids is None:
            epoch = self.cache.epoch
            everyone = {r.id: r for r in await self.all()}
            everyone.setdefault(issuer.id, issuer)
            ids = _compute_chain(issuer, everyone)
            if epoch == self.cache.epoch:
                self.cache.derived.setdefault("chains", {})[issuer.id] = ids
        out = []
        for i in ids:
            rec = self.cache.items.get(i) or await self._load(i)
            if rec is not None:
                out.append(rec)
        return out

    async def chain_pems(self, issuer: IssuerRecord) -> list[str]:
        return [with_newline(r.certificate_pem) for r in await self.chain_records(issuer)]

    async def aia_for(self, issuer: IssuerRecord) -> AiaUrls:
        """The URLs certificates signed by this issuer carry: its own block if it sets any URL, else the global
        config/urls; templates resolved against config/cluster."""
        urls = issuer.aia if issuer.aia is not None and not issuer.aia.is_empty() else None
        if urls is None:
            cached = self.cache.derived.get("global_urls")
            if cached is None:
                epoch = self.cache.epoch
                cached = await read_global(self.storage)
                self.cache.fill_derived("global_urls", cached, epoch)
            urls = cached
        if not urls.enable_templating:
            return urls
        return render(urls, issuer.id, await read_cluster(self.storage))


def _compute_chain(issuer: IssuerRecord, everyone: dict[str, IssuerRecord]) -> list[str]:
    if issuer.manual_chain:
        return [i for i in issuer.manual_chain if i in everyone]
    order = [issuer.id]
    seen = {issuer.id}
    queue = [issuer]
    while queue:
        node = queue.pop(0)
        cert = node.certificate
        related: list[IssuerRecord] = []
        for other in everyone.values():
            if other.id in seen:
                continue
            oc = other.certificate
            sibling = oc.subject == cert.subject and same_public_key(oc.public_key(), cert.public_key())
            parent = cert.issuer == oc.subject and _signed_by(cert, oc)
            if sibling or parent:
                related.append(other)
        # Siblings first (same position in the hierarchy), then parents; stable order by not-before.
        related.sort(key=lambda r: (0 if r.certificate.subject == cert.subject else 1,
                                    r.certificate.not_valid_before_utc, r.id))
        for r in related:
            seen.add(r.id)
            order.append(r.id)
            queue.append(r)
    return order


def parse_usage(names: Iterable[str]) -> set[str]:
    out = {READ_ONLY}
    for raw in names:
        name = raw.strip().lower()
        if not name:
            continue
        if name not in ALL_USAGES:
            raise UserError(f"Unknown issuer usage: {raw}. Valid usages are read-only, issuing-certificates, "
                            "crl-signing, and ocsp-signing.")
        out.add(name)
    return out


def cert_allows_crl_signing(cert: x509.Certificate) -> bool:
    try:
        ku = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return True
    return ku.crl_sign


def key_matches_cert(key_public: Any, cert: x509.Certificate) -> bool:
    return same_public_key(key_public, cert.public_key())
