"""An ACME session begun through a standby of a real raft cluster completes after the active steps down, on our
mount and on the built-in's: every ACME request is forwarded to the active (where nonces and validation live),
and the new active resumes from storage."""
from __future__ import annotations

import time

import pytest
from acme import challenges, messages
from cryptography import x509

from integration.acme_server_support import HEADERS, acme_client_for, deadline
from integration.acme_support import pebble_ca  # noqa: F401 - fixture
from integration.cluster import Cluster
from tests.external_ca.flows import csr_pem

pytestmark = [pytest.mark.cluster, pytest.mark.xdist_group("cluster"), pytest.mark.acme]


def _setup(cluster: Cluster, mount: str, via: str, dns_port: int) -> str:
    active = cluster.active()
    assert active.http("POST", f"sys/mounts/{mount}/tune",
                       json={"allowed_response_headers": HEADERS}).status_code in (200, 204)
    root = active.http("POST", f"{mount}/root/generate/internal", json={"common_name": f"{mount} root",
                                                                         "key_type": "ec", "ttl": "8760h"})
    assert root.status_code == 200, root.text
    base = f"{via}/v1/{mount}"
    assert active.http("POST", f"{mount}/config/cluster", json={"path": base, "aia_path": base}).status_code \
        in (200, 204)
    resp = active.http("POST", f"{mount}/config/acme", json={"enabled": True,
                                                              "dns_resolver": f"127.0.0.1:{dns_port}"})
    assert resp.status_code == 200, resp.text
    # The directory is forwarded by standbys (a 307 with forwarding off): wait until the standby's replay works.
    standby = next(n for n in cluster.nodes if n.addr == via)
    for _ in range(60):
        if standby.http("GET", f"{mount}/acme/directory").status_code == 200:
            break
        time.sleep(0.5)
    return root.json()["data"]["certificate"]


def test_session_through_a_standby_survives_step_down(cluster: Cluster, pebble_ca):
    pair = cluster.mount_pair("acme")
    figures = {}
    for kind, mount in (("ours", pair.ours), ("ref", pair.ref)):
        # Chosen per mount: the previous mount's step-down may have made the first standby the active.
        standby = cluster.standbys()[0]
        root_pem = _setup(cluster, mount, standby.addr, pebble_ca.dns_port)
        # Without forwarding a standby redirects every ACME request (it would have forwarded it).
        for method, sub in (("GET", "acme/directory"), ("HEAD", "acme/new-nonce"), ("POST", "acme/new-account")):
            assert standby.request(method, f"{mount}/{sub}", json={} if method == "POST" else None,
                                   forward=False).status_code == 307, (kind, sub)
        client = acme_client_for(f"{standby.addr}/v1/{mount}/acme/directory")
        client.new_account(messages.NewRegistration.from_data(terms_of_service_agreed=True))
        name = f"{kind}.ha.example.com"
        order = client.new_order(csr_pem([name]).encode())
        authz = order.authorizations[0]
        chall = next(c for c in authz.body.challenges if isinstance(c.chall, challenges.DNS01))
        pebble_ca.add_txt(chall.chall.validation_domain_name(name), chall.chall.validation(client.net.key))
        client.answer_challenge(chall, chall.chall.response(client.net.key))

        started = time.monotonic()
        cluster.step_down()
        # certbot's client retries a badNonce once by itself (the nonce lived on the old active).
        done = client.poll_and_finalize(order, deadline(120))
        figures[kind] = time.monotonic() - started
        leaf = x509.load_pem_x509_certificates(done.fullchain_pem.encode())[0]
        leaf.verify_directly_issued_by(x509.load_pem_x509_certificate(root_pem.encode()))
        assert leaf.subject.rfc4514_string() == f"CN={name}"
        pebble_ca.clear_txt(chall.chall.validation_domain_name(name))
        cluster.heal()
    print(f"\nACME HA figures: seconds from step-down to certificate: ours {figures['ours']:.1f}, "
          f"built-in {figures['ref']:.1f}")
