"""The client matrix: certbot, lego and Caddy against our mount's ACME server and the built-in's, same sequence.

Every test runs once per mount kind in one `bao` server. Each issued chain is verified with `openssl verify`
against the mount's own root and linted with pkilint (integration/acme_clients.verify_issued). The built-in's
validator connects to port 80/443 of the identifier's address, so tests that let a client answer http-01 or
tls-alpn-01 hold the machine-wide port lock (`ports` fixture) and run one at a time.
"""
from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Callable, Iterator

import josepy
import pytest
import requests
from acme import challenges, client as acme_client, errors as acme_errors, jws as acme_jws, messages
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
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
# Tests that bind 127.0.0.1:80/443 go to one xdist worker (scripts/test runs --dist loadgroup), so the other worker
# keeps running other tests instead of waiting on the port lock; the lock still guards against other test runs.
binds_ports = pytest.mark.xdist_group("acme-ports")


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
@binds_ports
def test_certbot_http01_standalone(kind, acme, chall_dns, ports, tmp_path):
    mount = acme(kind)
    certbot = _certbot(tmp_path, mount, chall_dns)
    name = fresh_name("certbot-http")
    certbot.standalone([name])
    verify_issued(mount, certbot.live(name), [name], tmp_path)


@on_both
@binds_ports
def test_certbot_ip_identifier(kind, acme, chall_dns, ports, tmp_path):
    """RFC 8738: an IP identifier, validated by http-01 on the address itself (127.0.0.1:80)."""
    mount = acme(kind)
    certbot = _certbot(tmp_path, mount, chall_dns)
    name = fresh_name("certbot-ip")
    certbot.standalone([name, "127.0.0.1"], "--cert-name", "with-ip")
    verify_issued(mount, certbot.live("with-ip"), [name], tmp_path, ips=["127.0.0.1"])


@on_both
def test_certbot_dns01_manual_hook_with_wildcard(kind, acme, chall_dns, tmp_path):
    mount = acme(kind)
    certbot = _certbot(tmp_path, mount, chall_dns)
    name = fresh_name("certbot-dns")
    certbot.manual_dns([name, f"*.{name}"])
    verify_issued(mount, certbot.live(name), [name, f"*.{name}"], tmp_path)


@on_both
@binds_ports
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
@binds_ports
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
@binds_ports
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
@binds_ports
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
@pytest.mark.parametrize("challenge,eab", [("http-01", False), ("tls-alpn-01", False), ("http-01", True)],
                         ids=["http-01", "tls-alpn-01", "http-01-eab"])
@binds_ports
def test_caddy_automatic_https(kind, challenge, eab, acme, ports, tmp_path):
    mount = acme(kind, **({"eab_policy": "new-account-required"} if eab else {}))
    caddy = Caddy(tmp_path, mount.directory, mount.root_pem)
    site = fresh_name(f"caddy-{challenge}")
    binding = mount.new_eab() if eab else None
    caddy.start(site, challenge, binding)
    try:
        served = served_certificate(site, 443, mount.root_pem)
        stored = verify_issued(mount, caddy.stored_certificate(site), [site], tmp_path)
        assert served == stored, "caddy serves a certificate other than the one it obtained"
        solved = {e.get("challenge_type") for e in caddy.log_lines() if e.get("msg") == "trying to solve challenge"}
        assert solved == {challenge}, caddy.log_tail()
        if binding:   # spent by caddy's account: no longer listed as unused
            unused = mount.bao.http("LIST", f"{mount.path}/eab").json().get("data", {}).get("keys", [])
            assert binding[0] not in unused
    finally:
        caddy.stop()


# -- beyond the built-in: ARI and profiles ------------------------------------------------------------------------

@on_both
@binds_ports
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
@binds_ports
def test_certbot_preferred_and_required_profile(kind, acme, chall_dns, ports, tmp_path):
    """`--preferred-profile` picks a profile the directory lists (ours: profile -> role, here a 2-hour role), and
    `--required-profile` sends one whatever the directory says. The built-in lists none and ignores the field."""
    mount = acme(kind)
    if kind == "ours":
        mount.write("roles/short", {"allow_any_name": True, "key_type": "any", "ttl": "2h", "max_ttl": "2h"})
        mount.configure_acme(profiles={"shortlived": "short"})
        assert "shortlived" in mount.directory_json()["meta"]["profiles"]
    else:
        assert "profiles" not in mount.directory_json().get("meta", {})
    certbot = _certbot(tmp_path, mount, chall_dns)
    preferred, required = fresh_name("certbot-profile"), fresh_name("certbot-profile-req")
    certbot.standalone([preferred], "--preferred-profile", "shortlived")
    certbot.standalone([required], "--required-profile", "shortlived")
    for name in (preferred, required):
        leaf = verify_issued(mount, certbot.live(name), [name], tmp_path)
        lifetime = leaf.not_valid_after_utc - leaf.not_valid_before_utc
        if kind == "ours":
            assert lifetime <= dt.timedelta(hours=2, minutes=1), lifetime
        else:
            assert lifetime > dt.timedelta(days=1), lifetime
    unknown = certbot.standalone([fresh_name("certbot-profile-unknown")], "--required-profile", "nosuch",
                                 check=False)
    if kind == "ours":
        assert unknown.returncode != 0 and "unknown profile" in unknown.stdout + unknown.stderr
    else:
        assert unknown.returncode == 0, "the built-in ignores new-order's profile field"


