"""An active node and a performance standby over one store, driven in-process.

The standby reads the active's storage through a read-only view that refuses writes with the server's text, its
SystemView reports the PerformanceStandby bit, and every key the active writes reaches the standby as an
InvalidateKey, as raft replication does on an OpenBao >= 2.5 cluster. The real-cluster versions of these checks are
in integration/test_cluster_caches.py."""
from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp

from engine import crl as crlmod
from engine import tidy as tidymod
from engine.backend import build_backend
from engine.external_ca.backend import build_backend as build_external_ca
from engine.storage import InMemoryStorage, StorageError
from ca_helpers import Reply, reply_of
from plugin.framework import Backend, Operation, Request, StaticSystemView
from plugin.framework.backend import PERFORMANCE_STANDBY
from plugin.framework.errors import READ_ONLY_TEXT

YEAR = 365 * 86400


def run(coro: Any) -> Any:
    return asyncio.run(coro)


class ReadOnlyView:
    """The standby's storage: the active's data, and the server's refusal for every write."""

    def __init__(self, store: InMemoryStorage) -> None:
        self.store = store
        self.writes_refused: list[str] = []

    async def get(self, key: str) -> bytes | None:
        return await self.store.get(key)

    async def list(self, prefix: str) -> list[str]:
        return await self.store.list(prefix)

    async def list_page(self, prefix: str, after: str, limit: int) -> list[str]:
        return await self.store.list_page(prefix, after, limit)

    async def put(self, key: str, value: bytes, seal_wrap: bool = False) -> None:
        self.writes_refused.append(key)
        raise StorageError(READ_ONLY_TEXT)

    async def delete(self, key: str) -> None:
        self.writes_refused.append(key)
        raise StorageError(READ_ONLY_TEXT)


class Replicating(InMemoryStorage):
    """The active's storage: remembers written keys so the pair can hand them to the standby."""

    def __init__(self) -> None:
        super().__init__()
        self.written: list[str] = []

    async def put(self, key: str, value: bytes, seal_wrap: bool = False) -> None:
        await super().put(key, value, seal_wrap)
        self.written.append(key)

    async def delete(self, key: str) -> None:
        await super().delete(key)
        self.written.append(key)


@dataclass
class Node:
    backend: Backend
    storage: Any
    system: StaticSystemView

    async def call(self, op: Operation, path: str, data: dict[str, Any] | None = None) -> Reply:
        req = Request(operation=op, path=path, storage=self.storage, system=self.system, data=data or {})
        return reply_of(op, await self.backend.handle(req))

    async def periodic(self) -> Reply:
        return await self.call(Operation.ROLLBACK, "")


@dataclass
class Pair:
    factory: Any = build_backend
    store: Replicating = field(default_factory=Replicating)

    def __post_init__(self) -> None:
        self.active = Node(self.factory(), self.store, StaticSystemView(max_ttl=10 * YEAR))
        self.view = ReadOnlyView(self.store)
        self.standby = Node(self.factory(), self.view,
                            StaticSystemView(max_ttl=10 * YEAR, replication=PERFORMANCE_STANDBY))

    def replicate(self) -> list[str]:
        keys, self.store.written = self.store.written, []
        for key in keys:
            self.standby.backend.invalidate(key)
        return keys

    async def on_active(self, op: Operation, path: str, **data: Any) -> Reply:
        reply = await self.active.call(op, path, data)
        self.replicate()
        return reply

    async def ok(self, path: str, **data: Any) -> dict[str, Any]:
        reply = await self.on_active(Operation.UPDATE, path, **data)
        assert reply.status == 200, reply
        return reply.data or {}

    async def setup_ca(self) -> dict[str, Any]:
        root = await self.ok("root/generate/internal", common_name="HA Root", key_type="ec", ttl="87600h")
        await self.ok("roles/web", allow_any_name=True, key_type="ec", ttl="1h")
        return root


def forwarded(reply: Reply) -> bool:
    """What the server needs to replay the request on the active: a protocol error carrying the read-only text."""
    return reply.status == 500 and READ_ONLY_TEXT in (reply.data or {}).get("error", "")


# --- forwarding keeps the text, and nothing happens first ---------------------------------------------------------

