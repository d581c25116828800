"""Building CA certificates and CSRs: roots, intermediate CSRs, signed intermediates, re-signed self-issued certs.

Functions over a `SigningKey`: nothing here touches storage, so callers can validate and build everything
before writing a single record. They are coroutines because a token-held key signs off the event loop.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from cryptography.x509.oid import ExtensionOID

from engine import signing
from engine.signing import HashAlg, SigningKey
from engine.urls import AiaUrls, aia_extensions
from engine.validity import check_order
from engine.x509util import (aki_from_issuer, build_sans, cert_skid, certificate_builder, ext_key_usage_oids, new_serial,
                             subject_key_id)


@dataclass
class CaProfile:
    """What a CA certificate (or CSR) should say, already validated and normalised."""

    subject: x509.Name
    dns: list[str] = field(default_factory=list)
    emails: list[str] = field(default_factory=list)
    ips: list[str] = field(default_factory=list)
    uris: list[str] = field(default_factory=list)
    other_sans: list[str] = field(default_factory=list)
    not_before: dt.datetime | None = None
    not_after: dt.datetime | None = None
    digital_signature: bool = False          # the only key usage a caller can add on top of CertSign+CRLSign
    ext_key_usages: list[x509.ObjectIdentifier] = field(default_factory=list)
    max_path_length: int = -1                # -1: no pathLenConstraint
    permitted_dns_domains: list[str] = field(default_factory=list)
    skid: bytes | None = None

    def general_names(self) -> list[x509.GeneralName]:
        return build_sans(self.dns, self.emails, self.ips, self.uris, self.other_sans)


def _ca_key_usage(digital_signature: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=digital_signature, content_commitment=False, key_encipherment=False,
        data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
        encipher_only=False, decipher_only=False)


def _ca_extensions(profile: CaProfile, ski: bytes, aki: bytes,
                   aia: AiaUrls | None) -> list[tuple[x509.ExtensionType, bool]]:
    """(extension, critical) in the order Go's x509 writes them for a CA certificate."""
    exts: list[tuple[x509.ExtensionType, bool]] = [(_ca_key_usage(profile.digital_signature), True)]
    if profile.ext_key_usages:
        exts.append((x509.ExtendedKeyUsage(profile.ext_key_usages), False))
    path_len = None if profile.max_path_length < 0 else profile.max_path_length
    exts.append((x509.BasicConstraints(ca=True, path_length=path_len), True))
    exts.append((x509.SubjectKeyIdentifier(ski), False))
    exts.append((x509.AuthorityKeyIdentifier(aki, None, None), False))
    if aia is not None:
        exts.extend(aia_extensions(aia))
    names = profile.general_names()
    if names:
        # An empty subject makes the SAN critical (RFC 5280 4.2.1.6).
        exts.append((x509.SubjectAlternativeName(names), len(profile.subject) == 0))
    if profile.permitted_dns_domains:
        exts.append((x509.NameConstraints(
            permitted_subtrees=[x509.DNSName(d) for d in profile.permitted_dns_domains], excluded_subtrees=None),
            True))
    return exts


async def build_root(signer: SigningKey, profile: CaProfile, hash_alg: HashAlg, use_pss: bool,
               aia: AiaUrls | None) -> x509.Certificate:
    assert profile.not_before is not None and profile.not_after is not None
    check_order(profile.not_before, profile.not_after)
    pub = signer.public_key()
    ski = profile.skid or subject_key_id(pub)
    builder = certificate_builder(profile.subject, profile.subject, pub, new_serial(), profile.not_before,
                                  profile.not_after, _ca_extensions(profile, ski, ski, aia))
    return await signing.sign_certificate(signer, builder, hash_alg, use_pss)


async def build_csr(signer: SigningKey, profile: CaProfile, hash_alg: HashAlg,
              add_basic_constraints: bool) -> x509.CertificateSigningRequest:
    builder = x509.CertificateSigningRequestBuilder().subject_name(profile.subject)
    names = profile.general_names()
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    if add_basic_constraints:
        builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
    return await signing.sign_csr(signer, builder, hash_alg)


