"""config/urls, config/cluster, AIA templating, config/issuers and the special paths."""
from __future__ import annotations

from cryptography import x509

from ca_helpers import Mount, cert_of
from engine.backend import special_paths


def test_config_urls_partial_update_and_validation() -> None:
    mount = Mount()
    empty = mount.ok("read", "config/urls")
    assert empty == {"issuing_certificates": [], "crl_distribution_points": [], "delta_crl_distribution_points": [],
                     "ocsp_servers": [], "enable_templating": False}
    mount.ok("write", "config/urls", issuing_certificates="http://pki.example.com/ca")
    both = mount.ok("write", "config/urls", ocsp_servers=["http://ocsp.example.com"])
    assert both["issuing_certificates"] == ["http://pki.example.com/ca"]
    assert both["ocsp_servers"] == ["http://ocsp.example.com"]
    before = mount.storage.snapshot()
    bad = mount.write("config/urls", crl_distribution_points="not-a-url")
    assert bad.status == 400 and "invalid URL found in Authority Information Access (AIA) parameter " \
                                 "crl_distribution_points: not-a-url" == bad.error
    assert mount.storage.snapshot() == before


def test_config_cluster_and_templated_aia_on_signed_intermediates() -> None:
    root, child = Mount(), Mount()
    root.root()
    bad = root.write("config/cluster", path="nope")
    assert bad.status == 500 and "invalid, non-URL path given to cluster: nope" in bad.error
    root.ok("write", "config/urls", enable_templating=True,
            issuing_certificates="{{cluster_aia_path}}/issuer/{{issuer_id}}/der",
            ocsp_servers="{{cluster_path}}/ocsp")
    csr = child.ok("write", "intermediate/generate/internal", common_name="I", key_type="ec")["csr"]
    unset = root.write("root/sign-intermediate", csr=csr)
    assert unset.status == 400 and "cluster" in unset.error
    cluster = root.ok("write", "config/cluster", path="https://vault.example.com/v1/pki",
                      aia_path="http://cdn.example.com/v1/pki")
    assert cluster == {"path": "https://vault.example.com/v1/pki", "aia_path": "http://cdn.example.com/v1/pki"}
    issuer_id = root.ok("read", "config/issuers")["default"]
    cert = cert_of(root.ok("write", "root/sign-intermediate", csr=csr)["certificate"])
    aia = {d.access_method.dotted_string: d.access_location.value
           for d in cert.extensions.get_extension_for_class(x509.AuthorityInformationAccess).value}
    assert aia["1.3.6.1.5.5.7.48.2"] == f"http://cdn.example.com/v1/pki/issuer/{issuer_id}/der"
    assert aia["1.3.6.1.5.5.7.48.1"] == "https://vault.example.com/v1/pki/ocsp"


def test_root_generation_drops_issuer_id_templates_with_warning() -> None:
    mount = Mount()
    mount.ok("write", "config/cluster", path="https://vault.example.com/v1/pki")
    mount.ok("write", "config/urls", enable_templating=True,
             issuing_certificates="{{cluster_path}}/issuer/{{issuer_id}}/der")
    resp = mount.write("root/generate/internal", common_name="Templated", key_type="ec")
    assert resp.status == 200 and any("issuer_id template unsuitable" in w for w in resp.warnings)
    cert = cert_of(resp.data["certificate"])
    assert x509.AuthorityInformationAccess not in [type(e.value) for e in cert.extensions]


def test_per_issuer_aia_wins_over_global() -> None:
    root, child = Mount(), Mount()
    issuer = root.root()
    root.ok("write", "config/urls", issuing_certificates="http://global/ca", crl_distribution_points="http://g/crl")
    root.ok("patch", "issuer/" + issuer["issuer_id"], ocsp_servers="http://issuer/ocsp")
    csr = child.ok("write", "intermediate/generate/internal", common_name="I", key_type="ec")["csr"]
    cert = cert_of(root.ok("write", "root/sign-intermediate", csr=csr)["certificate"])
    aia = cert.extensions.get_extension_for_class(x509.AuthorityInformationAccess).value
    assert [d.access_location.value for d in aia] == ["http://issuer/ocsp"]
    assert x509.CRLDistributionPoints not in [type(e.value) for e in cert.extensions]


def test_config_issuers_accepts_its_own_read_back() -> None:
    mount = Mount()
    first = mount.root()
    second = mount.root(common_name="Second", issuer_name="second")
    current = mount.ok("read", "config/issuers")
    current["default"] = "second"
    assert mount.ok("write", "config/issuers", **current) == {"default": second["issuer_id"],
                                                              "default_follows_latest_issuer": False}
    for bad in ("", "default"):
        reply = mount.write("config/issuers", default=bad)
        assert reply.status == 400 and "must be non-empty and can't be 'default'" in reply.error
    assert "unable to find PKI issuer" in mount.write("config/issuers", default="missing").error
    assert first["issuer_id"] != second["issuer_id"]


def test_special_paths_match_the_builtin_engine() -> None:
    sp = special_paths()
    assert sp.root == ["root", "root/sign-self-issued"]
    for path in ("cert/*", "ca", "ca/pem", "ca_chain", "crl", "issuer/+/pem", "issuer/+/der", "issuer/+/json",
                 "issuers/", "ocsp", "ocsp/*", "acme/directory", "issuer/+/roles/+/acme/order/+/cert"):
        assert path in sp.unauthenticated
    assert "acme/new-eab" not in sp.unauthenticated
    assert {"config/key/", "config/ca_bundle"} <= set(sp.seal_wrap_storage)
    assert {"certs/", "revoked/", "config/cluster", "crls/"} <= set(sp.local_storage)
    assert sp.binary == ["ocsp", "ocsp/*"]
