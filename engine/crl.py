"""CRL configuration, per-issuer CRL building (complete and delta) and CRL storage in chunks.

One CRL per equivalence class of issuers (same key and same subject), as the built-in engine does; complete and
delta CRLs of a class draw their numbers from one counter, and every complete build is followed by a delta build.
CRLs are built from the whole revocation index in one go (adding entries to a builder one by one is quadratic)
and stored in chunks below 512 KB, because a 100,000-entry CRL (~3.9 MB) exceeds raft's value limit.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import time
import uuid
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from engine.issuers import CRL_SIGNING, IssuerRecord, IssuerStore
from engine.revocation import WAL_PREFIX
from engine.revocation_index import Pending, RevocationIndex, gather_limited, int_to_hyphen, reconcile
from engine.signing import hash_for_key, is_blocking, sign_crl, signature_params
from engine.storage import Storage, get_json, put_json
from engine.x509util import aki_from_issuer
from plugin.framework import ReadOnlyError, UserError
from plugin.framework.fields import FieldError, parse_duration

if TYPE_CHECKING:
    from engine.context import PkiContext

CONFIG_KEY = "config/crl"
STATE_KEY = "crls/config"
CRL_PREFIX = "crls/"
CHUNK_BYTES = 400 * 1024
THREAD_THRESHOLD = 2000       # sign bigger CRLs off the event loop so OCSP and reads keep flowing


# ---------------------------------------------------------------------------------------------------------------
# config/crl

@dataclass
class CrlConfig:
    expiry: str = "72h"
    disable: bool = False
    ocsp_disable: bool = False
    ocsp_expiry: str = "12h"
    auto_rebuild: bool = False
    auto_rebuild_grace_period: str = "12h"
    enable_delta: bool = False
    delta_rebuild_interval: str = "15m"
    allow_expired_cert_revocation: bool = False

    DURATIONS = ("expiry", "ocsp_expiry", "auto_rebuild_grace_period", "delta_rebuild_interval")

    def seconds(self, name: str) -> int:
        try:
            return parse_duration(getattr(self, name))
        except FieldError:
            # Written before durations were checked against Go's range: use the default rather than fail every
            # revocation until an admin rewrites config/crl.
            return parse_duration(getattr(CrlConfig, name))

    def response(self) -> dict[str, Any]:
        return asdict(self)

    def validate(self) -> None:
        """Vault's checks and texts; raises UserError before anything is written."""
        for name in self.DURATIONS:
            try:
                parse_duration(getattr(self, name))
            except FieldError as exc:
                raise UserError(f"given {name} could not be decoded: {exc}") from None
        expiry = self.seconds("expiry")
        if self.auto_rebuild and self.seconds("auto_rebuild_grace_period") >= expiry:
            raise UserError(f"CRL auto-rebuilding grace period ({self.auto_rebuild_grace_period}) must be strictly "
                            f"shorter than CRL expiry ({self.expiry}) value when auto-rebuilding of CRLs is enabled")
        if self.enable_delta and not self.auto_rebuild:
            raise UserError("Delta CRLs cannot be enabled when auto rebuilding is disabled as the complete CRL is "
                            "always regenerated!")
        if self.enable_delta and self.seconds("delta_rebuild_interval") >= expiry:
            raise UserError(f"CRL delta rebuild window ({self.delta_rebuild_interval}) must be strictly shorter than "
                            f"CRL expiry ({self.expiry}) value when delta CRLs are enabled")

    @classmethod
    def from_json(cls, raw: dict[str, Any] | None) -> "CrlConfig":
        cfg = cls()
        for name, value in (raw or {}).items():
            if hasattr(cfg, name) and name != "DURATIONS":
                setattr(cfg, name, value)
        return cfg


async def load_config(storage: Storage) -> CrlConfig:
    return CrlConfig.from_json(await get_json(storage, CONFIG_KEY))


async def save_config(storage: Storage, cfg: CrlConfig) -> None:
    await put_json(storage, CONFIG_KEY, cfg.response())


# ---------------------------------------------------------------------------------------------------------------
# crls/config: which issuer uses which CRL, numbers, expiries

