"""Assembles the PKI backend: every path module's paths, Vault's special paths, and the lifecycle hooks."""
from __future__ import annotations

import importlib
from typing import Callable

from engine.context import PkiContext
from plugin.framework import Backend, Path, Request, SpecialPaths

BACKEND_HELP = (
    "The PKI backend issues X.509 certificates from CAs it generates or imports: configure an issuer "
    "(root/generate, intermediate/generate + intermediate/set-signed, or config/ca), define roles, then "
    "issue or sign certificates."
)

# Path modules in routing order (first match wins). Fixed routes such as `cert/ca` must come before the
# `cert/:serial` pattern, so CA reading (engine.api.ca_read) precedes the certificate store module.
PATH_MODULES: list[str] = [
    "engine.api.managed_keys",
    "engine.api.config",
    "engine.api.keys",
    "engine.api.crl_sign",
    "engine.api.issuers",
    "engine.api.ca",
    "engine.api.ca_read",
    "engine.api.roles",
    "engine.api.issue",
    "engine.api.cel_roles",
    "engine.api.certs",
    "engine.api.revoke",
    "engine.api.crl",
    "engine.api.ocsp",
    "engine.api.tidy",
    "engine.acme.config_api",
    "engine.acme.api",
]

_ACME_PREFIXES = ("", "issuer/+/", "roles/+/", "issuer/+/roles/+/")
_ACME_UNAUTH = ("directory", "new-nonce", "new-account", "new-order", "revoke-cert", "key-change", "account/+",
                "authorization/+", "challenge/+/+", "orders", "order/+", "order/+/finalize", "order/+/cert",
                "renewal-info", "renewal-info/+")


def special_paths() -> SpecialPaths:
    """Exactly the built-in engine's declarations (seal-wrap extended with managed-key storage)."""
    unauthenticated = [
        "cert/*", "ca/pem", "ca_chain", "ca", "crl/delta", "crl/delta/pem", "crl/pem", "crl",
        "issuer/+/crl/der", "issuer/+/crl/pem", "issuer/+/crl", "issuer/+/crl/delta/der", "issuer/+/crl/delta/pem",
        "issuer/+/crl/delta", "issuer/+/pem", "issuer/+/der", "issuer/+/json",
        "issuers/",   # LIST requests arrive with a trailing slash
        "ocsp", "ocsp/*",
    ]
    unauthenticated += [f"{prefix}acme/{suffix}" for prefix in _ACME_PREFIXES for suffix in _ACME_UNAUTH]
    return SpecialPaths(
        unauthenticated=unauthenticated,
        root=["root", "root/sign-self-issued"],
        local_storage=["revoked/", "delta-wal/", "crl", "config/cluster", "crls/", "certs/", "acme/"],
        seal_wrap_storage=["config/ca_bundle", "config/ca_bundle.bak", "config/key/", "managed-keys/"],
        # Vault passes a POSTed application/ocsp-request body only on binary paths (as the built-in declares).
        binary=["ocsp", "ocsp/*"],
    )


def collect_paths(ctx: PkiContext, modules: list[str] | None = None) -> list[Path]:
    paths: list[Path] = []
    for name in modules or PATH_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            # A module still being written by another engineer must not break the others.
            if exc.name == name:
                continue
            raise
        factory: Callable[[PkiContext], list[Path]] = getattr(module, "paths")
        paths.extend(factory(ctx))
    return paths


def build_backend(ctx: PkiContext | None = None) -> Backend:
    ctx = ctx or PkiContext()

    async def initialize(req: Request) -> None:
        for hook in ctx.initialize_hooks:
            await hook(req)

    async def periodic(req: Request) -> None:
        for hook in ctx.periodic_hooks:
            await hook(req)

    async def clean() -> None:
        ctx.clear()

    backend = Backend(
        collect_paths(ctx),
        help=BACKEND_HELP,
        special_paths=special_paths(),
        periodic=periodic,
        secret_types=ctx.secret_types,
        invalidate=ctx.invalidate,
        initialize=initialize,
        clean=clean,
    )
    # Lease types path modules declared (e.g. issue's "pki" leases) while their paths were collected.
    backend.secret_types.update(ctx.extra.get("secret_types", {}))
    backend.pki_context = ctx  # type: ignore[attr-defined]  # tests and other modules reach the caches here
    return backend