WRITES = [
    (Operation.UPDATE, "roles/web", {"allow_any_name": True, "ttl": "2h"}),
    (Operation.PATCH, "roles/web", {"ttl": "3h"}),
    (Operation.DELETE, "roles/web", {}),
    (Operation.UPDATE, "issue/web", {"common_name": "a.example.com"}),
    (Operation.UPDATE, "sign-verbatim", {"csr": ""}),   # replaced by a real CSR below
    (Operation.UPDATE, "config/crl", {"expiry": "48h"}),
    (Operation.UPDATE, "config/urls", {"issuing_certificates": "http://ca.example/ca"}),
    (Operation.UPDATE, "config/auto-tidy", {"enabled": True}),
    (Operation.UPDATE, "tidy", {"tidy_cert_store": True}),
    (Operation.UPDATE, "tidy-cancel", {}),
    (Operation.READ, "crl/rotate", {}),
    (Operation.READ, "crl/rotate-delta", {}),
    (Operation.UPDATE, "root/generate/internal", {"common_name": "Second", "key_type": "rsa", "key_bits": 4096}),
    (Operation.UPDATE, "keys/generate/internal", {"key_type": "ec"}),
    (Operation.UPDATE, "revoke", {"serial_number": ""}),   # replaced by a real serial below
]


def _csr_pem() -> str:
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "v.example.com")])).sign(key, hashes.SHA256()))
    return csr.public_bytes(serialization.Encoding.PEM).decode()


def test_every_write_on_a_standby_is_handed_to_the_active_and_changes_nothing() -> None:
    async def go() -> None:
        pair = Pair()
        await pair.setup_ca()
        serial = (await pair.ok("issue/web", common_name="r.example.com"))["serial_number"]
        await pair.standby.call(Operation.READ, "roles/web")        # warm the standby's caches
        await pair.standby.call(Operation.READ, "config/crl")
        before = pair.store.snapshot()
        ctx = pair.standby.backend.pki_context  # type: ignore[attr-defined]
        rt = crlmod.runtime(ctx)
        for op, path, data in WRITES:
            if path == "sign-verbatim":
                data = {"csr": _csr_pem()}
            if path == "revoke":
                data = {"serial_number": serial}
            reply = await pair.standby.call(op, path, data)
            assert forwarded(reply), (op, path, reply)
        assert pair.store.snapshot() == before
        assert not pair.store.written
        # No task, no pending revocation, no changed cache on the standby.
        assert tidymod.runner(ctx).task is None
        assert not rt.pending.entries
        role = await pair.standby.call(Operation.READ, "roles/web")
        assert role.status == 200 and role.data["ttl"] == 3600
        assert (await pair.standby.call(Operation.READ, "config/crl")).data["expiry"] == "72h"
    run(go())


def test_up_front_paths_do_no_work_on_the_standby() -> None:
    async def go() -> None:
        pair = Pair()
        await pair.setup_ca()
        pair.view.writes_refused.clear()
        for op, path, data in [(Operation.UPDATE, "tidy", {"tidy_cert_store": True}),
                               (Operation.READ, "crl/rotate", {}),
                               (Operation.UPDATE, "root/generate/internal", {"common_name": "X", "key_type": "ec"})]:
            assert forwarded(await pair.standby.call(op, path, data))
        # Answered before the handler ran: not even a refused write was attempted.
        assert pair.view.writes_refused == []
    run(go())


def test_reads_and_no_store_issuance_are_served_by_the_standby() -> None:
    async def go() -> None:
        pair = Pair()
        await pair.setup_ca()
        await pair.ok("roles/ephemeral", allow_any_name=True, key_type="ec", ttl="1h", no_store=True)
        issued = await pair.standby.call(Operation.UPDATE, "issue/ephemeral", {"common_name": "n.example.com"})
        assert issued.status == 200 and "BEGIN CERTIFICATE" in issued.data["certificate"]
        assert (await pair.standby.call(Operation.READ, "crl")).status == 200
        assert pair.view.writes_refused == []
        # tidy-status names the mount's tidy UUID, which the first read on the active stores.
        assert forwarded(await pair.standby.call(Operation.READ, "tidy-status"))
        assert (await pair.on_active(Operation.READ, "tidy-status")).status == 200
        pair.view.writes_refused.clear()
        assert (await pair.standby.call(Operation.READ, "tidy-status")).status == 200
        assert pair.view.writes_refused == []
    run(go())