@dataclass
class CrlState:
    issuer_crl: dict[str, str] = field(default_factory=dict)      # issuer id -> CRL id
    next_number: dict[str, int] = field(default_factory=dict)     # CRL id -> next CRL number
    last_complete: dict[str, int] = field(default_factory=dict)   # CRL id -> number of the last complete CRL
    next_update: dict[str, float] = field(default_factory=dict)   # CRL id -> NextUpdate of the complete CRL
    last_modified: float = 0.0
    delta_last_modified: float = 0.0
    last_delta_check: float = 0.0

    @classmethod
    def from_json(cls, raw: dict[str, Any] | None) -> "CrlState":
        st = cls()
        for name, value in (raw or {}).items():
            if hasattr(st, name):
                setattr(st, name, value)
        return st


async def load_state(storage: Storage) -> CrlState:
    return CrlState.from_json(await get_json(storage, STATE_KEY))


async def save_state(storage: Storage, state: CrlState) -> None:
    await put_json(storage, STATE_KEY, asdict(state))


# ---------------------------------------------------------------------------------------------------------------
# CRL bytes in storage: `crls/<name>` points at the generation whose chunks are complete

async def write_crl(storage: Storage, name: str, der: bytes, generation: int) -> None:
    old = await get_json(storage, CRL_PREFIX + name)
    chunks = [der[i:i + CHUNK_BYTES] for i in range(0, len(der), CHUNK_BYTES)] or [b""]
    await gather_limited([storage.put(f"{CRL_PREFIX}{name}/{generation}/{i}", c) for i, c in enumerate(chunks)])
    await put_json(storage, CRL_PREFIX + name, {"generation": generation, "chunks": len(chunks), "size": len(der)})
    if old and old.get("generation") != generation:
        await gather_limited([storage.delete(f"{CRL_PREFIX}{name}/{old['generation']}/{i}")
                              for i in range(int(old.get("chunks") or 0))])


async def read_crl(storage: Storage, name: str) -> bytes | None:
    for _ in range(3):   # a rebuild may swap generations between our two reads
        meta = await get_json(storage, CRL_PREFIX + name)
        if meta is None:
            return None
        parts = await gather_limited([storage.get(f"{CRL_PREFIX}{name}/{meta['generation']}/{i}")
                                      for i in range(int(meta["chunks"]))])
        if all(p is not None for p in parts):
            return b"".join(p for p in parts if p is not None)
    return None


def delta_name(crl_id: str) -> str:
    return crl_id + "-delta"


# ---------------------------------------------------------------------------------------------------------------
# Per-mount runtime: the index, pending revocations, build coordination, caches

@dataclass
class RevocationRuntime:
    index: RevocationIndex | None = None
    pending: Pending = field(default_factory=Pending)
    load_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    build_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    requested: int = 0            # rebuild requests seen
    built: int = 0                # highest request number a finished build covered
    crl_cache: dict[str, bytes] = field(default_factory=dict)    # CRL name -> DER built by this process
    config: CrlConfig | None = None
    ocsp_cache: Any = None        # engine.ocsp.ResponseCache, created lazily
    tidy: Any = None              # engine.tidy.TidyRunner, created lazily
    # Bumped by every invalidation that drops the index; a load that one overtook starts again (a standby must not
    # keep an index read before a revocation it was told about).
    index_epoch: int = 0
    config_epoch: int = 0
    crl_epoch: int = 0

    async def ensure_index(self, storage: Storage) -> RevocationIndex:
        while self.index is None:
            async with self.load_lock:
                if self.index is not None:
                    break
                epoch = self.index_epoch
                index = await RevocationIndex.load(storage)
                # Into the live `pending`: a revoke this process finishes meanwhile adds to it too.
                await reconcile(storage, index, self.pending)
                if epoch == self.index_epoch:
                    self.index = index
        return self.index

    def drop_index(self) -> None:
        """Another node changed revocations (standby): the index and what reconciliation found are reloaded."""
        self.index = None
        self.pending = Pending()
        self.index_epoch += 1

    async def crl_config(self, storage: Storage) -> CrlConfig:
        config = self.config
        if config is None:
            epoch = self.config_epoch
            config = await load_config(storage)
            if epoch == self.config_epoch:
                self.config = config
        return config

    def drop_config(self) -> None:
        self.config = None
        self.config_epoch += 1

    def drop_crls(self) -> None:
        self.crl_cache.clear()
        self.crl_epoch += 1

    def forget(self) -> None:
        """Drop everything derived from storage (invalidation, cleanup)."""
        self.index = None
        self.pending = Pending()
        self.crl_cache.clear()
        self.config = None
        if self.ocsp_cache is not None:
            self.ocsp_cache.clear()


