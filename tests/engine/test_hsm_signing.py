"""Signing through the token: certificates, CRLs, CSRs and OCSP responses assembled around token signatures."""
from __future__ import annotations

import asyncio
import datetime as dt
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509 import ocsp
from cryptography.x509.oid import NameOID
from pkcs11 import Attribute

from engine.hsm import service
from engine.hsm.config import ManagedKeyStore
from engine.hsm.signer import HsmSigningKey
from plugin.framework import Operation
from tests.engine.hsm_helpers import Mount, managed_key_body
from tests.hsm_fixtures import softhsm  # noqa: F401  (fixture)

pytestmark = pytest.mark.hsm
BIN = Path(sys.executable).parent   # the linters come with the test extra, beside this interpreter

CASES = [
    ("rsa", 2048, hashes.SHA256(), False),
    ("rsa", 2048, hashes.SHA384(), True),
    ("rsa", 3072, hashes.SHA512(), True),
    ("rsa", 2048, hashes.SHA512(), False),
    ("ec", 256, hashes.SHA256(), False),
    ("ec", 256, hashes.SHA512(), False),
    ("ec", 384, hashes.SHA384(), False),
    ("ed25519", 0, None, False),
]


def _signer(hsm, kind: str, bits: int) -> tuple[Mount, HsmSigningKey]:
    mount = Mount()
    token = hsm.new_token()
    mount.ok(Operation.UPDATE, "managed-keys/k", managed_key_body(hsm, token, "ca-key", kind, bits))
    cfg = asyncio.run(ManagedKeyStore(mount.storage).get("k"))
    pub, generated = asyncio.run(service.ensure_token_key(cfg))
    assert generated
    return mount, service.signing_key(cfg, pub)


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _root(key: HsmSigningKey, h, pss: bool) -> x509.Certificate:
    now = dt.datetime.now(dt.timezone.utc)
    builder = (x509.CertificateBuilder().subject_name(_name("hsm root")).issuer_name(_name("hsm root"))
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - dt.timedelta(minutes=1)).not_valid_after(now + dt.timedelta(days=30))
               .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
               .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False,
                                            key_encipherment=False, data_encipherment=False, key_agreement=False,
                                            key_cert_sign=True, crl_sign=True, encipher_only=False,
                                            decipher_only=False), critical=True)
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False))
    return key.sign_certificate(builder, h, pss)


def _verify(pub, signature: bytes, data: bytes, h, pss: bool) -> None:
    if isinstance(pub, rsa.RSAPublicKey):
        pad = padding.PSS(padding.MGF1(h), h.digest_size) if pss else padding.PKCS1v15()
        pub.verify(signature, data, pad, h)
    elif isinstance(pub, ec.EllipticCurvePublicKey):
        pub.verify(signature, data, ec.ECDSA(h))
    else:
        pub.verify(signature, data)


