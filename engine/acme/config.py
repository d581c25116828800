"""`config/acme`: whether the mount serves ACME and under which policy, stored as the built-in stores it."""
from __future__ import annotations

import ipaddress
import os
from dataclasses import asdict, dataclass, field
from typing import Any

from engine.storage import Storage, get_json, put_json

CONFIG_KEY = "config/acme"
EAB_POLICIES = ("not-required", "new-account-required", "always-required")
DEFAULT_MAX_TTL = 90 * 86400     # Vault's default for config/acme max_ttl
DISABLE_ENV_VARS = ("BAO_DISABLE_PUBLIC_ACME", "VAULT_DISABLE_PUBLIC_ACME")


@dataclass
class AcmeConfig:
    enabled: bool = False
    allowed_issuers: list[str] = field(default_factory=lambda: ["*"])
    allowed_roles: list[str] = field(default_factory=lambda: ["*"])
    allow_role_ext_key_usage: bool = False
    default_directory_policy: str = "sign-verbatim"
    dns_resolver: str = ""
    eab_policy: str = "not-required"
    max_ttl: int = DEFAULT_MAX_TTL
    # Beyond the built-in (README): profile name -> role name, advertised in the directory's meta.profiles.
    profiles: dict[str, str] = field(default_factory=dict)
    # Beyond the built-in (README): RFC 9773 renewalInfo in the directory; off by default.
    enable_ari: bool = False

    def to_response(self) -> dict[str, Any]:
        data = asdict(self)
        return data

    @classmethod
    def from_storage(cls, raw: dict[str, Any] | None) -> "AcmeConfig":
        if not raw:
            return cls()
        known = {k: raw[k] for k in cls.__dataclass_fields__ if k in raw}
        # The built-in stores these two under other JSON names; accept both so a migrated store reads.
        if "allowed_issuers=" in raw and "allowed_issuers" not in known:
            known["allowed_issuers"] = raw["allowed_issuers="]
        if "eab_policy_name" in raw and "eab_policy" not in known:
            known["eab_policy"] = raw["eab_policy_name"]
        return cls(**known)

    def allows_any_role(self) -> bool:
        return self.allowed_roles == ["*"]

    def allows_any_issuer(self) -> bool:
        return self.allowed_issuers == ["*"]


async def read_config(storage: Storage) -> AcmeConfig:
    return AcmeConfig.from_storage(await get_json(storage, CONFIG_KEY))


async def write_config(storage: Storage, cfg: AcmeConfig) -> None:
    await put_json(storage, CONFIG_KEY, asdict(cfg))


def public_acme_disabled() -> tuple[bool, str]:
    """(disabled, warning) from BAO_DISABLE_PUBLIC_ACME / VAULT_DISABLE_PUBLIC_ACME; an unparsable value disables."""
    for name in DISABLE_ENV_VARS:
        raw = os.environ.get(name)
        if raw is None:
            continue
        value = raw.strip().lower()
        if value in ("1", "t", "true"):
            return True, ""
        if value in ("0", "f", "false"):
            continue
        return True, f"failed parsing environment variable {name}: invalid syntax"
    return False, ""


def acme_disabled(cfg: AcmeConfig) -> bool:
    if not cfg.enabled:
        return True
    disabled, _ = public_acme_disabled()
    return disabled and cfg.eab_policy != "always-required"


def directory_policy_kind(policy: str) -> tuple[str, str]:
    """('forbid'|'sign-verbatim'|'role', role name) or ValueError with the built-in's wording."""
    if policy in ("forbid", "sign-verbatim"):
        return policy, ""
    if policy.startswith("role:"):
        if len(policy) == 5:
            raise ValueError(f"no role specified by policy {policy}")
        return "role", policy[5:]
    raise ValueError(f"string {policy} not a valid Default Directory Policy")


def check_dns_resolver(value: str) -> None:
    host, sep, port = value.rpartition(":")
    if not sep or not port:
        raise ValueError(f"failed to parse DNS resolver address: address {value}: missing port in address")
    host = host.strip("[]")
    if not host:
        raise ValueError("failed to parse DNS resolver address: got empty address")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise ValueError("failed to parse DNS resolver address: expected IPv4/IPv6 address, likely got hostname") \
            from None