def test_periodic_work_runs_only_on_the_active(caplog: Any) -> None:
    async def go() -> None:
        pair = Pair()
        await pair.setup_ca()
        await pair.ok("config/crl", auto_rebuild=True, enable_delta=True, delta_rebuild_interval="1s")
        await pair.ok("config/auto-tidy", enabled=True, interval_duration="1s", tidy_cert_store=True)
        await pair.active.periodic()                       # auto-tidy's clock starts
        await pair.ok("revoke", serial_number=(await pair.ok("issue/web", common_name="p.example.com"))
                      ["serial_number"])                   # a delta CRL is now due after 1 s
        pair.replicate()
        await asyncio.sleep(1.1)
        await pair.standby.periodic()
        await pair.standby.periodic()
        assert pair.view.writes_refused == []
        assert tidymod.runner(pair.standby.backend.pki_context).task is None  # type: ignore[attr-defined]
        state_before = await pair.store.get(crlmod.STATE_KEY)
        await pair.active.periodic()
        assert await pair.store.get(crlmod.STATE_KEY) != state_before          # the active did rebuild
    caplog.set_level("INFO")
    run(go())
    assert not [r for r in caplog.records if r.levelname in ("ERROR", "WARNING")]


def test_tidy_status_on_a_standby_shows_the_active_run() -> None:
    async def go() -> None:
        pair = Pair()
        await pair.setup_ca()
        assert (await pair.on_active(Operation.UPDATE, "tidy", tidy_cert_store=True)).status == 202
        ctx = pair.active.backend.pki_context  # type: ignore[attr-defined]
        task = tidymod.runner(ctx).task
        assert task is not None
        await task
        pair.replicate()
        standby = (await pair.standby.call(Operation.READ, "tidy-status")).data   # served by the standby itself
        assert pair.view.writes_refused == []
        active = (await pair.active.call(Operation.READ, "tidy-status")).data
        assert active["state"] == standby["state"] == "Finished"
        for key in ("time_started", "time_finished", "tidy_cert_store", "cert_store_deleted_count",
                    "internal_backend_uuid"):
            assert standby[key] == active[key], key
    run(go())


# --- every cache follows the active's writes -----------------------------------------------------------------------

def _ocsp_get(leaf: x509.Certificate, issuer: x509.Certificate) -> str:
    import base64
    der = ocsp.OCSPRequestBuilder().add_certificate(leaf, issuer, hashes.SHA1()).build().public_bytes(
        serialization.Encoding.DER)
    return "ocsp/" + base64.urlsafe_b64encode(der).decode()


def test_standby_caches_follow_the_active() -> None:
    async def go() -> None:
        pair = Pair()
        root = await pair.setup_ca()
        sb = pair.standby
        # Roles
        assert (await sb.call(Operation.READ, "roles/web")).data["ttl"] == 3600
        await pair.ok("roles/web", allow_any_name=True, key_type="ec", ttl="2h")
        assert (await sb.call(Operation.READ, "roles/web")).data["ttl"] == 7200
        await pair.on_active(Operation.DELETE, "roles/web")
        assert (await sb.call(Operation.READ, "roles/web")).status == 404
        await pair.ok("roles/web", allow_any_name=True, key_type="ec", ttl="1h")
        # Issuers: name and the default
        issuer_id = root["issuer_id"]
        assert (await sb.call(Operation.READ, f"issuer/{issuer_id}")).data["issuer_name"] == ""
        await pair.ok(f"issuer/{issuer_id}", issuer_name="first")
        assert (await sb.call(Operation.READ, "issuer/first")).data["issuer_id"] == issuer_id
        second = await pair.ok("issuers/generate/root/internal", common_name="Second Root", key_type="ec",
                               issuer_name="second")
        assert (await sb.call(Operation.READ, "issuer/default")).data["issuer_id"] == issuer_id
        await pair.ok("config/issuers", default="second")
        assert (await sb.call(Operation.READ, "issuer/default")).data["issuer_id"] == second["issuer_id"]
        assert sorted((await sb.call(Operation.LIST, "issuers")).data["keys"]) == sorted(
            [issuer_id, second["issuer_id"]])
        await pair.ok("config/issuers", default="first")
        # Keys
        key_id = root["key_id"]
        await pair.ok(f"key/{key_id}", key_name="root-key")
        assert (await sb.call(Operation.READ, "key/root-key")).data["key_id"] == key_id
        # config/urls reach the standby's no_store issuance
        await pair.ok("roles/eph", allow_any_name=True, key_type="ec", ttl="1h", no_store=True)
        leaf = await sb.call(Operation.UPDATE, "issue/eph", {"common_name": "u.example.com"})
        cert = x509.load_pem_x509_certificate(leaf.data["certificate"].encode())
        assert x509.AuthorityInformationAccess not in [type(e.value) for e in cert.extensions]
        await pair.ok("config/urls", issuing_certificates="http://ca.example/root")
        leaf = await sb.call(Operation.UPDATE, "issue/eph", {"common_name": "u.example.com"})
        cert = x509.load_pem_x509_certificate(leaf.data["certificate"].encode())
        aia = cert.extensions.get_extension_for_class(x509.AuthorityInformationAccess).value
        assert [d.access_location.value for d in aia] == ["http://ca.example/root"]
        # config/crl
        assert (await sb.call(Operation.READ, "config/crl")).data["expiry"] == "72h"
        await pair.ok("config/crl", expiry="48h")
        assert (await sb.call(Operation.READ, "config/crl")).data["expiry"] == "48h"
        # Revocation: OCSP answer cached as good, CRL read, then revoke on the active
        issued = await pair.ok("issue/web", common_name="o.example.com")
        leaf_cert = x509.load_pem_x509_certificate(issued["certificate"].encode())
        root_cert = x509.load_pem_x509_certificate(root["certificate"].encode())
        url = _ocsp_get(leaf_cert, root_cert)
        first = ocsp.load_der_ocsp_response((await sb.call(Operation.READ, url)).body)
        assert first.certificate_status is ocsp.OCSPCertStatus.GOOD
        crl_before = x509.load_der_x509_crl((await sb.call(Operation.READ, "crl")).body)
        assert crl_before.get_revoked_certificate_by_serial_number(leaf_cert.serial_number) is None
        await pair.ok("revoke", serial_number=issued["serial_number"])
        again = ocsp.load_der_ocsp_response((await sb.call(Operation.READ, url)).body)
        assert again.certificate_status is ocsp.OCSPCertStatus.REVOKED
        crl_after = x509.load_der_x509_crl((await sb.call(Operation.READ, "crl")).body)
        assert crl_after.get_revoked_certificate_by_serial_number(leaf_cert.serial_number) is not None
        listed = (await sb.call(Operation.LIST, "certs/revoked")).data["keys"]
        assert issued["serial_number"] in listed
    run(go())


