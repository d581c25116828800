"""Lifetimes: request ttl, role ttl/max_ttl, mount limits, not_after, not_before rules, issuer expiry behaviours."""
from __future__ import annotations

import datetime as dt

import pytest

from engine.roles import Role
from engine.validity import Limits, ValidityRequest, compute_validity, go_duration, rfc3339_nano
from plugin.framework import UserError
from test_issue_fixtures import DAY, load_cert, new_env

NOW = dt.datetime(2026, 6, 1, 12, 0, 0, tzinfo=dt.timezone.utc)
H = 3600


def life(role: Role, req: ValidityRequest, limits: Limits | None = None):
    return compute_validity(role, req, limits or Limits(default_ttl=768 * H, max_ttl=768 * H), now=NOW)


@pytest.mark.parametrize("seconds,text", [(0, "0s"), (45, "45s"), (90, "1m30s"), (3600, "1h0m0s"),
                                          (768 * H, "768h0m0s")])
def test_go_duration(seconds, text):
    assert go_duration(seconds) == text


@pytest.mark.parametrize("req_ttl,role_ttl,role_max,mount_default,mount_max,expected,warned", [
    (0, 0, 0, 768 * H, 768 * H, 768 * H, False),        # mount default
    (0, 2 * H, 0, 768 * H, 768 * H, 2 * H, False),      # role ttl
    (H, 2 * H, 0, 768 * H, 768 * H, H, False),          # request wins
    (3 * H, 0, 2 * H, 768 * H, 768 * H, 2 * H, True),   # capped by role max_ttl
    (0, 0, 0, 768 * H, 24 * H, 24 * H, True),           # default above the mount max
    (48 * H, 0, 0, 768 * H, 24 * H, 24 * H, True),      # capped by the mount max
])
def test_ttl_resolution(req_ttl, role_ttl, role_max, mount_default, mount_max, expected, warned):
    v = life(Role(ttl=role_ttl, max_ttl=role_max), ValidityRequest(ttl=req_ttl), Limits(mount_default, mount_max))
    assert v.not_after == NOW + dt.timedelta(seconds=expected)
    assert v.not_before == NOW - dt.timedelta(seconds=30)
    assert bool(v.warnings) is warned


def test_cap_warning_text():
    v = life(Role(max_ttl=H), ValidityRequest(ttl=2 * H))
    assert v.warnings == ['TTL "2h0m0s" is longer than permitted maxTTL "1h0m0s", so maxTTL is being used']


def test_not_after_bypasses_ttl_limits():
    v = life(Role(max_ttl=H), ValidityRequest(not_after="2030-01-01T00:00:00Z", not_after_supplied=True))
    assert v.not_after == dt.datetime(2030, 1, 1, tzinfo=dt.timezone.utc)
    # Vault still computes (and warns about) the capped ttl it then does not use.
    assert v.warnings == ['TTL "768h0m0s" is longer than permitted maxTTL "1h0m0s", so maxTTL is being used']


@pytest.mark.parametrize("behavior", ["err", "truncate", "permit"])
def test_issuer_expiry_behaviours(behavior):
    ca_end = NOW + dt.timedelta(hours=10)
    limits = Limits(768 * H, 768 * H, issuer_not_after=ca_end, leaf_not_after_behavior=behavior)
    if behavior == "err":
        with pytest.raises(UserError) as exc:
            life(Role(), ValidityRequest(ttl=24 * H), limits)
        assert exc.value.message == (
            f"cannot satisfy request, as TTL would result in notAfter of {rfc3339_nano(NOW + dt.timedelta(hours=24))}"
            f" that is beyond the expiration of the CA certificate at {rfc3339_nano(ca_end)}")
    else:
        v = life(Role(), ValidityRequest(ttl=24 * H), limits)
        assert v.not_after == (ca_end if behavior == "truncate" else NOW + dt.timedelta(hours=24))


@pytest.mark.parametrize("bound,not_after,error", [
    ("forbid", "2026-06-02T00:00:00Z", "not_after_bound is set to forbid. not_after cannot be provided."),
    ("ttl-limited", "2026-07-01T00:00:00Z", "not_after_bound is set to ttl-limited. Cannot satisfy request"),
    ("2026-06-15T00:00:00Z", "2026-07-01T00:00:00Z", "that is beyond the maximum timestamp of"),
    ("ttl-limited", "2026-06-01T13:00:00Z", None),
])
def test_not_after_bound(bound, not_after, error):
    role = Role(not_after_bound=bound, max_ttl=2 * H)
    req = ValidityRequest(not_after=not_after, not_after_supplied=True)
    if error:
        with pytest.raises(UserError, match=error.split(".")[0]):
            life(role, req)
    else:
        assert life(role, req).not_after == dt.datetime(2026, 6, 1, 13, tzinfo=dt.timezone.utc)


def test_role_not_after_ignores_request_and_conflicts_with_ttl():
    role = Role(not_after="2027-01-01T00:00:00Z")
    assert life(role, ValidityRequest(not_after="2026-07-01T00:00:00Z", not_after_supplied=True)).not_after == \
        dt.datetime(2027, 1, 1, tzinfo=dt.timezone.utc)
    with pytest.raises(UserError, match="Either ttl or not_after"):
        life(role, ValidityRequest(ttl=H))


def test_not_before_rules():
    explicit = ValidityRequest(not_before="2026-05-01T00:00:00Z", not_before_supplied=True)
    assert life(Role(), explicit).not_before == dt.datetime(2026, 5, 1, tzinfo=dt.timezone.utc)
    # Sign paths only back-date.
    signed = ValidityRequest(not_before="2026-05-01T00:00:00Z", not_before_supplied=True, honour_not_before=False)
    assert life(Role(), signed).not_before == NOW - dt.timedelta(seconds=30)
    with pytest.raises(UserError, match="not_before cannot be provided"):
        life(Role(not_before_bound="forbid"), explicit)
    with pytest.raises(UserError, match="older than the allowed not_before_duration of 30s"):
        life(Role(not_before_bound="duration"), explicit)
    assert life(Role(not_before_duration=600), ValidityRequest()).not_before == NOW - dt.timedelta(minutes=10)
    with pytest.raises(UserError, match="is later than the certificate's Not After"):
        life(Role(), ValidityRequest(not_before="2027-01-01T00:00:00Z", not_before_supplied=True, ttl=H))


def test_first_issue_from_default_length_root_fails_like_builtin():
    """A root valid exactly the mount default (768h) cannot issue a default-TTL leaf under err behaviour."""
    env = new_env()
    env.system.default_ttl = env.system.max_ttl = 768 * H
    env.add_issuer("ec", days=32)
    env.ok("roles/r", {"allow_any_name": True, "key_type": "ec"})
    assert "beyond the expiration of the CA certificate" in env.err("issue/r", {"common_name": "a.example.com"})


def test_issued_lifetime_end_to_end():
    env = new_env()
    env.add_issuer("ec")
    env.ok("roles/r", {"allow_any_name": True, "key_type": "ec", "max_ttl": "2h"})
    resp = env.ok("issue/r", {"common_name": "a.example.com", "ttl": "5h"})
    cert = load_cert(resp.data["certificate"])
    assert cert.not_valid_after_utc - cert.not_valid_before_utc == dt.timedelta(hours=2, seconds=30)
    assert resp.warnings == ['TTL "5h0m0s" is longer than permitted maxTTL "2h0m0s", so maxTTL is being used']
    assert env.system.max_ttl == 3650 * DAY
