"""Whole ACME sessions with certbot's `acme` package against our mount and the built-in's in the same server."""
from __future__ import annotations

import pytest
from acme import challenges, errors as acme_errors, messages
from cryptography import x509

from integration.acme_server_support import acme_client_for, acme_pair, deadline  # noqa: F401 - fixture
from integration.acme_support import pebble_ca  # noqa: F401 - fixture
from tests.external_ca.flows import csr_pem

pytestmark = pytest.mark.acme


def _dns01_session(mount, pebble, names: list[str]) -> tuple[str, object]:
    client = acme_client_for(mount.directory)
    client.new_account(messages.NewRegistration.from_data(email="ops@example.com",
                                                          terms_of_service_agreed=True))
    order = client.new_order(csr_pem(names).encode())
    for authz in order.authorizations:
        chall = next(c for c in authz.body.challenges if isinstance(c.chall, challenges.DNS01))
        domain = authz.body.identifier.value
        pebble.add_txt(chall.chall.validation_domain_name(domain), chall.chall.validation(client.net.key))
        client.answer_challenge(chall, chall.chall.response(client.net.key))
    order = client.poll_and_finalize(order, deadline())
    return order.fullchain_pem, client


@pytest.mark.parametrize("kind", ["ours", "ref"])
def test_dns01_order_revoke(acme_pair, pebble_ca, kind):
    mount = acme_pair[kind]
    names = [f"{kind}.acme.example.com", f"www.{kind}.acme.example.com"]
    chain, client = _dns01_session(mount, pebble_ca, names)
    certs = x509.load_pem_x509_certificates(chain.encode())
    root = x509.load_pem_x509_certificate(mount.root_pem.encode())
    leaf = certs[0]
    leaf.verify_directly_issued_by(root)
    assert certs[-1] == root
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(san.get_values_for_type(x509.DNSName)) == set(names)
    cert = x509.load_pem_x509_certificate(chain.encode())
    client.revoke(cert, 0)
    with pytest.raises(acme_errors.Error) as again:
        client.revoke(cert, 0)
    assert "alreadyRevoked" in str(again.value.typ if hasattr(again.value, "typ") else again.value)
