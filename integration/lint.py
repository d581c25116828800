"""Shared checks for certificates the integration suites get from a server.

`lint_findings` runs pkilint's RFC 5280 certificate linter (what `lint_pkix_cert lint -s ERROR` runs) in this
process: one validator tree, built once, serves every certificate, which keeps linting hundreds of certificates
cheap. `openssl_verify` checks a certificate against its chain with the real `openssl verify`.
"""
from __future__ import annotations

import functools
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding



@dataclass(frozen=True)
class Exemption:
    """A pkilint finding that is a limitation of the linter, not a defect: its code, the quoted value's start."""

    code: str
    value_prefix: str
    reason: str

    def covers(self, code: str, message: str) -> bool:
        return code == self.code and f'"{self.value_prefix}' in message


# RFC 5280 leaves wildcards to other specs (RFC 6125); pkilint's dNSName syntax check refuses the `*` label.
WILDCARD_DNS = Exemption("pkix.invalid_domain_name_syntax", "*.",
                         "wildcard DNS SANs are RFC 6125 names, outside RFC 5280's preferred name syntax")
# pkilint's URI syntax check knows only registered schemes with an authority it can parse; spiffe:// is SPIFFE's.
SPIFFE_URI = Exemption("pkix.invalid_uri_syntax", "spiffe://",
                       "spiffe:// URIs (SPIFFE IDs) are refused by pkilint's URI syntax check")


@functools.cache
def _validator():  # the pkilint import is slow; only suites that lint pay for it
    from pkilint.pkix import certificate, extension, name

    return certificate.create_pkix_certificate_validator_container(
        certificate.create_decoding_validators(name.ATTRIBUTE_TYPE_MAPPINGS, extension.EXTENSION_MAPPINGS),
        [
            certificate.create_issuer_validator_container([]),
            certificate.create_validity_validator_container(),
            certificate.create_subject_validator_container([]),
            certificate.create_extensions_validator_container([]),
            certificate.create_spki_validator_container([]),
        ],
    )


def lint_findings(cert: x509.Certificate, exempt: Iterable[Exemption] = ()) -> list[str]:
    """ERROR-or-worse findings of pkilint's RFC 5280 linter as `validator @ node: code message` lines ([] = clean).

    Findings an `Exemption` covers (a linter limitation, with its reason) are dropped.
    """
    from pkilint import loader
    from pkilint.validation import ValidationFindingSeverity

    exemptions = list(exempt)
    doc = loader.RFC5280CertificateDocumentLoader().load_der_document(cert.public_bytes(Encoding.DER), "cert")
    out = []
    for result in _validator().validate(doc.root):
        for desc in result.finding_descriptions:
            if desc.finding.severity > ValidationFindingSeverity.ERROR:
                continue
            code, message = desc.finding.code, desc.message or ""
            if any(e.covers(code, message) for e in exemptions):
                continue
            out.append(f"{result.validator} @ {result.node.path}: {code} {message}".rstrip())
    return out


def openssl_verify(leaf: x509.Certificate, chain: Iterable[x509.Certificate], workdir: Path) -> str:
    """`openssl verify` of `leaf` against `chain` (roots trusted, the rest untrusted): '' when it verifies."""
    roots, intermediates = [], []
    for c in chain:
        (roots if c.issuer == c.subject else intermediates).append(c)
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        d = Path(tmp)
        (d / "roots.pem").write_bytes(b"".join(c.public_bytes(Encoding.PEM) for c in roots))
        (d / "leaf.pem").write_bytes(leaf.public_bytes(Encoding.PEM))
        args = ["openssl", "verify", "-CAfile", str(d / "roots.pem")]
        if intermediates:
            (d / "untrusted.pem").write_bytes(b"".join(c.public_bytes(Encoding.PEM) for c in intermediates))
            args += ["-untrusted", str(d / "untrusted.pem")]
        proc = subprocess.run([*args, str(d / "leaf.pem")], capture_output=True, text=True)
    return "" if proc.returncode == 0 else (proc.stdout + proc.stderr).strip()