class _SlowReads(InMemoryStorage):
    """A store whose next read of one key waits until released: the window in which raft applies a write."""

    def __init__(self) -> None:
        super().__init__()
        self.hold: str | None = None
        self.reached = asyncio.Event()
        self.release = asyncio.Event()

    async def get(self, key: str) -> bytes | None:
        value = await super().get(key)
        if key == self.hold:
            self.hold = None
            self.reached.set()
            await self.release.wait()
        return value


def test_an_invalidation_during_a_read_wins() -> None:
    """A standby reading a role (or issuer, or CRL config) while the invalidation for it arrives must not keep the
    old value it read."""
    async def go() -> None:
        store = _SlowReads()
        active = Node(build_backend(), store, StaticSystemView(max_ttl=10 * YEAR))
        standby_backend = build_backend()
        standby = Node(standby_backend, ReadOnlyView(store), StaticSystemView(replication=PERFORMANCE_STANDBY))
        for key, path, write, read_field, old, new in [
            ("role/web", "roles/web", {"allow_any_name": True, "ttl": "1h"}, "ttl", 3600, 7200),
            ("config/crl", "config/crl", {"expiry": "72h"}, "expiry", "72h", "48h"),
        ]:
            assert (await active.call(Operation.UPDATE, path, write)).status == 200
            store.hold = key
            reader = asyncio.create_task(standby.call(Operation.READ, path))
            await store.reached.wait()
            changed = dict(write, **({"ttl": "2h"} if read_field == "ttl" else {"expiry": "48h"}))
            assert (await active.call(Operation.UPDATE, path, changed)).status == 200
            standby_backend.invalidate(key)
            store.release.set()
            assert (await reader).data[read_field] == old     # it read before the write
            assert (await standby.call(Operation.READ, path)).data[read_field] == new
            store.reached.clear()
            store.release.clear()
    run(go())


def test_invalidation_of_revocation_state_reloads_the_index() -> None:
    async def go() -> None:
        pair = Pair()
        await pair.setup_ca()
        ctx = pair.standby.backend.pki_context  # type: ignore[attr-defined]
        rt = crlmod.runtime(ctx)
        await rt.ensure_index(pair.view)
        issued = await pair.ok("issue/web", common_name="i.example.com")
        await pair.ok("revoke", serial_number=issued["serial_number"])
        assert rt.index is None                                    # dropped by revoked/<serial>
        index = await rt.ensure_index(pair.view)
        serial = int(issued["serial_number"].replace(":", ""), 16)
        assert serial in index or serial in rt.pending.entries
        await rt.ensure_index(pair.view)
        pair.standby.backend.invalidate("crls/index/meta")
        assert rt.index is None
        epoch = rt.crl_epoch
        pair.standby.backend.invalidate("crls/config")
        assert rt.crl_epoch == epoch + 1 and not rt.crl_cache
    run(go())


