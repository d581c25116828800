"""Routes framework requests to paths: field validation, existence checks, help, errors, periodic work."""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Awaitable, Callable, Iterable, Sequence

from plugin.framework import openapi
from plugin.framework.errors import (
    InternalError,
    ReadOnlyError,
    UnsupportedOperationError,
    UnsupportedPathError,
    UserError,
    VaultError,
    forwarding_error,
    forwarding_message,
)
from plugin.framework.fields import FieldData, FieldError
from plugin.framework.path import Path
from plugin.framework.request import Operation, Request, Response, error_response

ROUTE_CACHE_SIZE = 4096

log = logging.getLogger("python-pki.framework")

PeriodicFunc = Callable[[Request], Awaitable[None]]
SecretHandler = Callable[[Request], Awaitable[Response | None]]


@dataclass
class SpecialPaths:
    root: list[str] = field(default_factory=list)
    unauthenticated: list[str] = field(default_factory=list)
    local_storage: list[str] = field(default_factory=list)
    seal_wrap_storage: list[str] = field(default_factory=list)
    allow_snapshot_read: list[str] = field(default_factory=list)
    # HashiCorp Vault (>= 1.16) hands these paths' non-JSON request bodies to the plugin (`http_raw_body`);
    # OpenBao ignores the list.
    binary: list[str] = field(default_factory=list)


@dataclass
class SecretType:
    """A kind of lease the backend hands out; renew/revoke arrive with internal_data['secret_type']."""

    name: str
    revoke: SecretHandler
    renew: SecretHandler | None = None


@dataclass
class Outcome:
    """What one request produced: a response, or an error for the wire layer to encode."""

    response: Response | None = None
    error: VaultError | None = None


PERFORMANCE_STANDBY = 1 << 14   # consts.ReplicationPerformanceStandby in the server's replication state


async def is_performance_standby(system: object) -> bool:
    """Whether this node serves from read-only storage (an OpenBao >= 2.5 standby), from the SystemView."""
    state = getattr(system, "replication_state", None)
    return state is not None and bool(await state() & PERFORMANCE_STANDBY)


async def forward_from_standby(req: Request) -> None:
    """`forward_performance_standby` for one operation of a path whose other operations are served locally."""
    if await is_performance_standby(req.system):
        raise ReadOnlyError()


