"""The client matrix: certbot, lego and Caddy against our mount's ACME server and the built-in's, same sequence.

Every test runs once per mount kind in one `bao` server. Each issued chain is verified with `openssl verify`
against the mount's own root and linted with pkilint (integration/acme_clients.verify_issued). The built-in's
validator connects to port 80/443 of the identifier's address, so tests that let a client answer http-01 or
tls-alpn-01 hold the machine-wide port lock (`ports` fixture) and run one at a time.
"""
from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Callable, Iterator

import pytest
import requests
from integration.acme_clients import (
    AcmeMount,
    Caddy,
    Certbot,
    Lego,
    ChallDns,
    challenge_ports,
    load_chain,
    make_acme_mount,
    served_certificate,
    fresh_name,
    verify_issued,
)
from integration.harness import BaoServer, HarnessError

pytestmark = pytest.mark.acme

on_both = pytest.mark.parametrize("kind", ["builtin", "ours"])


@pytest.fixture(scope="module")
def chall_dns(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChallDns]:
    dns = ChallDns(tmp_path_factory.mktemp("dns"))
    yield dns
    dns.stop()


@pytest.fixture
def ports() -> Iterator[None]:
    with challenge_ports():
        yield


@pytest.fixture
def acme(bao: BaoServer, chall_dns: ChallDns) -> Iterator[Callable[..., AcmeMount]]:
    """Makes ACME mounts inside the test body (so a mount that cannot serve ACME yet counts as the test's failure,
    which xfail covers); disables them afterwards."""
    made: list[AcmeMount] = []

    def make(kind: str, **acme_config: object) -> AcmeMount:
        made.append(make_acme_mount(bao, kind, chall_dns, **acme_config))
        return made[-1]

    yield make
    for m in made:
        try:
            bao.disable_mount(m.path)
        except HarnessError:
            pass


def _certbot(tmp_path: Path, mount: AcmeMount, chall_dns: ChallDns) -> Certbot:
    return Certbot(tmp_path / "certbot", mount.directory, chall_dns)


# -- certbot ------------------------------------------------------------------------------------------------------

@on_both
def test_certbot_http01_standalone(kind, acme, chall_dns, ports, tmp_path):
    mount = acme(kind)
    certbot = _certbot(tmp_path, mount, chall_dns)
    name = fresh_name("certbot-http")
    certbot.standalone([name])
    verify_issued(mount, certbot.live(name), [name], tmp_path)


@on_both
def test_certbot_dns01_manual_hook_with_wildcard(kind, acme, chall_dns, tmp_path):
    mount = acme(kind)
    certbot = _certbot(tmp_path, mount, chall_dns)
    name = fresh_name("certbot-dns")
    certbot.manual_dns([name, f"*.{name}"])
    verify_issued(mount, certbot.live(name), [name, f"*.{name}"], tmp_path)


@on_both
def test_certbot_renew(kind, acme, chall_dns, ports, tmp_path):
    mount = acme(kind)
    certbot = _certbot(tmp_path, mount, chall_dns)
    name = fresh_name("certbot-renew")
    certbot.standalone([name])
    first = verify_issued(mount, certbot.live(name), [name], tmp_path)
    certbot.run("renew", "--cert-name", name, "--force-renewal", "--no-random-sleep-on-renew")
    second = verify_issued(mount, certbot.live(name), [name], tmp_path)
    assert second.serial_number != first.serial_number
    assert second.public_key() != first.public_key()   # certbot makes a new key per renewal by default


@on_both
def test_certbot_revoke_by_account_key_and_by_certificate_key(kind, acme, chall_dns, ports, tmp_path):
    mount = acme(kind)
    certbot = _certbot(tmp_path, mount, chall_dns)
    by_account, by_cert_key = fresh_name("certbot-revoke-a"), fresh_name("certbot-revoke-k")
    certbot.standalone([by_account])
    certbot.standalone([by_cert_key])
    a = verify_issued(mount, certbot.live(by_account), [by_account], tmp_path)
    k = verify_issued(mount, certbot.live(by_cert_key), [by_cert_key], tmp_path)
    assert not mount.revoked(a) and not mount.revoked(k)
    # The built-in accepts no reason other than unspecified, so none is sent (certbot's default).
    certbot.run("revoke", "--cert-name", by_account, "--no-delete-after-revoke")
    assert mount.revoked(a)
    assert not mount.revoked(k)
    live = certbot.config_dir / "live" / by_cert_key
    certbot.run("revoke", "--cert-path", str(live / "cert.pem"), "--key-path", str(live / "privkey.pem"),
                "--no-delete-after-revoke")
    assert mount.revoked(k)


@on_both
def test_certbot_external_account_binding(kind, acme, chall_dns, ports, tmp_path):
    mount = acme(kind, eab_policy="new-account-required")
    assert mount.directory_json()["meta"]["externalAccountRequired"] is True
    certbot = _certbot(tmp_path, mount, chall_dns)
    name = fresh_name("certbot-eab")
    refused = certbot.standalone([name], check=False)
    assert refused.returncode != 0
    assert "external account binding" in (refused.stdout + refused.stderr).lower()
    kid, key = mount.new_eab()
    certbot.standalone([name], "--eab-kid", kid, "--eab-hmac-key", key)
    verify_issued(mount, certbot.live(name), [name], tmp_path)
    # The binding is spent: the same key id cannot make a second account.
    again = Certbot(tmp_path / "certbot-2", mount.directory, chall_dns)
    reused = again.standalone([fresh_name("certbot-eab-reuse")], "--eab-kid", kid, "--eab-hmac-key", key,
                              check=False)
    assert reused.returncode != 0, "an EAB key id was accepted twice"