def runtime(ctx: "PkiContext") -> RevocationRuntime:
    rt = ctx.extra.get("revocation")
    if rt is None:
        rt = RevocationRuntime()
        ctx.extra["revocation"] = rt
    return rt


# ---------------------------------------------------------------------------------------------------------------
# Building

@dataclass
class IssuerClass:
    crl_id: str
    members: list[IssuerRecord]
    signer: IssuerRecord | None


def _class_key(rec: IssuerRecord) -> tuple[str, bytes]:
    return rec.key_id, rec.certificate.subject.public_bytes()


def group_classes(issuers: list[IssuerRecord], state: CrlState, default_id: str) -> list[IssuerClass]:
    groups: dict[tuple[str, bytes], list[IssuerRecord]] = {}
    for rec in issuers:
        if rec.key_id:
            groups.setdefault(_class_key(rec), []).append(rec)
    classes = []
    for members in groups.values():
        crl_id = next((state.issuer_crl[m.id] for m in members if m.id in state.issuer_crl), "") or str(uuid.uuid4())
        for m in members:
            state.issuer_crl[m.id] = crl_id
        able = [m for m in members if m.has_usage(CRL_SIGNING)]
        able.sort(key=lambda m: (m.id != default_id, -m.certificate.not_valid_before_utc.timestamp(), m.id))
        classes.append(IssuerClass(crl_id, members, able[0] if able else None))
    known = {r.id for r in issuers}
    for stale in [i for i in state.issuer_crl if i not in known]:
        del state.issuer_crl[stale]
    return classes


def _revoked_list(entries: list[tuple[int, int]]) -> list[x509.RevokedCertificate]:
    utc = dt.timezone.utc
    return [x509.RevokedCertificateBuilder().serial_number(serial)
            .revocation_date(dt.datetime.fromtimestamp(t, utc)).build() for serial, t in entries]


async def _sign(issuers: IssuerStore, signer: IssuerRecord, entries: list[tuple[int, int]], number: int,
                expiry_seconds: int, delta_of: int | None, freshest: list[str]) -> bytes:
    key = await issuers.signing_key(signer)
    hash_alg, pss = signature_params(signer.revocation_signature_algorithm)
    if hash_alg is None and key.key_type != "ed25519":
        hash_alg = hash_for_key(key)
    now = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)

    def make() -> x509.CertificateRevocationListBuilder:
        builder = x509.CertificateRevocationListBuilder(
            issuer_name=signer.certificate.subject, last_update=now,
            next_update=now + dt.timedelta(seconds=expiry_seconds), revoked_certificates=_revoked_list(entries))
        builder = builder.add_extension(aki_from_issuer(signer.certificate), critical=False)
        builder = builder.add_extension(x509.CRLNumber(number), critical=False)
        if delta_of is not None:
            builder = builder.add_extension(x509.DeltaCRLIndicator(delta_of), critical=True)
        elif freshest:
            builder = builder.add_extension(x509.FreshestCRL([
                x509.DistributionPoint([x509.UniformResourceIdentifier(u)], None, None, None) for u in freshest]),
                critical=False)
        return builder

    def build() -> bytes:
        return key.sign_crl(make(), hash_alg, pss).public_bytes(serialization.Encoding.DER)

    large = len(entries) > THREAD_THRESHOLD
    if is_blocking(key):
        # A token-held key signs on its own executor; only building a long revoked list needs a thread here.
        builder = await asyncio.to_thread(make) if large else make()
        crl = await sign_crl(key, builder, hash_alg, pss)
        return crl.public_bytes(serialization.Encoding.DER)
    if large:
        return await asyncio.to_thread(build)
    return build()