class Backend:
    def __init__(
        self,
        paths: Sequence[Path],
        *,
        help: str = "",
        special_paths: SpecialPaths | None = None,
        periodic: PeriodicFunc | None = None,
        secret_types: Iterable[SecretType] = (),
        invalidate: Callable[[str], None] | None = None,
        initialize: PeriodicFunc | None = None,
        clean: Callable[[], Awaitable[None]] | None = None,
        backend_type: int = 1,   # logical.TypeLogical: a secrets engine
    ) -> None:
        self.paths = list(paths)
        self._routes: dict[str, tuple[Path, dict[str, str]]] = {}
        self.help = help
        self.special_paths = special_paths or SpecialPaths()
        self.periodic = periodic
        self.secret_types = {s.name: s for s in secret_types}
        self._invalidate = invalidate
        self._initialize = initialize
        self._clean = clean
        self.backend_type = backend_type

    def route(self, path: str) -> tuple[Path, dict[str, str]] | None:
        # Clients repeat the same few paths, and a write is routed twice (existence check, then request): a
        # scan of every pattern per route was the framework's largest cost.
        hit = self._routes.get(path)
        if hit is not None:
            return hit[0], dict(hit[1])
        for candidate in self.paths:
            m = candidate.regex.fullmatch(path)
            if m:
                if len(self._routes) >= ROUTE_CACHE_SIZE:
                    self._routes.clear()
                captures = {k: v for k, v in m.groupdict().items() if v is not None}
                self._routes[path] = (candidate, captures)
                return candidate, dict(captures)
        return None

    async def handle(self, req: Request) -> Outcome:
        try:
            resp = await self._dispatch(req)
        except Exception as exc:  # noqa: BLE001 - the one place unknown failures become a 500
            # A read-only refusal must reach the server with its text, whatever wrapped it: the server then
            # replays the request on the active node. It is expected on standbys, so it is not logged.
            forward = forwarding_error(exc)
            if forward is not None:
                return Outcome(error=forward)
            if isinstance(exc, UserError):
                return Outcome(response=error_response(exc.message))
            if isinstance(exc, VaultError):
                return Outcome(error=exc)
            log.exception("internal error handling %s %s", req.operation.value, req.path)
            return Outcome(error=InternalError("internal error"))
        if resp is not None and resp.is_error:
            forward = forwarding_message(str(resp.data["error"]))   # type: ignore[index]
            if forward is not None:
                return Outcome(error=forward)
        return Outcome(response=resp)

    async def _dispatch(self, req: Request) -> Response | None:
        op = req.operation
        if op is Operation.ROLLBACK:
            # Periodic work writes (CRLs, tidy, orders): only the active node can, as with the built-in engine.
            if self.periodic is not None and not await is_performance_standby(req.system):
                await self.periodic(req)
            return None
        if op in (Operation.RENEW, Operation.REVOKE):
            return await self._handle_secret(req)
        if op is Operation.RESOLVE_PATH:
            # Answered from the router alone: an empty reply leaves the path as the client sent it.
            return None
        if op is Operation.HELP:
            return self._help(req)

        routed = self.route(req.path)
        if routed is None:
            raise UnsupportedPathError()
        path, captures = routed
        handler = path.handler_for(op)
        if handler is None:
            raise UnsupportedOperationError()
        if path.forward_performance_standby and await is_performance_standby(req.system):
            # Before any parsing or work, so the replay on the active is the only run (ForwardPerformanceStandby).
            raise ReadOnlyError()
        raw = dict(req.data or {})
        raw.update(captures)   # URL captures win over same-named body keys, as in Vault
        fields = FieldData(raw=raw, schema=dict(path.fields))
        try:
            fields.validate()
        except FieldError as exc:
            return error_response(f"Field validation failed: {exc}")
        req.match = captures
        resp = await handler(req, fields)
        if resp is None:
            # Vault warns only on a response object: a 204 stays a 204.
            return None
        unknown = [] if path.takes_raw_body else [k for k in fields.unknown() if k not in captures]
        if unknown:
            resp.add_warning(f"Endpoint ignored these unrecognized parameters: [{' '.join(unknown)}]")
        replaced = sorted(k for k in captures if (req.data or {}).get(k) is not None)
        if replaced:
            resp.add_warning("Endpoint replaced the value of these parameters with the values captured from the "
                             f"endpoint's path: [{' '.join(replaced)}]")
        return resp

    async def existence_check(self, req: Request) -> tuple[bool, bool]:
        """(check_found, exists). Paths without a check make the server send update, never create."""
        routed = self.route(req.path)
        if routed is None:
            raise UnsupportedPathError()
        path, captures = routed
        if path.exists is None:
            return False, False
        raw = dict(req.data or {})
        raw.update(captures)
        req.match = captures
        return True, await path.exists(req, FieldData(raw=raw, schema=dict(path.fields)))

    async def _handle_secret(self, req: Request) -> Response | None:
        secret = req.secret
        kind = (secret.internal_data.get("secret_type") if secret else None) or ""
        stype = self.secret_types.get(kind)
        if stype is None:
            raise UnsupportedOperationError(f"unknown secret type {kind!r}")
        if req.operation is Operation.REVOKE:
            return await stype.revoke(req)
        if stype.renew is None:
            raise UnsupportedOperationError("lease is not renewable")
        return await stype.renew(req)

    def _help(self, req: Request) -> Response:
        # The server's prefix for operationIds without hints; it sends none for a mount's `?help=1`, and the
        # built-in engine then has none either.
        prefix = str((req.data or {}).get("requestResponsePrefix") or "")
        if req.path == "":
            return Response(data={
                "help": openapi.root_help(self),
                "see_also": [],
                "openapi": openapi.document(self, prefix),
            })
        routed = self.route(req.path)
        if routed is None:
            raise UnsupportedPathError()
        path, _ = routed
        return Response(data={
            "help": openapi.path_help(path, req.path),
            "see_also": [],
            "openapi": openapi.document(self, prefix, only=path),
        })

    def invalidate(self, key: str) -> None:
        if self._invalidate is not None:
            self._invalidate(key)

    async def initialize(self, req: Request) -> None:
        if self._initialize is not None:
            await self._initialize(req)

    async def cleanup(self) -> None:
        if self._clean is not None:
            await self._clean()
