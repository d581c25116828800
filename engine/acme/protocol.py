"""The request/answer plumbing every ACME path shares: 404 when ACME is off, the directory, JWS checks, nonces,
and the raw JSON / problem+json answers with Replay-Nonce, Link and Location headers."""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable

from engine.acme.config import CONFIG_KEY, AcmeConfig, acme_disabled, read_config
from engine.acme.directory import Directory, resolve
from engine.acme.errors import AcmeProblem, problem
from engine.acme.jws import ACCOUNT_ALGS, SignedRequest, check_public_key, thumbprint
from engine.acme.nonces import NonceService
from engine.acme.records import Account, AcmeStore
from engine.acme.validation import Validator
from engine.context import PkiContext
from plugin.framework import FieldData, Request, Response

JSON = "application/json"
CONFIG_TTL = 5.0   # a safety net only: writes and replicated changes invalidate the copy at once
PROBLEM = "application/problem+json"


@dataclass
class AcmeState:
    """Per mount (one PkiContext per mount): nothing here is shared between mounts."""

    nonces: NonceService = field(default_factory=NonceService)
    validator: Validator = field(default_factory=Validator)
    busy_orders: set[str] = field(default_factory=set)
    config: AcmeConfig | None = None
    config_read_at: float = 0.0

    async def current_config(self, storage: Any) -> AcmeConfig:
        """config/acme, read again after a write or invalidation of it, and at least every CONFIG_TTL seconds."""
        if self.config is None or time.monotonic() - self.config_read_at > CONFIG_TTL:
            self.config, self.config_read_at = await read_config(storage), time.monotonic()
        return self.config

    def invalidate(self, key: str) -> None:
        if key == CONFIG_KEY:
            self.config = None


def acme_state(ctx: PkiContext) -> AcmeState:
    state = ctx.extra.get("acme_state")
    if state is None:
        state = ctx.extra["acme_state"] = AcmeState()
        ctx.invalidation_hooks.append(state.invalidate)
    return state


@dataclass
class Answer:
    """What an ACME handler returns: a JSON object (or raw bytes), status and headers."""

    body: dict[str, Any] | bytes | None = None
    status: int = 200
    content_type: str = JSON
    headers: dict[str, list[str]] = field(default_factory=dict)


@dataclass
class Call:
    req: Request
    d: FieldData
    directory: Directory
    store: AcmeStore
    jws: SignedRequest | None = None
    jwk: dict[str, Any] = field(default_factory=dict)
    account: Account | None = None
    payload: dict[str, Any] | None = None
    ctx: PkiContext | None = None
    state: AcmeState | None = None

    @property
    def thumbprint(self) -> str:
        return thumbprint(self.jwk)

    @property
    def kid(self) -> str:
        return self.account.kid if self.account else ""

    def account_url(self, kid: str) -> str:
        return self.directory.url("account", kid)


def _raw(answer: Answer) -> Response:
    data: dict[str, Any] = {"http_status_code": answer.status, "http_content_type": answer.content_type}
    if isinstance(answer.body, bytes):
        data["http_raw_body"] = answer.body
    elif answer.body is not None:
        data["http_raw_body"] = json.dumps(answer.body).encode()
    return Response(data=data, headers=answer.headers)


def not_found() -> Response:
    # The built-in's "ACME is disabled" answer: a bare 404.
    return Response(data={"http_status_code": 404, "http_content_type": JSON})


def problem_answer(p: AcmeProblem) -> Answer:
    return Answer(body=p.body(), status=p.status, content_type=PROBLEM)


Handler = Callable[[Call], Awaitable[Answer]]


def enforce_eab_for_existing(cfg: AcmeConfig, account: Account) -> None:
    if cfg.eab_policy == "always-required" and not account.eab_id:
        raise problem("externalAccountRequired", prefix="account was created without an external account binding")