# -- lego ---------------------------------------------------------------------------------------------------------

@on_both
@pytest.mark.parametrize("challenge", ["http-01", "tls-alpn-01"])
def test_lego_port_challenges(kind, challenge, acme, chall_dns, ports, tmp_path):
    mount = acme(kind)
    lego = Lego(tmp_path, mount.directory, chall_dns)
    name = fresh_name(f"lego-{challenge}")
    out = lego.run([name], challenge)
    assert f"Trying to solve {challenge.upper()}" in out.stderr, out.stderr[-2000:]
    verify_issued(mount, lego.certificate(name), [name], tmp_path)


@on_both
def test_lego_dns01_exec_provider_with_wildcard(kind, acme, chall_dns, tmp_path):
    mount = acme(kind)
    lego = Lego(tmp_path, mount.directory, chall_dns)
    name = fresh_name("lego-dns")
    lego.run([name, f"*.{name}"], "dns-01")
    verify_issued(mount, lego.certificate(name), [name, f"*.{name}"], tmp_path)


# -- Caddy --------------------------------------------------------------------------------------------------------

@on_both
@pytest.mark.parametrize("challenge", ["http-01", "tls-alpn-01"])
def test_caddy_automatic_https(kind, challenge, acme, ports, tmp_path):
    mount = acme(kind)
    caddy = Caddy(tmp_path, mount.directory, mount.root_pem)
    site = fresh_name(f"caddy-{challenge}")
    caddy.start(site, challenge)
    try:
        served = served_certificate(site, 443, mount.root_pem)
        stored = verify_issued(mount, caddy.stored_certificate(site), [site], tmp_path)
        assert served == stored, "caddy serves a certificate other than the one it obtained"
        solved = {e.get("challenge_type") for e in caddy.log_lines() if e.get("msg") == "trying to solve challenge"}
        assert solved == {challenge}, caddy.log_tail()
    finally:
        caddy.stop()


# -- beyond the built-in: ARI and profiles ------------------------------------------------------------------------

@on_both
def test_certbot_asks_renewal_info(kind, acme, chall_dns, ports, tmp_path):
    """certbot 4+ asks renewalInfo (RFC 9773) during `renew` when the directory offers it: ours does with
    `enable_ari`, the built-in has no renewalInfo (certbot then falls back to its own schedule)."""
    mount = acme(kind, **({"enable_ari": True} if kind == "ours" else {}))
    directory = mount.directory_json()
    certbot = _certbot(tmp_path, mount, chall_dns)
    name = fresh_name("certbot-ari")
    certbot.standalone([name])
    leaf = verify_issued(mount, certbot.live(name), [name], tmp_path)
    out = certbot.run("renew", "--no-random-sleep-on-renew")
    log = certbot.log_text()
    if kind == "builtin":
        assert "renewalInfo" not in directory
        assert "renewal" not in "".join(line for line in log.splitlines() if "Sending GET request" in line)
        assert "ACME Renewal Information" not in out.stdout + out.stderr + log
        return
    ari_base = directory["renewalInfo"]
    asked = [line.split("Sending GET request to ", 1)[1].rstrip(".") for line in log.splitlines()
             if f"Sending GET request to {ari_base}/" in line]
    assert len(asked) == 1, log[-3000:]
    answer = log.split(asked[0], 1)[1]
    assert "HTTP 200" in answer.split("Sending", 1)[0], answer[:2000]
    body = requests.get(asked[0], timeout=30).json()   # the same resource, to read the window certbot was given
    start = dt.datetime.fromisoformat(body["suggestedWindow"]["start"].replace("Z", "+00:00"))
    end = dt.datetime.fromisoformat(body["suggestedWindow"]["end"].replace("Z", "+00:00"))
    assert leaf.not_valid_before_utc < start < end <= leaf.not_valid_after_utc
    assert "An error occurred requesting ACME Renewal Information" not in out.stdout + out.stderr + log
    # The window is ahead, so certbot keeps the certificate.
    assert load_chain(certbot.live(name))[0].serial_number == leaf.serial_number


@on_both
def test_certbot_preferred_profile(kind, acme, chall_dns, ports, tmp_path, bao):
    """`--preferred-profile` picks a profile the directory lists (ours: profile -> role, here a 2-hour role);
    the built-in lists none, so certbot orders without one and gets the default validity."""
    if kind == "ours":
        mount = acme(kind)
        mount.write("roles/short", {"allow_any_name": True, "key_type": "any", "ttl": "2h", "max_ttl": "2h"})
        mount.configure_acme(profiles={"shortlived": "short"})
        assert "shortlived" in mount.directory_json()["meta"]["profiles"]
    else:
        mount = acme(kind)
        assert "profiles" not in mount.directory_json().get("meta", {})
    certbot = _certbot(tmp_path, mount, chall_dns)
    name = fresh_name("certbot-profile")
    certbot.standalone([name], "--preferred-profile", "shortlived")
    leaf = verify_issued(mount, certbot.live(name), [name], tmp_path)
    lifetime = leaf.not_valid_after_utc - leaf.not_valid_before_utc
    if kind == "ours":
        assert lifetime <= dt.timedelta(hours=2, minutes=1), lifetime
    else:
        assert lifetime > dt.timedelta(days=1), lifetime