@pytest.mark.parametrize("kind,bits,h,pss", CASES, ids=lambda v: str(v) if not hasattr(v, "name") else v.name)
def test_token_signs_certificate_crl_csr_and_ocsp(softhsm, tmp_path: Path, kind, bits, h, pss):  # noqa: F811
    _, key = _signer(softhsm, kind, bits)
    pub = key.public_key()

    root = _root(key, h, pss)
    assert root.public_key() == pub
    root.verify_directly_issued_by(root)
    if pss:
        assert root.signature_algorithm_oid.dotted_string == "1.2.840.113549.1.1.10"
    pem = tmp_path / "root.pem"
    pem.write_bytes(root.public_bytes(serialization.Encoding.PEM))
    out = subprocess.run(["openssl", "verify", "-CAfile", str(pem), str(pem)], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr

    _lint(tmp_path, "lint_pkix_cert", root.public_bytes(serialization.Encoding.DER))

    # A leaf signed through the token, verified by openssl against the token-signed root.
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.timezone.utc)
    ski = root.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    aki = x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)
    leaf = key.sign_certificate(
        x509.CertificateBuilder().subject_name(_name("www.example.com")).issuer_name(root.subject)
        .public_key(leaf_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1)).not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("www.example.com")]), critical=False)
        .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False, key_cert_sign=False,
                                     crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(aki, critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(leaf_key.public_key()), critical=False), h, pss)
    leaf_pem = tmp_path / "leaf.pem"
    leaf_pem.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    out = subprocess.run(["openssl", "verify", "-CAfile", str(pem), str(leaf_pem)], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    _lint(tmp_path, "lint_pkix_cert", leaf.public_bytes(serialization.Encoding.DER))

    crl = key.sign_crl(x509.CertificateRevocationListBuilder().issuer_name(root.subject).last_update(now)
                       .next_update(now + dt.timedelta(days=1))
                       .add_extension(x509.CRLNumber(7), critical=False).add_extension(aki, critical=False)
                       .add_revoked_certificate(x509.RevokedCertificateBuilder().serial_number(leaf.serial_number)
                                                .revocation_date(now).build()), h, pss)
    assert crl.is_signature_valid(pub)
    crl_pem = tmp_path / "crl.pem"
    crl_pem.write_bytes(crl.public_bytes(serialization.Encoding.PEM))
    out = subprocess.run(["openssl", "crl", "-in", str(crl_pem), "-CAfile", str(pem), "-noout"],
                         capture_output=True, text=True)
    assert out.returncode == 0 and "verify OK" in out.stdout + out.stderr, out.stdout + out.stderr
    _lint(tmp_path, "lint_crl", crl.public_bytes(serialization.Encoding.DER), "-t", "CRL", "-p", "PKIX")

    csr = key.sign_csr(x509.CertificateSigningRequestBuilder().subject_name(_name("hsm intermediate")), h, pss)
    assert csr.public_key() == pub
    assert csr.is_signature_valid

    resp = key.sign_ocsp(
        ocsp.OCSPResponseBuilder().add_response(
            cert=leaf, issuer=root, algorithm=hashes.SHA1(), cert_status=ocsp.OCSPCertStatus.REVOKED,
            this_update=now, next_update=now + dt.timedelta(hours=1), revocation_time=now,
            revocation_reason=None).responder_id(ocsp.OCSPResponderEncoding.HASH, root), h, pss)
    assert resp.response_status is ocsp.OCSPResponseStatus.SUCCESSFUL
    _verify(pub, resp.signature, resp.tbs_response_bytes, h, pss)
    resp_der = tmp_path / "resp.der"
    resp_der.write_bytes(resp.public_bytes(serialization.Encoding.DER))
    out = subprocess.run(["openssl", "ocsp", "-respin", str(resp_der), "-CAfile", str(pem), "-issuer", str(pem),
                          "-cert", str(leaf_pem), "-no_nonce"], capture_output=True, text=True)
    assert out.returncode == 0 and "Response verify OK" in out.stdout + out.stderr, out.stdout + out.stderr
    assert ": revoked" in out.stdout
    _lint(tmp_path, "lint_ocsp_response", resp.public_bytes(serialization.Encoding.DER))


def _lint(tmp_path: Path, tool: str, der_bytes: bytes, *extra: str) -> None:
    path = tmp_path / f"{tool}.der"
    path.write_bytes(der_bytes)
    out = subprocess.run([str(BIN / tool), "lint", *extra, "-s", "ERROR", str(path)], capture_output=True, text=True)
    assert out.returncode == 0 and not out.stdout.strip(), out.stdout + out.stderr


def test_generated_key_is_sensitive_and_never_extractable(softhsm):  # noqa: F811
    _, key = _signer(softhsm, "ec", 256)
    attrs = asyncio.run(key.token_attributes([Attribute.SENSITIVE, Attribute.EXTRACTABLE, Attribute.TOKEN,
                                              Attribute.ALWAYS_SENSITIVE, Attribute.NEVER_EXTRACTABLE,
                                              Attribute.PRIVATE]))
    assert attrs == {Attribute.SENSITIVE: True, Attribute.EXTRACTABLE: False, Attribute.TOKEN: True,
                     Attribute.ALWAYS_SENSITIVE: True, Attribute.NEVER_EXTRACTABLE: True, Attribute.PRIVATE: True}
