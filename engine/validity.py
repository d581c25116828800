"""NotBefore/NotAfter of issued certificates: request ttl / not_after, role limits, mount limits, issuer expiry.

Order and messages follow Vault: ttl = request, else role ttl, else mount default; max = role max_ttl, else
mount max; a ttl above max is capped with a warning; an explicit not_after bypasses both; finally the
issuer's leaf_not_after_behavior decides what happens past the issuer's own NotAfter.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from engine.roles import Role, parse_rfc3339
from engine.x509util import go_duration, rfc3339_nano  # noqa: F401 - re-exported for callers of validity
from plugin.framework import UserError

DEFAULT_BACKDATE = 30


@dataclass
class ValidityRequest:
    ttl: int = 0                       # request ttl in seconds (0 = not given)
    not_after: str = ""                # request not_after (RFC 3339) or ""
    not_after_supplied: bool = False
    not_before: str = ""               # request not_before (RFC 3339) or ""
    not_before_supplied: bool = False
    honour_not_before: bool = True     # false on sign paths: Vault only back-dates there


@dataclass
class Limits:
    default_ttl: int                   # mount default lease TTL (seconds)
    max_ttl: int                       # mount max lease TTL (seconds)
    issuer_not_after: dt.datetime | None = None
    leaf_not_after_behavior: str = "err"


@dataclass
class Validity:
    not_before: dt.datetime
    not_after: dt.datetime
    warnings: list[str] = field(default_factory=list)


def _not_before(role: Role, req: ValidityRequest, now: dt.datetime) -> dt.datetime | None:
    explicit = role.not_before
    if not explicit and req.not_before_supplied:
        bound = role.not_before_bound
        if bound == "forbid":
            raise UserError(f"not_before_bound is set to {bound}. not_before cannot be provided.")
        if bound == "duration":
            requested = parse_rfc3339(req.not_before)
            backdate = dt.timedelta(seconds=role.not_before_duration)
            if requested < now - backdate:
                raise UserError(
                    f"not_before_bound is set to {bound}. Cannot satisfy request as it would result in notBefore "
                    f"of {rfc3339_nano(requested)} that is older than the allowed not_before_duration of "
                    f"{go_duration(role.not_before_duration)}")
        explicit = req.not_before
    return parse_rfc3339(explicit) if explicit else None


def compute_validity(role: Role, req: ValidityRequest, limits: Limits,
                     now: dt.datetime | None = None) -> Validity:
    now = now or dt.datetime.now(dt.timezone.utc)
    warnings: list[str] = []
    explicit_nb = _not_before(role, req, now)

    bound = role.not_after_bound or "permit"
    timestamp_bound: dt.datetime | None = None
    if bound not in ("permit", "forbid", "ttl-limited"):
        timestamp_bound = parse_rfc3339(bound)

    not_after_text = role.not_after
    requested_not_after: dt.datetime | None = None
    if not not_after_text and req.not_after_supplied and req.not_after:
        if bound == "forbid":
            raise UserError(f"not_after_bound is set to {bound}. not_after cannot be provided.")
        not_after_text = req.not_after
        requested_not_after = parse_rfc3339(not_after_text)

    ttl = req.ttl
    if ttl > 0 and not_after_text:
        raise UserError("Either ttl or not_after should be provided. Both should not be provided in the same request.")
    if ttl == 0 and role.ttl > 0:
        ttl = role.ttl
    max_ttl = role.max_ttl if role.max_ttl > 0 else 0
    if ttl == 0:
        ttl = limits.default_ttl
    if max_ttl == 0:
        max_ttl = limits.max_ttl
    if ttl > max_ttl:
        warnings.append(f'TTL "{go_duration(ttl)}" is longer than permitted maxTTL "{go_duration(max_ttl)}", '
                        "so maxTTL is being used")
        ttl = max_ttl

    if bound == "ttl-limited" and requested_not_after is not None and \
            requested_not_after > now + dt.timedelta(seconds=ttl):
        raise UserError(f"not_after_bound is set to {bound}. Cannot satisfy request as that would result in notAfter "
                        f"of {rfc3339_nano(requested_not_after)} that is beyond the TTL of {go_duration(ttl)}")

    not_after = parse_rfc3339(not_after_text) if not_after_text else now + dt.timedelta(seconds=ttl)

    ca_end = limits.issuer_not_after
    if ca_end is not None and not_after > ca_end:
        behavior = limits.leaf_not_after_behavior
        if behavior == "permit":
            pass
        elif behavior == "truncate":
            if not_after < now:
                raise UserError(f"cannot satisfy request, as NotAfter date {rfc3339_nano(not_after)} is in the past")
            not_after = ca_end
        else:
            raise UserError(
                f"cannot satisfy request, as TTL would result in notAfter of {rfc3339_nano(not_after)} that is "
                f"beyond the expiration of the CA certificate at {rfc3339_nano(ca_end)}")

    if timestamp_bound is not None and not_after > timestamp_bound:
        raise UserError(f"not_after_bound is set to {bound}. Cannot statisfy request as that would result in notAfter "
                        f"of {rfc3339_nano(not_after)} that is beyond the maximum timestamp of "
                        f"{rfc3339_nano(timestamp_bound)}")

    backdate = role.not_before_duration if role.not_before_duration > 0 else DEFAULT_BACKDATE
    if explicit_nb is not None and req.honour_not_before:
        not_before = explicit_nb
    else:
        not_before = now - dt.timedelta(seconds=backdate)
    check_order(not_before, not_after)
    return Validity(not_before=not_before, not_after=not_after, warnings=warnings)


def check_order(not_before: dt.datetime, not_after: dt.datetime) -> None:
    """Vault's refusal of a validity window that is empty or backwards (leaves and CA certificates alike)."""
    if not_before > not_after:
        raise UserError(f"The certificate's Not Before ({rfc3339_nano(not_before)}) is later than the certificate's "
                        f"Not After ({rfc3339_nano(not_after)})")
    if not_before == not_after:
        raise UserError(f"The certificate's Not Before ({rfc3339_nano(not_before)}) is equal to the certificate's "
                        f"Not After ({rfc3339_nano(not_after)})")