async def sign_intermediate(signer: SigningKey, issuer_cert: x509.Certificate, csr: x509.CertificateSigningRequest,
                      profile: CaProfile, hash_alg: HashAlg, use_pss: bool, aia: AiaUrls | None,
                      use_csr_values: bool) -> x509.Certificate:
    """A CA certificate for the CSR's key, issued by `issuer_cert`. With `use_csr_values` the subject, SANs and
    every CSR extension except BasicConstraints are taken from the CSR (CSR extensions win over ours)."""
    assert profile.not_before is not None and profile.not_after is not None
    check_order(profile.not_before, profile.not_after)
    pub: CertificatePublicKeyTypes = csr.public_key()  # type: ignore[assignment]
    ski = profile.skid or subject_key_id(pub)
    subject = csr.subject if use_csr_values else profile.subject
    effective = profile
    csr_exts: dict[x509.ObjectIdentifier, x509.Extension[x509.ExtensionType]] = {}
    if use_csr_values:
        for ext in csr.extensions:
            if ext.oid == ExtensionOID.BASIC_CONSTRAINTS:
                continue
            if ext.oid == ExtensionOID.SUBJECT_ALTERNATIVE_NAME and profile.other_sans:
                continue
            csr_exts[ext.oid] = ext
        effective = CaProfile(
            subject=subject, other_sans=profile.other_sans if ExtensionOID.SUBJECT_ALTERNATIVE_NAME not in csr_exts
            else [], not_before=profile.not_before, not_after=profile.not_after,
            digital_signature=profile.digital_signature, ext_key_usages=profile.ext_key_usages,
            max_path_length=profile.max_path_length, permitted_dns_domains=profile.permitted_dns_domains,
            skid=profile.skid)
        if ExtensionOID.SUBJECT_ALTERNATIVE_NAME not in csr_exts and profile.other_sans:
            effective.dns, effective.emails = [], []
    ours = _ca_extensions(effective, ski, cert_skid(issuer_cert), aia)
    exts = [(ext, crit) for ext, crit in ours if ext.oid not in csr_exts]
    exts += [(ext.value, ext.critical) for ext in csr_exts.values()]
    builder = certificate_builder(subject, issuer_cert.subject, pub, new_serial(), profile.not_before,
                                  profile.not_after, exts)
    return await signing.sign_certificate(signer, builder, hash_alg, use_pss)


async def resign_self_issued(signer: SigningKey, issuer_cert: x509.Certificate, cert: x509.Certificate,
                       hash_alg: HashAlg, use_pss: bool, aia: AiaUrls | None) -> x509.Certificate:
    """The same certificate (serial, subject, validity, extensions) signed by another CA: AKI becomes the
    signer's SKID and the AIA/CRL DP extensions are replaced by the signer's."""
    replaced = {ExtensionOID.AUTHORITY_KEY_IDENTIFIER, ExtensionOID.AUTHORITY_INFORMATION_ACCESS,
                ExtensionOID.CRL_DISTRIBUTION_POINTS, ExtensionOID.FRESHEST_CRL}
    exts: list[tuple[x509.ExtensionType, bool]] = [(ext.value, ext.critical) for ext in cert.extensions
                                                   if ext.oid not in replaced]
    exts.append((aki_from_issuer(issuer_cert), False))
    if aia is not None:
        exts += aia_extensions(AiaUrls(
            issuing_certificates=aia.issuing_certificates, crl_distribution_points=aia.crl_distribution_points,
            ocsp_servers=aia.ocsp_servers))
    builder = certificate_builder(cert.subject, issuer_cert.subject, cert.public_key(), cert.serial_number,
                                  cert.not_valid_before_utc, cert.not_valid_after_utc, exts)
    return await signing.sign_certificate(signer, builder, hash_alg, use_pss)


def ext_key_usages_from(names: list[str], oids: list[str]) -> list[x509.ObjectIdentifier]:
    return ext_key_usage_oids(names, oids)