def unsigned(ctx: PkiContext, handler: Handler) -> Callable[..., Awaitable[Response]]:
    """Directory, new-nonce, renewal-info: no JWS."""
    state = acme_state(ctx)

    async def run(req: Request, d: FieldData) -> Response:
        cfg = await state.current_config(req.storage)
        if acme_disabled(cfg):
            return not_found()
        directory: Directory | None = None
        try:
            directory = await resolve(ctx, req, cfg)
            answer = await handler(Call(req, d, directory, AcmeStore(req.storage), ctx=ctx, state=state))
        except AcmeProblem as p:
            answer = problem_answer(p)
            # Beyond the built-in: RFC 8555 section 6.5 wants a fresh nonce on error answers too.
            answer.headers["Replay-Nonce"] = [state.nonces.get()]
            if directory is not None:
                answer.headers.setdefault("Link", [directory.link_index()])
        return _raw(answer)
    return run


def signed(ctx: PkiContext, handler: Handler, *, account_required: bool = True) -> Callable[..., Awaitable[Response]]:
    """Every POST: the JWS checked in the built-in's order (header, key, nonce, url, signature)."""
    state = acme_state(ctx)

    async def run(req: Request, d: FieldData) -> Response:
        cfg = await state.current_config(req.storage)
        if acme_disabled(cfg):
            return not_found()
        directory: Directory | None = None
        try:
            directory = await resolve(ctx, req, cfg)
            call = await _authenticate(state, Call(req, d, directory, AcmeStore(req.storage), ctx=ctx, state=state))
            if account_required:
                if call.account is None:
                    raise problem("malformed", prefix="cannot process request without a 'kid'")
                enforce_eab_for_existing(cfg, call.account)
                if call.account.status != "valid":
                    raise problem("unauthorized", suffix=f"account in status: {call.account.status}")
            answer = await handler(call)
        except AcmeProblem as p:
            answer = problem_answer(p)
        answer.headers.setdefault("Replay-Nonce", [state.nonces.get()])
        if directory is not None:
            links = answer.headers.setdefault("Link", [])
            if directory.link_index() not in links:
                links.append(directory.link_index())
        return _raw(answer)
    return run


async def _authenticate(state: AcmeState, call: Call) -> Call:
    data = call.req.data or {}
    jws = SignedRequest.from_data(data)
    header = jws.header
    kid, jwk = header.get("kid"), header.get("jwk")
    if kid and jwk:
        raise problem("malformed", prefix="invalid header: got both account 'kid' and 'jwk' in the same message; "
                                          "expected only one")
    if not kid and not jwk:
        raise problem("malformed", prefix="invalid header: got neither required fields of 'kid' nor 'jwk'")
    if jws.alg not in ACCOUNT_ALGS:
        raise problem("malformed", prefix="invalid header: unexpected value for 'algo'")
    if kid:
        if not isinstance(kid, str):
            raise problem("malformed", prefix="invalid header: 'kid' is not a string")
        account = await call.store.account(kid.rstrip("/").rsplit("/", 1)[-1])
        if account is None:
            raise AcmeProblem("accountDoesNotExist", prefix="error loading account: account not found")
        if account.acme_directory != call.directory.directory:
            raise problem("malformed", suffix="account part of different ACME directory path")
        call.account, call.jwk = account, account.jwk
    else:
        call.jwk = check_public_key(jwk)
    # Redeemed before the url check and the signature, as the built-in does: a replay costs nothing more.
    if not state.nonces.redeem(str(header.get("nonce") or "")):
        raise problem("badNonce", prefix="invalid or reused nonce")
    url = header.get("url")
    if not url:
        raise problem("malformed", prefix="missing required parameter 'url' in 'protected'")
    expected = call.directory.request_url(call.req.path)
    if url != expected:
        raise problem("unauthorized", prefix=f"invalid value for 'url' in 'protected': got '{url}' expected "
                                             f"'{expected}'")
    call.payload = jws.verify(call.jwk)
    call.jws = jws
    return call