# -- certbot's `acme` package: key change, deactivation, error cases ----------------------------------------------

def _acme_client(mount: AcmeMount, key: josepy.JWK | None = None) -> acme_client.ClientV2:
    key = key or josepy.JWKEC(key=ec.generate_private_key(ec.SECP256R1()))
    net = acme_client.ClientNetwork(key, alg=josepy.ES256, user_agent="python-pki-tests")
    return acme_client.ClientV2(messages.Directory.from_json(net.get(mount.directory).json()), net=net)


def _register(client: acme_client.ClientV2) -> messages.RegistrationResource:
    return client.new_account(messages.NewRegistration.from_data(terms_of_service_agreed=True))


def _csr(names: list[str], ca: bool = False) -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    builder = (x509.CertificateSigningRequestBuilder().subject_name(x509.Name([]))
               .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False))
    if ca:
        builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


def _problem(excinfo: pytest.ExceptionInfo) -> str:
    err = excinfo.value
    return getattr(err, "typ", "") or str(err)


def _ready_order(client: acme_client.ClientV2, chall_dns: ChallDns, names: list[str]) -> messages.OrderResource:
    """An order for `names` with every authorization validated through dns-01 (no ports needed)."""
    order = client.new_order(_csr(names))
    for authz in order.authorizations:
        chall = next(c for c in authz.body.challenges if isinstance(c.chall, challenges.DNS01))
        chall_dns.add_txt(chall.chall.validation_domain_name(authz.body.identifier.value),
                          chall.chall.validation(client.net.key))
        client.answer_challenge(chall, chall.chall.response(client.net.key))
    return client.poll_authorizations(order, dt.datetime.now() + dt.timedelta(seconds=90))


@on_both
def test_acme_package_account_and_authorization_deactivation(kind, acme, tmp_path):
    mount = acme(kind)
    client = _acme_client(mount)
    regr = _register(client)
    order = client.new_order(_csr([fresh_name("deact")]))
    authz = client.deactivate_authorization(order.authorizations[0])
    assert authz.body.status == messages.STATUS_DEACTIVATED
    regr = client.deactivate_registration(regr)
    assert regr.body.status == "deactivated"
    with pytest.raises(messages.Error) as refused:
        client.new_order(_csr([fresh_name("deact-after")]))
    assert _problem(refused) == "urn:ietf:params:acme:error:unauthorized"


@on_both
def test_acme_package_key_change(kind, acme, tmp_path):
    """RFC 8555 7.3.5 key rollover, the inner JWS built with the package's own JWS class. The built-in lists
    keyChange in its directory but has no handler; ours moves the account to the new key."""
    mount = acme(kind)
    client = _acme_client(mount)
    regr = _register(client)
    url = client.directory["keyChange"]
    assert url.startswith(mount.base)
    new_key = josepy.JWKEC(key=ec.generate_private_key(ec.SECP256R1()))
    inner = acme_jws.JWS.sign(
        json.dumps({"account": regr.uri, "oldKey": client.net.key.public_key().to_partial_json()}).encode(),
        key=new_key, alg=josepy.ES256, nonce=None, url=url)
    if kind == "builtin":
        with pytest.raises(messages.Error):
            client.net.post(url, inner, new_nonce_url=client.directory["newNonce"])
        return
    client.net.post(url, inner, new_nonce_url=client.directory["newNonce"])
    # The account is found by the new key only.
    # (the package reports an existing account, a 200 with its Location, as ConflictError)
    with pytest.raises(acme_errors.ConflictError) as found:
        _acme_client(mount, new_key).new_account(messages.NewRegistration.from_data(only_return_existing=True))
    assert found.value.location == regr.uri
    with pytest.raises(messages.Error) as gone:
        _acme_client(mount, client.net.key).new_account(
            messages.NewRegistration.from_data(only_return_existing=True))
    assert _problem(gone) == "urn:ietf:params:acme:error:accountDoesNotExist"


@on_both
def test_acme_package_error_cases(kind, acme, chall_dns, tmp_path):
    mount = acme(kind)
    with pytest.raises(messages.Error) as unknown:
        _acme_client(mount).new_account(messages.NewRegistration.from_data(only_return_existing=True))
    assert _problem(unknown) == "urn:ietf:params:acme:error:accountDoesNotExist"
    client = _acme_client(mount)
    _register(client)
    name = fresh_name("errors")
    order = _ready_order(client, chall_dns, [name])
    for bad in (_csr([name, fresh_name("other")]), _csr([name], ca=True)):
        with pytest.raises(messages.Error) as refused:
            client.begin_finalization(order.update(csr_pem=bad))
        assert _problem(refused) == "urn:ietf:params:acme:error:badCSR"
    # The order is still ready after the refusals: the right CSR completes it.
    done = client.poll_finalization(client.begin_finalization(order),
                                    dt.datetime.now() + dt.timedelta(seconds=90))
    verify_issued(mount, done.fullchain_pem, [name], tmp_path)