async def rebuild(storage: Storage, ctx: "PkiContext", *, complete: bool = True) -> list[str]:
    """Build CRLs for every issuer class. `complete` folds pending revocations into the index and builds complete
    CRLs followed by deltas; otherwise only delta CRLs (pending revocations) are rebuilt."""
    rt = runtime(ctx)
    async with rt.build_lock:
        return await _rebuild_locked(storage, ctx, rt, complete)


async def _rebuild_locked(storage: Storage, ctx: "PkiContext", rt: RevocationRuntime, complete: bool) -> list[str]:
    warnings: list[str] = []
    cfg = await rt.crl_config(storage)
    index = await rt.ensure_index(storage)
    state = await load_state(storage)
    folded_wal: set[str] = set()
    if complete and rt.pending.entries:
        taken = dict(rt.pending.entries)
        for serial, (t, issuer_id) in taken.items():
            index.add(serial, t, issuer_id)
        await index.save(storage)
        for serial in taken:
            if rt.pending.entries.get(serial) == taken[serial]:
                del rt.pending.entries[serial]
        folded_wal = {int_to_hyphen(s) for s in taken} & rt.pending.wal_keys
    elif complete and (index.dirty or index.meta_dirty):
        await index.save(storage)

    issuers = ctx.issuers(storage)
    everyone = await issuers.all()
    default_id = await issuers.default_id()
    classes = group_classes(everyone, state, default_id)
    class_of = {m.id: c.crl_id for c in classes for m in c.members}
    fallback = class_of.get(default_id, "")

    def bucket_entries(source: Any) -> dict[str, list[tuple[int, int]]]:
        out: dict[str, list[tuple[int, int]]] = {c.crl_id: [] for c in classes}
        for serial, t, issuer_id in source:
            crl_id = class_of.get(issuer_id) or fallback
            if crl_id:
                out[crl_id].append((serial, t))
        return out

    delta_entries = bucket_entries((s, t, i) for s, (t, i) in rt.pending.entries.items())
    full_entries = bucket_entries(index.entries()) if complete else {}
    if complete:
        # Revoked issuers go on the CRLs of the other issuers in the mount that signed them.
        for revoked in (r for r in everyone if r.revoked):
            for c in classes:
                if revoked.id in (m.id for m in c.members):
                    continue
                if any(_signed(revoked.certificate, m.certificate) for m in c.members):
                    full_entries[c.crl_id].append((revoked.certificate.serial_number, revoked.revocation_time))

    expiry = cfg.seconds("expiry")
    now = time.time()
    for c in classes:
        if c.signer is None:
            warnings.append("Issuer equivalency set with associated keys lacked an issuer with CRL signing "
                            f"capabilities; unable to build CRL for issuers: {', '.join(m.id for m in c.members)}")
            continue
        freshest = (await issuers.aia_for(c.signer)).delta_crl_distribution_points
        number = int(state.next_number.get(c.crl_id, 1))
        if complete:
            entries = [] if cfg.disable else full_entries[c.crl_id]
            der = await _sign(issuers, c.signer, entries, number, expiry, None, freshest)
            await write_crl(storage, c.crl_id, der, number)
            rt.crl_cache[c.crl_id] = der
            state.last_complete[c.crl_id] = number
            state.next_update[c.crl_id] = now + expiry
            number += 1
        base = int(state.last_complete.get(c.crl_id, 0))
        if not complete and base == 0:
            continue   # no complete CRL to be a delta of yet
        entries = [] if cfg.disable else delta_entries[c.crl_id]
        der = await _sign(issuers, c.signer, entries, number, expiry, base, [])
        await write_crl(storage, delta_name(c.crl_id), der, number)
        rt.crl_cache[delta_name(c.crl_id)] = der
        state.next_number[c.crl_id] = number + 1

    live = {c.crl_id for c in classes}
    for m in (state.next_number, state.last_complete, state.next_update):
        for stale in [k for k in m if k not in live]:
            del m[stale]
    if complete:
        state.last_modified = now
    state.delta_last_modified = now
    state.last_delta_check = now
    await save_state(storage, state)
    if folded_wal:
        await gather_limited([storage.delete(WAL_PREFIX + k) for k in folded_wal])
        rt.pending.wal_keys -= folded_wal
    if rt.ocsp_cache is not None:
        rt.ocsp_cache.clear()
    return warnings


