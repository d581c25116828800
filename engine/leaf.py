"""Builds and signs end-entity certificates from a fully validated profile.

Deliberate differences from the built-in engine, so every leaf lints clean under RFC 5280 (pkilint):
key usages are filtered to those the subject key type permits (no keyEncipherment/dataEncipherment on
EC or Ed25519 keys, no keyAgreement on RSA or Ed25519 keys, no keyCertSign/cRLSign on leaves), and the
SAN extension is critical when the subject is empty (RFC 5280 4.2.1.6), and an EKU carrying timeStamping
is critical (RFC 3161).
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtendedKeyUsageOID

from engine import signing
from engine.roles import PolicyEntry
from engine.signing import HashAlg, SigningKey
from engine.urls import AiaUrls
from engine.x509util import aki_from_issuer, certificate_builder, key_type_name, new_serial

# What each subject key type may assert (RFC 5280 4.2.1.3, RFC 8813, RFC 8410).
_PERMITTED_USAGES: dict[str, frozenset[str]] = {
    "rsa": frozenset({"DigitalSignature", "ContentCommitment", "KeyEncipherment", "DataEncipherment"}),
    "ec": frozenset({"DigitalSignature", "ContentCommitment", "KeyAgreement", "EncipherOnly", "DecipherOnly"}),
    "ed25519": frozenset({"DigitalSignature", "ContentCommitment"}),
    "mldsa": frozenset({"DigitalSignature", "ContentCommitment"}),      # RFC 9881 5
}


@dataclass
class LeafProfile:
    """Everything that decides a leaf's content, already checked against the role."""

    subject: x509.Name
    public_key: CertificatePublicKeyTypes
    not_before: dt.datetime
    not_after: dt.datetime
    sans: list[x509.GeneralName] = field(default_factory=list)
    key_usages: list[str] = field(default_factory=list)       # canonical Vault names
    ext_key_usages: list[x509.ObjectIdentifier] = field(default_factory=list)
    policies: list[PolicyEntry] = field(default_factory=list)
    basic_constraints: bool = False                            # CA:FALSE extension
    # sign-verbatim: the CSR's own extensions, copied as they are (they win over the profile's).
    verbatim_extensions: list[x509.Extension[x509.ExtensionType]] = field(default_factory=list)


def filtered_key_usage(names: list[str], key_type: str) -> x509.KeyUsage | None:
    allowed = _PERMITTED_USAGES.get(key_type, frozenset({"DigitalSignature"}))
    flags = {n for n in names if n in allowed}
    if "KeyAgreement" not in flags:
        flags -= {"EncipherOnly", "DecipherOnly"}
    if not flags:
        return None
    return x509.KeyUsage(
        digital_signature="DigitalSignature" in flags, content_commitment="ContentCommitment" in flags,
        key_encipherment="KeyEncipherment" in flags, data_encipherment="DataEncipherment" in flags,
        key_agreement="KeyAgreement" in flags, key_cert_sign=False, crl_sign=False,
        encipher_only="EncipherOnly" in flags, decipher_only="DecipherOnly" in flags,
    )


def policies_extension(entries: list[PolicyEntry]) -> x509.CertificatePolicies | None:
    if not entries:
        return None
    infos = []
    for entry in entries:
        qualifiers: list[str | x509.UserNotice] = []
        if entry.cps:
            qualifiers.append(entry.cps)
        if entry.notice:
            qualifiers.append(x509.UserNotice(None, entry.notice))
        infos.append(x509.PolicyInformation(x509.ObjectIdentifier(entry.oid), qualifiers or None))
    return x509.CertificatePolicies(infos)


def _aia(urls: AiaUrls) -> x509.AuthorityInformationAccess | None:
    descs = [x509.AccessDescription(AuthorityInformationAccessOID.OCSP, x509.UniformResourceIdentifier(u))
             for u in urls.ocsp_servers]
    descs += [x509.AccessDescription(AuthorityInformationAccessOID.CA_ISSUERS, x509.UniformResourceIdentifier(u))
              for u in urls.issuing_certificates]
    return x509.AuthorityInformationAccess(descs) if descs else None


def _dps(urls: list[str]) -> list[x509.DistributionPoint]:
    return [x509.DistributionPoint([x509.UniformResourceIdentifier(u)], None, None, None) for u in urls]


async def build_leaf(profile: LeafProfile, issuer_cert: x509.Certificate, signer: SigningKey, hash_alg: HashAlg,
               use_pss: bool, urls: AiaUrls, serial: int | None = None) -> x509.Certificate:
    verbatim = {ext.oid for ext in profile.verbatim_extensions}
    exts: list[tuple[x509.ExtensionType, bool]] = []

    def add(ext: x509.ExtensionType | None, critical: bool) -> None:
        if ext is not None and ext.oid not in verbatim:
            exts.append((ext, critical))

    add(filtered_key_usage(profile.key_usages, key_type_name(profile.public_key)), True)
    # RFC 3161 2.3: a time-stamping EKU must be critical (the built-in never marks EKU critical).
    add(x509.ExtendedKeyUsage(profile.ext_key_usages) if profile.ext_key_usages else None,
        ExtendedKeyUsageOID.TIME_STAMPING in profile.ext_key_usages)
    add(x509.BasicConstraints(ca=False, path_length=None) if profile.basic_constraints else None, True)
    add(x509.SubjectKeyIdentifier.from_public_key(profile.public_key), False)
    add(aki_from_issuer(issuer_cert), False)
    add(_aia(urls), False)
    add(x509.SubjectAlternativeName(profile.sans) if profile.sans else None, len(profile.subject) == 0)
    add(policies_extension(profile.policies), False)
    add(x509.CRLDistributionPoints(_dps(urls.crl_distribution_points))
        if urls.crl_distribution_points else None, False)
    add(x509.FreshestCRL(_dps(urls.delta_crl_distribution_points))
        if urls.delta_crl_distribution_points else None, False)
    exts += [(ext.value, ext.critical) for ext in profile.verbatim_extensions]
    builder = certificate_builder(profile.subject, issuer_cert.subject, profile.public_key, serial or new_serial(),
                                  profile.not_before, profile.not_after, exts)
    # Inline for local keys (the EC hot path); token-held keys sign off the event loop.
    return await signing.sign_certificate(signer, builder, hash_alg, use_pss)


_HASHES = {256: hashes.SHA256, 384: hashes.SHA384, 512: hashes.SHA512}
_CURVE_HASH = {224: 256, 256: 256, 384: 384, 521: 512}


def leaf_hash(signer: SigningKey, signature_bits: int, csr_path: bool) -> HashAlg:
    """Vault's hash choice: RSA by signature_bits (unknown values -> SHA-256); EC by the issuer curve, except
    that the CSR paths honour an explicit signature_bits; Ed25519 has none."""
    if signer.key_type in ("ed25519", "mldsa"):
        return None
    if signer.key_type == "ec":
        if csr_path and signature_bits in _HASHES:
            return _HASHES[signature_bits]()
        size = getattr(signer.public_key(), "curve").key_size
        return _HASHES[_CURVE_HASH.get(size, 256)]()
    return _HASHES.get(signature_bits, hashes.SHA256)()
