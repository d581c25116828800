"""CSRs built from arbitrary names and extensions, and byte-mutated CSRs: sign-verbatim and sign answer 200 or 400."""
from __future__ import annotations

import base64

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import NameOID
from hypothesis import given, strategies as st

from tests.engine.ca_helpers import Mount
from .settings import FUZZ_SLOW

KEYS = [ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP384R1()),
        ed25519.Ed25519PrivateKey.generate()]
texts = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), min_size=1, max_size=40)
name_attrs = st.lists(st.tuples(st.sampled_from([NameOID.COMMON_NAME, NameOID.ORGANIZATION_NAME,
                                                 NameOID.ORGANIZATIONAL_UNIT_NAME, NameOID.SERIAL_NUMBER,
                                                 NameOID.EMAIL_ADDRESS, NameOID.LOCALITY_NAME]), texts),
                      max_size=4)
ascii_texts = st.text(alphabet=st.characters(max_codepoint=127), min_size=1, max_size=40)
# Unvalidated on purpose: a hostile CSR carries whatever bytes its author likes (controls, bad syntax).
general_names = st.one_of(
    ascii_texts.map(x509.DNSName._init_without_validation),
    ascii_texts.map(x509.RFC822Name._init_without_validation),
    ascii_texts.map(x509.UniformResourceIdentifier._init_without_validation),
    st.ip_addresses().map(x509.IPAddress),
    st.binary(max_size=20).map(lambda b: x509.OtherName(x509.ObjectIdentifier("1.3.6.1.4.1.311.20.2.3"),
                                                        b"\x0c" + bytes([len(b)]) + b)),
)


def _csr(key, attrs, sans, extra_exts) -> str:
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(oid, value) for oid, value in attrs]))
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    for i, raw in enumerate(extra_exts):
        builder = builder.add_extension(
            x509.UnrecognizedExtension(x509.ObjectIdentifier(f"1.3.6.1.4.1.55555.{i}"), raw), critical=False)
    alg = None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    return builder.sign(key, alg).public_bytes(serialization.Encoding.PEM).decode()


_MOUNT: list[Mount] = []


def _mount() -> Mount:
    if not _MOUNT:
        m = Mount()
        m.root()
        m.ok("write", "roles/any", allow_any_name=True, enforce_hostnames=False, allowed_uri_sans="*",
             allowed_other_sans="*", key_type="any", use_csr_sans=True, use_csr_common_name=True, ttl="1h")
        _MOUNT.append(m)
    return _MOUNT[0]


@FUZZ_SLOW
@given(st.sampled_from(range(len(KEYS))), name_attrs, st.lists(general_names, max_size=4),
       st.lists(st.binary(max_size=30), max_size=3))
def test_generated_csrs_are_signed_or_refused(key_index, attrs, sans, extra):
    try:
        pem = _csr(KEYS[key_index], attrs, sans, extra)
    except (ValueError, TypeError):
        return     # cryptography itself refuses to build it
    m = _mount()
    for path in ("sign-verbatim", "sign/any"):
        reply = m.write(path, csr=pem, common_name="x.example.com" if path == "sign/any" else "")
        assert reply.status in (200, 400), (path, reply)


@FUZZ_SLOW
@given(st.integers(0, 10**6), st.binary(min_size=1, max_size=8), st.booleans())
def test_mutated_csrs_are_refused_not_crashed(position, junk, truncate):
    der = bytearray(base64.b64decode("".join(BASE_PEM.strip().splitlines()[1:-1])))
    pos = position % len(der)
    der = der[:pos] if truncate else der[:pos] + junk + der[pos + len(junk):]
    body = base64.encodebytes(bytes(der)).decode()
    pem = f"-----BEGIN CERTIFICATE REQUEST-----\n{body}-----END CERTIFICATE REQUEST-----\n"
    reply = _mount().write("sign-verbatim", csr=pem)
    assert reply.status in (200, 400), reply


BASE_PEM = _csr(KEYS[0], [(NameOID.COMMON_NAME, "base.example.com")], [x509.DNSName("base.example.com")],
                [b"\x05\x00"])