def _signed(child: x509.Certificate, parent: x509.Certificate) -> bool:
    from engine.revocation import signed_by
    return child.issuer == parent.subject and signed_by(child, parent)


async def request_rebuild(storage: Storage, ctx: "PkiContext") -> list[str]:
    """A complete rebuild that includes everything revoked before this call; concurrent callers share builds."""
    rt = runtime(ctx)
    rt.requested += 1
    mine = rt.requested
    async with rt.build_lock:
        if rt.built >= mine:
            return []
        target = rt.requested
        warnings = await _rebuild_locked(storage, ctx, rt, True)
        rt.built = target
        return warnings


# ---------------------------------------------------------------------------------------------------------------
# Reading

async def crl_id_for(storage: Storage, ctx: "PkiContext", issuer: IssuerRecord, may_build: bool = True) -> str | None:
    """The CRL id of an issuer's class; builds CRLs first when the issuer has none yet (new issuer). Where no build
    may happen (a standby) that case is handed to the active (ReadOnlyError) before anything changes here."""
    state = await load_state(storage)
    crl_id = state.issuer_crl.get(issuer.id)
    if crl_id is None or crl_id not in state.last_complete:
        if not issuer.key_id:
            return None
        if not may_build:
            raise ReadOnlyError()
        await request_rebuild(storage, ctx)
        state = await load_state(storage)
        crl_id = state.issuer_crl.get(issuer.id)
    return crl_id


async def fetch_crl(storage: Storage, ctx: "PkiContext", issuer: IssuerRecord, delta: bool,
                    may_build: bool = True) -> bytes | None:
    rt = runtime(ctx)
    crl_id = await crl_id_for(storage, ctx, issuer, may_build)
    if crl_id is None:
        return None
    name = delta_name(crl_id) if delta else crl_id
    cached = rt.crl_cache.get(name)
    if cached is not None:
        return cached
    epoch = rt.crl_epoch
    der = await read_crl(storage, name)
    if der is not None and epoch == rt.crl_epoch:
        rt.crl_cache[name] = der
    return der


# ---------------------------------------------------------------------------------------------------------------
# Periodic work

async def periodic(storage: Storage, ctx: "PkiContext") -> list[str]:
    """Complete rebuilds when due (revocations not yet on a CRL without auto_rebuild, or NextUpdate within the grace period under
    auto_rebuild), delta rebuilds every delta_rebuild_interval when there are new revocations. Idempotent."""
    rt = runtime(ctx)
    rt.drop_config()       # pick up changes another node made
    cfg = await rt.crl_config(storage)
    state = await load_state(storage)
    now = time.time()
    due = False
    if not cfg.auto_rebuild:
        # Revocations found by reconciliation after a restart (a crash between a revoke's 200 and its rebuild).
        await rt.ensure_index(storage)
        due = bool(rt.pending.entries)
    if cfg.auto_rebuild:
        grace = cfg.seconds("auto_rebuild_grace_period")
        if not state.next_update or any(nu - grace <= now for nu in state.next_update.values()):
            due = True
    elif state.next_update and any(nu <= now for nu in state.next_update.values()):
        due = True   # an expired CRL helps nobody; the built-in lets it lapse, we renew it
    if due:
        return await rebuild(storage, ctx, complete=True)
    if cfg.enable_delta and now - state.last_delta_check >= cfg.seconds("delta_rebuild_interval"):
        await rt.ensure_index(storage)
        if rt.pending.entries:
            return await rebuild(storage, ctx, complete=False)
    return []