# --- external CA ---------------------------------------------------------------------------------------------------

def test_external_ca_standby_forwards_ca_work_and_skips_periodic() -> None:
    async def go() -> None:
        pair = Pair(factory=build_external_ca)
        sb = pair.standby
        # Account creation registers at the CA: forwarded before any network I/O (no CA listens here).
        reply = await sb.call(Operation.UPDATE, "config/acme-account/le",
                              {"directory_url": "https://127.0.0.1:1/directory", "key_type": "ec-256"})
        assert forwarded(reply), reply
        for op, path in [(Operation.UPDATE, "role/web/new-order"), (Operation.READ, "role/web/order/0123abcd/status"),
                         (Operation.UPDATE, "config/acme-account/le/rotate-key"),
                         (Operation.UPDATE, "config/acme-account/le/import"),
                         (Operation.DELETE, "config/acme-account/le")]:
            assert forwarded(await sb.call(op, path, {})), path
        await sb.periodic()
        assert pair.view.writes_refused == []
        assert (await sb.call(Operation.LIST, "config/acme-account")).status == 404   # reads stay local
    run(go())


def test_read_only_text_survives_wrappers() -> None:
    from plugin.framework import Path, UserError, error_response

    async def wrapped(req: Request, d: Any) -> None:
        try:
            await req.storage.put("x", b"1")
        except StorageError as exc:
            raise RuntimeError("saving failed") from exc

    async def as_user_error(req: Request, d: Any) -> None:
        try:
            await req.storage.put("x", b"1")
        except StorageError as exc:
            raise UserError(f"could not store: {exc}") from None

    async def as_response(req: Request, d: Any) -> Any:
        try:
            await req.storage.put("x", b"1")
        except StorageError as exc:
            return error_response(f"failed to save: {exc}")

    async def grouped(req: Request, d: Any) -> None:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(req.storage.put("x", b"1"))

    backend = Backend([Path("a", {}, {Operation.UPDATE: wrapped}), Path("b", {}, {Operation.UPDATE: as_user_error}),
                       Path("c", {}, {Operation.UPDATE: as_response}), Path("d", {}, {Operation.UPDATE: grouped})])
    node = Node(backend, ReadOnlyView(InMemoryStorage()), StaticSystemView(replication=PERFORMANCE_STANDBY))
    for path in "abcd":
        out = run(backend.handle(Request(operation=Operation.UPDATE, path=path, storage=node.storage,
                                         system=node.system)))
        assert out.error is not None and READ_ONLY_TEXT in out.error.message, path
    from plugin.host import translate
    pb = translate.error_to_pb(out.error)
    assert pb.err_type == 0 and READ_ONLY_TEXT in pb.err_msg    # the SDK's unknown type keeps the text as is


def test_managed_key_invalidation_drops_loaded_signers() -> None:
    async def go() -> None:
        pair = Pair()
        root = await pair.setup_ca()
        await pair.standby.call(Operation.UPDATE, "issue/web", {"common_name": "s.example.com"})  # loads the signer
        ctx = pair.standby.backend.pki_context  # type: ignore[attr-defined]
        await ctx.issuers(pair.view).signing_key(await ctx.issuers(pair.view).resolve(root["issuer_id"]))
        assert ctx.signers
        pair.standby.backend.invalidate("managed-keys/hsm")
        assert not ctx.signers
    run(go())


def test_a_crl_the_standby_would_have_to_build_is_built_by_the_active() -> None:
    async def go() -> None:
        pair = Pair()
        await pair.setup_ca()
        await pair.store.delete(crlmod.STATE_KEY)     # as if the issuer's CRL had never been built
        pair.replicate()
        rt = crlmod.runtime(pair.standby.backend.pki_context)  # type: ignore[attr-defined]
        before = (rt.requested, rt.built, rt.index)
        assert forwarded(await pair.standby.call(Operation.READ, "crl"))
        assert (rt.requested, rt.built, rt.index) == before and pair.view.writes_refused == []
        assert (await pair.active.call(Operation.READ, "crl")).status == 200
    run(go())
